// Server update throughput (parameters/s of Optimizer::Update over a whole arena) for SGD,
// momentum and Adam, against the memory-bandwidth bound measured in the same run.
//
//   build/bench/update_bench [--params N] [--repeats R] [--stream-mb MB] [--json FILE]
//
// One thread throughout: the kernels are single-threaded, and so is the streaming measurement.
//
// Bound: a kernel that must stream its state through memory can update at most
// (streaming bytes/s) / (bytes per parameter) parameters/s, where an update reads and writes
// SGD:      w, g        -> w        12 B/parameter
// momentum: w, g, b     -> w, b     20 B/parameter
// Adam:     w, g, m, v  -> w, m, v  28 B/parameter
// The streaming speed is the fastest of two vectorised loops over arrays of --stream-mb each
// (default: 4 x the last-level cache, at least 256 MiB), best of R passes, each compiled for
// the baseline instruction set, AVX2 and AVX-512 (those the CPU has):
//   triad     a[i] = b[i] + s*c[i]  counted as STREAM counts it, 12 B per element;
//   in-place  a[i] = a[i] + s*b[i]  12 B per element, every byte of which really moves (no
//             write-allocate read that goes uncounted): the access pattern of the updates.
// Achieved: the best of R timed updates of the whole arena (the median is reported too).
// Before each timed update a read of a buffer far larger than the last-level cache evicts the
// arena, so that every update streams it from memory, as the bound assumes.
// Prints a markdown table (ratio first) and, with --json, writes the results with a
// description of the machine.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "core/backend/cpu_backend.h"
#include "core/optimizer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "bench/bench_json.h"
#include "nlohmann/json.hpp"

namespace psgrid {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double Best(std::vector<double> v) { return *std::min_element(v.begin(), v.end()); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t k = v.size() / 2;
  return v.size() % 2 == 1 ? v[k] : (v[k - 1] + v[k]) / 2;
}

// The streaming kernels: plain loops with no aliasing, which g++ vectorises at -O3 like the
// update kernels. One thread streams faster with wider vectors (fewer instructions per byte),
// so on x86-64 they are compiled for the baseline (SSE2), AVX2 and AVX-512 (512-bit vectors),
// each run where the CPU has it, and the bound takes the fastest: the machine's streaming
// speed, not the speed of the instruction set the update kernels happen to use. noinline keeps
// each a loop of its own that the timing brackets.
#define PSGRID_STREAM_KERNELS(SUFFIX, ATTRIBUTES)                               \
  ATTRIBUTES __attribute__((noinline)) void Triad##SUFFIX(                      \
      int64_t n, float s, const float* __restrict b, const float* __restrict c, \
      float* __restrict a) {                                                    \
    for (int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];                     \
  }                                                                             \
  ATTRIBUTES __attribute__((noinline)) void AddInPlace##SUFFIX(                 \
      int64_t n, float s, const float* __restrict b, float* __restrict a) {     \
    for (int64_t i = 0; i < n; ++i) a[i] = a[i] + s * b[i];                     \
  }

PSGRID_STREAM_KERNELS(Baseline, )
#if defined(__x86_64__) && defined(__GNUC__)
#define PSGRID_STREAM_X86 1
PSGRID_STREAM_KERNELS(Avx2, __attribute__((target("avx2"))))
PSGRID_STREAM_KERNELS(Avx512, __attribute__((target("avx512f", "prefer-vector-width=512"))))
#endif

struct StreamVariant {
  const char* isa;
  void (*triad)(int64_t, float, const float*, const float*, float*);
  void (*add)(int64_t, float, const float*, float*);
  std::vector<double> triad_times, add_times;
};

std::vector<StreamVariant> StreamVariants() {
  std::vector<StreamVariant> v;
  v.push_back({"baseline", TriadBaseline, AddInPlaceBaseline, {}, {}});
#ifdef PSGRID_STREAM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) v.push_back({"avx2", TriadAvx2, AddInPlaceAvx2, {}, {}});
  if (__builtin_cpu_supports("avx512f")) {
    v.push_back({"avx512", TriadAvx512, AddInPlaceAvx512, {}, {}});
  }
#endif
  return v;
}

// Reads one float of every 64-byte line of x[0, n).
volatile float read_sink = 0;
__attribute__((noinline)) float ReadAll(int64_t n, const float* x) {
  float s = 0;
  for (int64_t i = 0; i < n; i += 16) s += x[i];
  return s;
}

template <typename F>
double Time(F f) {
  const auto start = Clock::now();
  f();
  return Seconds(Clock::now() - start);
}

// The first value of `key` in /proc/cpuinfo ("model name", "cpu family", "model").
std::string CpuInfo(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const size_t end = line.find_last_not_of(" \t", colon - 1);
    if (end != std::string::npos && line.compare(0, end + 1, key) == 0 && end + 1 == key.size()) {
      const size_t start = line.find_first_not_of(' ', colon + 1);
      return start == std::string::npos ? "" : line.substr(start);
    }
  }
  return "unknown";
}

std::string UtcNow() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

int64_t LastLevelCacheBytes() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) return l3;
  const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return l2 > 0 ? l2 : 0;
}

struct Case {
  const char* name;
  v1::OptimizerSpec spec;
  int bytes_per_param;
  std::unique_ptr<Optimizer> optimizer;
  Tensor w, g;
  std::vector<double> times;
};

v1::OptimizerSpec Spec(const char* type, double lr, double momentum = 0) {
  v1::OptimizerSpec s;
  s.set_type(type);
  s.set_learning_rate(lr);
  s.set_momentum(momentum);
  return s;
}

int Run(int64_t n, int repeats, int64_t stream_bytes, const std::string& json_path) {
  CpuBackend backend;
  std::vector<Case> cases;
  cases.push_back({"sgd", Spec("sgd", 0.01), 12, nullptr, {}, {}, {}});
  cases.push_back({"momentum", Spec("momentum", 0.01, 0.9), 20, nullptr, {}, {}, {}});
  cases.push_back({"adam", Spec("adam", 0.001), 28, nullptr, {}, {}, {}});
  Rng rng(7);
  for (Case& c : cases) {
    auto opt = CreateOptimizer(c.spec, n);
    if (!opt.ok()) {
      std::fprintf(stderr, "%s\n", opt.status().ToString().c_str());
      return 1;
    }
    c.optimizer = std::move(*opt);
    c.w = Tensor({n});
    c.g = Tensor({n});
    for (int64_t i = 0; i < n; ++i) {
      c.w[i] = rng.Uniform(-1.0f, 1.0f);
      c.g[i] = rng.Uniform(-1.0f, 1.0f);
    }
    // One untimed step maps every page of the state (allocated zero-filled, maybe lazily).
    c.optimizer->Step(backend, c.w, c.g);
  }
  const int64_t m = stream_bytes / static_cast<int64_t>(sizeof(float));
  Tensor a({m}), b({m}), c({m});
  for (int64_t i = 0; i < m; ++i) {
    a[i] = 0.0f;
    b[i] = static_cast<float>(i % 7) * 0.25f;
    c[i] = static_cast<float>(i % 5) * 0.5f;
  }
  std::vector<StreamVariant> streams = StreamVariants();
  for (int r = 0; r < repeats; ++r) {
    // a + s*b with s alternating in sign keeps a bounded over the repeats.
    const float s = r % 2 == 0 ? 0.5f : -0.5f;
    for (StreamVariant& v : streams) {
      v.triad_times.push_back(Time([&] { v.triad(m, s, b.data(), c.data(), a.data()); }));
      v.add_times.push_back(Time([&] { v.add(m, s, b.data(), a.data()); }));
    }
    for (Case& k : cases) {
      // Reading a buffer far larger than the last-level cache evicts the arena (and leaves no
      // dirty lines of the streaming kernels to write back during the update).
      read_sink = ReadAll(m, b.data());
      k.optimizer->BeginStep(k.optimizer->step() + 1);
      bool finite = true;
      k.times.push_back(Time([&] { finite = k.optimizer->Update(backend, k.w, k.g, 1.0f, 0, n); }));
      if (!finite) {
        std::fprintf(stderr, "%s: the update reported non-finite weights\n", k.name);
        return 1;
      }
    }
  }
  // Both streaming kernels move 12 B per element: triad as STREAM counts it (the write-allocate
  // read of a is not counted), the in-place update exactly.
  const double elem_bytes = 3.0 * sizeof(float);
  double stream_bw = 0;
  nlohmann::json stream_rows = nlohmann::json::array();
  for (const StreamVariant& v : streams) {
    const double triad_bw = elem_bytes * static_cast<double>(m) / Best(v.triad_times);
    const double add_bw = elem_bytes * static_cast<double>(m) / Best(v.add_times);
    stream_bw = std::max({stream_bw, triad_bw, add_bw});
    stream_rows.push_back({{"isa", v.isa},
                           {"triad_bytes_per_s", triad_bw},
                           {"in_place_update_bytes_per_s", add_bw},
                           {"triad_seconds", v.triad_times},
                           {"in_place_update_seconds", v.add_times}});
  }
  const std::string cpu = CpuInfo("model name");
  const std::string family = CpuInfo("cpu family"), model = CpuInfo("model");
  const unsigned cores = std::thread::hardware_concurrency();
  const std::string date = UtcNow();

  std::printf(
      "update_bench: %lld parameters, %d repeats, 1 thread; %s (family %s, model %s), "
      "%u cores, %s\n",
      static_cast<long long>(n), repeats, cpu.c_str(), family.c_str(), model.c_str(), cores,
      date.c_str());
  std::printf("streaming bandwidth, best of %d over arrays of %.0f MiB (GB/s):", repeats,
              static_cast<double>(stream_bytes) / (1 << 20));
  for (const auto& row : stream_rows) {
    std::printf(" %s triad %.2f, in-place %.2f;", row["isa"].get<std::string>().c_str(),
                row["triad_bytes_per_s"].get<double>() / 1e9,
                row["in_place_update_bytes_per_s"].get<double>() / 1e9);
  }
  std::printf(" bound uses the fastest, %.2f GB/s\n\n", stream_bw / 1e9);
  std::printf(
      "| optimizer | achieved / bound (best) | achieved / bound (median) | B/param | "
      "achieved Mparam/s (best) | median Mparam/s | bound Mparam/s | achieved GB/s |\n"
      "|---|---|---|---|---|---|---|---|\n");
  nlohmann::json rows = nlohmann::json::array();
  for (const Case& k : cases) {
    const double best = static_cast<double>(n) / Best(k.times);
    const double median = static_cast<double>(n) / Median(k.times);
    const double bound = stream_bw / k.bytes_per_param;
    std::printf("| %s | **%.0f%%** | %.0f%% | %d | %.1f | %.1f | %.1f | %.2f |\n", k.name,
                100 * best / bound, 100 * median / bound, k.bytes_per_param, best / 1e6,
                median / 1e6, bound / 1e6, best * k.bytes_per_param / 1e9);
    rows.push_back({{"optimizer", k.name},
                    {"bytes_per_param", k.bytes_per_param},
                    {"achieved_params_per_s_best", best},
                    {"achieved_params_per_s_median", median},
                    {"bound_params_per_s", bound},
                    {"ratio_best", best / bound},
                    {"ratio_median", median / bound},
                    {"update_seconds", k.times}});
  }
  std::printf(
      "\nRatio = updates/s over (streaming bytes/s / bytes per parameter); best of %d "
      "(median in its own column). Streaming = the fastest of the kernels above.\n",
      repeats);
  if (!json_path.empty()) {
    const nlohmann::json out = {
        {"benchmark", "update"},
        {"machine",
         {{"cpu_model", cpu},
          {"cpu_family", family},
          {"cpu_model_number", model},
          {"cores", cores},
          {"last_level_cache_bytes", LastLevelCacheBytes()},
          {"date", date},
          {"compiler", __VERSION__}}},
        {"params", n},
        {"repeats", repeats},
        {"threads", 1},
        {"statistic", "best of repeats for both the stream and the updates (medians also given)"},
        {"stream",
         {{"array_bytes", stream_bytes},
          {"bytes_per_element", elem_bytes},
          {"bound_bytes_per_s", stream_bw},
          {"variants", stream_rows}}},
        {"rows", rows}};
    if (!WriteJsonResult(json_path, out)) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace psgrid

int main(int argc, char** argv) {
  int64_t params = 10'000'000;
  int64_t repeats = 7;
  int64_t stream_mb = 0;
  std::string json;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const bool has_value = i + 1 < argc;
    bool ok = has_value;
    if (flag == "--params" && has_value) {
      ok = absl::SimpleAtoi(argv[++i], &params) && params > 0;
    } else if (flag == "--repeats" && has_value) {
      ok = absl::SimpleAtoi(argv[++i], &repeats) && repeats > 0;
    } else if (flag == "--stream-mb" && has_value) {
      ok = absl::SimpleAtoi(argv[++i], &stream_mb) && stream_mb > 0;
    } else if (flag == "--json" && has_value) {
      json = argv[++i];
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: update_bench [--params N] [--repeats R] [--stream-mb MB] "
                   "[--json FILE]\n");
      return 2;
    }
  }
  int64_t stream_bytes = stream_mb << 20;
  if (stream_bytes == 0) {
    stream_bytes = std::max<int64_t>(4 * psgrid::LastLevelCacheBytes(), int64_t{256} << 20);
  }
  return psgrid::Run(params, static_cast<int>(repeats), stream_bytes, json);
}
