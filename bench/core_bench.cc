// Micro-benchmarks of the compute core (Google Benchmark): one MLP training step and the
// optimizer update. Run: build/bench/core_bench
#include <benchmark/benchmark.h>

#include <vector>

#include "core/backend/cpu_backend.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "core/rng.h"

namespace psgrid {
namespace {

v1::ModelSpec MlpSpec() {
  v1::ModelSpec spec;
  for (auto [type, units] : std::vector<std::pair<const char*, int>>{
           {"dense", 256}, {"relu", 0}, {"dense", 128}, {"relu", 0}, {"dense", 10}}) {
    v1::LayerSpec* l = spec.add_layers();
    l->set_type(type);
    l->set_units(units);
  }
  spec.set_loss("softmax_cross_entropy");
  spec.mutable_init()->set_scheme("he");
  return spec;
}

// Forward + loss + backward of the MLP 784-256-128-10 on one batch.
void BM_MlpGradientStep(benchmark::State& state) {
  const int64_t batch = state.range(0);
  SetBlasThreads(1);
  CpuBackend backend;
  auto model = Model::Create(MlpSpec(), {784}, 10, &backend);
  if (!model.ok()) {
    state.SkipWithError("model");
    return;
  }
  Rng rng(1);
  Tensor x({batch, 784});
  for (float& v : x.span()) v = rng.Uniform(0, 1);
  std::vector<int32_t> labels(batch);
  for (int32_t& l : labels) l = static_cast<int32_t>(rng.Below(10));
  Targets t;
  t.labels = labels;
  for (auto _ : state) {
    benchmark::DoNotOptimize((*model)->ComputeGradients(x, t));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_MlpGradientStep)->Arg(64)->Arg(256);

// Momentum update over n parameters: reads w, g, v and writes w, v (20 bytes per parameter).
void BM_MomentumUpdate(benchmark::State& state) {
  const int64_t n = state.range(0);
  CpuBackend backend;
  v1::OptimizerSpec spec;
  spec.set_type("momentum");
  spec.set_learning_rate(0.01);
  spec.set_momentum(0.9);
  auto opt = CreateOptimizer(spec, n);
  Tensor w({n}), g({n});
  for (auto _ : state) {
    (*opt)->Step(backend, w, g);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n * 20);
}
BENCHMARK(BM_MomentumUpdate)->Arg(235146)->Arg(10'000'000);

}  // namespace
}  // namespace psgrid

BENCHMARK_MAIN();
