// End to end on a GPU: a worker on CUDA and a worker on the CPU in one job (a real gRPC
// parameter server in this process) train every step on the same samples (a "twin" data set,
// tests/device_job_harness.h), so their gradients must agree: the first step's within float32
// tolerance (cuBLAS sums in another order), and the job completes with both. Labelled gpu;
// skips, saying why, where no CUDA device is usable (or the build has no CUDA backend).
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>

#include "core/backend/cpu_backend.h"
#include "core/backend/registry.h"
#include "tests/device_job_harness.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::JobRecord;
using ::psgrid::testing::PushedGradient;
using ::psgrid::testing::RunJob;
using ::psgrid::testing::TwinJobSpec;
using ::psgrid::testing::WorkerDevice;
using ::psgrid::testing::WriteTwinCsv;

TEST(GpuWorker, AGpuWorkerAndACpuWorkerPushTheSameFirstStepGradient) {
  absl::StatusOr<std::unique_ptr<Backend>> probe = CreateBackend("cuda");
  if (!probe.ok()) GTEST_SKIP() << "no CUDA device to test on: " << probe.status().message();
  probe->reset();

  const std::string csv = WriteTwinCsv("gpu_twins.csv", 16, 4);
  const v1::JobSpec spec = TwinJobSpec(csv, 16, 2, "{type: momentum, learning_rate: 0.05, "
                                       "momentum: 0.9}");
  const WorkerDevice gpu{[] {
                           auto backend = CreateBackend("cuda");
                           EXPECT_OK(backend);
                           if (!backend.ok()) return std::unique_ptr<Backend>();
                           return std::move(*backend);
                         },
                         nullptr};
  const WorkerDevice cpu{[] { return std::unique_ptr<Backend>(std::make_unique<CpuBackend>()); },
                         nullptr};
  const JobRecord job = RunJob(spec, {gpu, cpu});
  ASSERT_EQ(job.state, v1::JOB_STATE_COMPLETED) << job.message;
  ASSERT_EQ(job.workers.size(), 2u);
  for (const auto& w : job.workers) EXPECT_OK(w.status);
  ASSERT_FALSE(job.workers[0].pushes.empty());
  ASSERT_FALSE(job.workers[1].pushes.empty());
  const PushedGradient& on_gpu = job.workers[0].pushes.front();
  const PushedGradient& on_cpu = job.workers[1].pushes.front();
  ASSERT_EQ(on_gpu.step, 0);
  ASSERT_EQ(on_cpu.step, 0);
  EXPECT_EQ(on_gpu.sample_count, on_cpu.sample_count);
  EXPECT_NEAR(on_gpu.loss_sum, on_cpu.loss_sum, 1e-5 * std::max(1.0, std::abs(on_cpu.loss_sum)));
  ASSERT_EQ(on_gpu.gradient.size(), on_cpu.gradient.size());
  double max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < on_cpu.gradient.size(); ++i) {
    max_abs = std::max(max_abs, static_cast<double>(std::abs(on_cpu.gradient[i])));
    max_diff = std::max(max_diff,
                        static_cast<double>(std::abs(on_gpu.gradient[i] - on_cpu.gradient[i])));
  }
  EXPECT_GT(max_abs, 0);
  EXPECT_LE(max_diff, 1e-5 + 1e-4 * max_abs) << "largest |gradient| " << max_abs;
}

}  // namespace
}  // namespace psgrid
