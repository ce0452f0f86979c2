// The --device options of `psgrid worker` and `psgrid local`, and `--single-process --backend`
// on a device, run in-process (workers from the built psgrid program, PSGRID_BINARY). Where this
// machine has no usable GPU (build machines, CI) "cuda" must fail with the registry's message and
// "auto" fall back to the CPU with a warning; where it has one, both train.
#include <string>
#include <vector>

#include "core/backend/registry.h"
#include "tests/cli_runner.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::testing::HasSubstr;

using ::psgrid::testing::CliRun;
using ::psgrid::testing::RunPsgrid;
using ::psgrid::testing::WriteTempFile;

// Whether "cuda" can be created here; else *why receives the registry's reason.
bool HaveGpu(std::string* why) {
  auto backend = CreateBackend("cuda");
  if (!backend.ok()) *why = std::string(backend.status().message());
  return backend.ok();
}

std::string SpecFile(const std::string& name) {
  std::string csv = "x,y\n";
  for (int i = 0; i < 40; ++i) {
    csv += std::to_string(i / 40.0) + "," + std::to_string(3 * i / 40.0) + "\n";
  }
  const std::string data = WriteTempFile(name + ".csv", csv);
  return WriteTempFile(name + ".yaml",
                       "model: {layers: [{type: dense, units: 4}, {type: relu}, "
                       "{type: dense, units: 1}], loss: mse}\n"
                       "data: {dataset: csv, path: " + data + "}\n"
                       "training: {workers: 2, batch_size: 6, epochs: 1}\n");
}

TEST(DeviceCli, LocalRejectsAnUnknownDeviceName) {
  CliRun run = RunPsgrid({"local", SpecFile("bad_device"), "--device", "cpu,gpu"});
  EXPECT_EQ(run.code, 2);
  EXPECT_THAT(run.err, HasSubstr("unknown device 'gpu'"));
  run = RunPsgrid({"local", SpecFile("bad_ordinal"), "--device", "cuda:x"});
  EXPECT_EQ(run.code, 2);
  // Workers take --device; --single-process takes --backend.
  run = RunPsgrid({"local", SpecFile("single_device"), "--single-process", "--device", "cpu"});
  EXPECT_EQ(run.code, 2);
}

TEST(DeviceCli, LocalWorkersOnAutoTrainTheJob) {
  CliRun run = RunPsgrid(
      {"local", SpecFile("auto"), "--device", "auto", "--worker-binary", PSGRID_BINARY});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("device auto"));
}

TEST(DeviceCli, LocalMixesDevicesPerWorker) {
  CliRun run = RunPsgrid(
      {"local", SpecFile("mixed"), "--device", "cpu,auto", "--worker-binary", PSGRID_BINARY});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("device cpu,auto"));
}

TEST(DeviceCli, LocalWorkersOnCudaNeedAGpu) {
  std::string why;
  const bool gpu = HaveGpu(&why);
  CliRun run = RunPsgrid(
      {"local", SpecFile("cuda"), "--device", "cuda", "--worker-binary", PSGRID_BINARY});
  if (gpu) {
    EXPECT_EQ(run.code, 0) << run.err;
  } else {
    EXPECT_EQ(run.code, 1);
    EXPECT_THAT(run.err, HasSubstr(why));  // the worker's own error line
    EXPECT_THAT(run.err, HasSubstr("worker process"));
  }
}

TEST(DeviceCli, SingleProcessOnCudaTrainsOrSaysWhyNot) {
  std::string why;
  const bool gpu = HaveGpu(&why);
  CliRun run = RunPsgrid({"local", SpecFile("single_cuda"), "--single-process", "--backend",
                          "cuda"});
  if (gpu) {
    EXPECT_EQ(run.code, 0) << run.err;
    EXPECT_THAT(run.out, HasSubstr("backend cuda:0"));
  } else {
    EXPECT_EQ(run.code, 1);
    EXPECT_THAT(run.err, HasSubstr(why));
  }
}

TEST(DeviceCli, WorkerDeviceOptions) {
  std::string why;
  const bool gpu = HaveGpu(&why);
  // No server listens on port 1: every run ends with exit 1, after the device is chosen.
  CliRun run = RunPsgrid({"worker", "--device", "cuda", "--server", "127.0.0.1:1",
                          "--connect-timeout", "0.2", "--quiet"});
  EXPECT_EQ(run.code, 1);
  if (!gpu) {
    EXPECT_THAT(run.err, HasSubstr("psgrid-worker: error: " + why));
    EXPECT_THAT(run.err, ::testing::Not(HasSubstr("cannot reach")));  // it did not try
  }
  run = RunPsgrid({"worker", "--device", "auto", "--server", "127.0.0.1:1", "--connect-timeout",
                   "0.2", "--quiet"});
  EXPECT_EQ(run.code, 1);
  if (!gpu) {
    EXPECT_THAT(run.err, HasSubstr("warning: --device auto: no usable GPU (" + why +
                                   "); computing on the CPU"));
  }
  EXPECT_THAT(run.err, HasSubstr("127.0.0.1:1"));
  run = RunPsgrid({"worker", "--device", "tpu", "--server", "127.0.0.1:1", "--quiet"});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("unknown backend 'tpu'"));
}

}  // namespace
}  // namespace psgrid
