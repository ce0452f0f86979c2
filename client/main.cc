// psgrid: the command-line client.
#include "client/cli.h"
#include "core/backend/blas_kernel.h"

int main(int argc, char** argv) {
  psgrid::ReexecWithBestBlasKernel(argv);
  return psgrid::RunCli(argc, argv);
}
