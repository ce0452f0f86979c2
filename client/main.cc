// psgrid: the command-line client.
#include "client/cli.h"

int main(int argc, char** argv) { return psgrid::RunCli(argc, argv); }
