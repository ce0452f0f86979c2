// psgrid-worker: joins a job on a parameter server and trains until the job ends.
#include "core/backend/blas_kernel.h"
#include "worker/worker_main.h"

int main(int argc, char** argv) {
  psgrid::ReexecWithBestBlasKernel(argv);
  return psgrid::RunWorkerMain(argc, argv);
}
