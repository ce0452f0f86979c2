// The finiteness guards: every optimizer's Update (and Step) says whether the weights it wrote
// are all finite, and Backend::AllFinite checks an array, both without a second pass.
#include <cfloat>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/backend/cpu_backend.h"
#include "core/optimizer.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Every optimizer type, RMSprop with and without its momentum buffer (two kernel paths).
struct Kind {
  const char* type;
  double momentum;
};
constexpr Kind kKinds[] = {{"sgd", 0},     {"momentum", 0.9}, {"nesterov", 0.9}, {"adagrad", 0},
                           {"rmsprop", 0}, {"rmsprop", 0.5},  {"adam", 0},       {"adamw", 0}};

std::string Name(const Kind& k) {
  return std::string(k.type) +
         (k.momentum > 0 ? " (momentum " + std::to_string(k.momentum) + ")" : "");
}

std::unique_ptr<Optimizer> Make(const Kind& k, double lr, int64_t n) {
  v1::OptimizerSpec spec;
  spec.set_type(k.type);
  spec.set_learning_rate(lr);
  spec.set_momentum(k.momentum);
  auto opt = CreateOptimizer(spec, n);
  EXPECT_TRUE(opt.ok()) << opt.status();
  return opt.ok() ? std::move(*opt) : nullptr;
}

// Odd, so that every kernel runs both its vector loop and its scalar tail.
constexpr int64_t kN = 37;

Tensor RandomTensor(std::mt19937& rng, int64_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  Tensor t({n});
  for (float& v : t.span()) v = u(rng);
  return t;
}

// The independent check the kernels' answers are held against.
bool AllFiniteIn(const Tensor& t, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    if (!std::isfinite(t[i])) return false;
  }
  return true;
}

TEST(OptimizerGuard, FiniteUpdatesReturnTrue) {
  CpuBackend backend;
  std::mt19937 rng(1);
  for (const Kind& k : kKinds) {
    SCOPED_TRACE(Name(k));
    auto opt = Make(k, 0.05, kN);
    ASSERT_NE(opt, nullptr);
    Tensor w = RandomTensor(rng, kN);
    for (int step = 0; step < 4; ++step) {
      const Tensor g = RandomTensor(rng, kN, -10.0f, 10.0f);
      EXPECT_TRUE(opt->Step(backend, w, g, 0.5f)) << "step " << step;
      EXPECT_TRUE(AllFiniteIn(w, 0, kN));
    }
    // Ranges of one step, top down as the server applies them, and an empty range.
    opt->BeginStep(opt->step() + 1);
    const Tensor g = RandomTensor(rng, kN);
    EXPECT_TRUE(opt->Update(backend, w, g, 1.0f, 20, kN));
    EXPECT_TRUE(opt->Update(backend, w, g, 1.0f, 3, 20));
    EXPECT_TRUE(opt->Update(backend, w, g, 1.0f, 0, 3));
    EXPECT_TRUE(opt->Update(backend, w, g, 1.0f, 5, 5));
  }
}

// FLT_MAX itself is finite: the test is |w| <= FLT_MAX, not <.
TEST(OptimizerGuard, WeightsAtTheLargestFloatAreFinite) {
  CpuBackend backend;
  for (const Kind& k : kKinds) {
    SCOPED_TRACE(Name(k));
    if (std::string(k.type) == "adamw") continue;  // its weight decay shrinks every weight
    auto opt = Make(k, 0.05, kN);
    ASSERT_NE(opt, nullptr);
    Tensor w({kN});
    for (int64_t i = 0; i < kN; ++i) w[i] = i % 2 == 0 ? FLT_MAX : -FLT_MAX;
    const Tensor g({kN});  // zero: nothing moves
    EXPECT_TRUE(opt->Step(backend, w, g));
    EXPECT_EQ(w[0], FLT_MAX);
    EXPECT_EQ(w[kN - 1], FLT_MAX);
    EXPECT_EQ(w[1], -FLT_MAX);
  }
}

TEST(OptimizerGuard, ANonFiniteGradientAnywhereReturnsFalse) {
  CpuBackend backend;
  std::mt19937 rng(2);
  std::uniform_int_distribution<int64_t> position(0, kN - 1);
  std::vector<int64_t> positions = {0, kN - 1, kN / 2, 32, 33};  // 32.. lie in a scalar tail
  for (int i = 0; i < 10; ++i) positions.push_back(position(rng));
  for (const Kind& k : kKinds) {
    for (float bad : {kNaN, kInf, -kInf}) {
      for (int64_t pos : positions) {
        SCOPED_TRACE(Name(k) + " gradient " + std::to_string(bad) + " at " + std::to_string(pos));
        auto opt = Make(k, 0.05, kN);
        ASSERT_NE(opt, nullptr);
        Tensor w = RandomTensor(rng, kN);
        Tensor g = RandomTensor(rng, kN);
        ASSERT_TRUE(opt->Step(backend, w, g));  // some state first
        g[pos] = bad;
        EXPECT_FALSE(opt->Step(backend, w, g));
        EXPECT_FALSE(std::isfinite(w[pos]));
        EXPECT_TRUE(AllFiniteIn(w, 0, pos));
        EXPECT_TRUE(AllFiniteIn(w, pos + 1, kN));
        // The weight (and the state of every rule with state) stays non-finite: the next,
        // finite gradient is refused too.
        g[pos] = 0.5f;
        EXPECT_FALSE(opt->Step(backend, w, g));
      }
    }
  }
}

// Finite inputs whose update leaves the float range at one element. For SGD and the momentum
// rules a huge gradient times the learning rate overflows (1e30 × 1e10 > FLT_MAX ≈ 3.4e38).
// The adaptive rules (Adagrad, RMSprop, Adam) divide the gradient by its own scale, so a huge
// gradient moves a weight by about lr only: there a huge learning rate pushes a weight at
// FLT_MAX past it (AdamW's decay factor 1 − lr·λ alone overflows it).
TEST(OptimizerGuard, AnUpdateThatOverflowsReturnsFalse) {
  CpuBackend backend;
  for (const Kind& k : kKinds) {
    SCOPED_TRACE(Name(k));
    const std::string type = k.type;
    const bool adaptive = type != "sgd" && type != "momentum" && type != "nesterov";
    // Adam's first step is lr/(1 − β1) = 10·lr: 2e38, still finite.
    auto opt = Make(k, adaptive ? 2e37 : 1e10, kN);
    ASSERT_NE(opt, nullptr);
    Tensor w({kN});
    Tensor g({kN});
    for (int64_t i = 0; i < kN; ++i) {
      w[i] = 0.5f;
      // The others stay far inside the range: they move by lr·0.25 = 2.5e9 (SGD family), or
      // not at all (a zero gradient; AdamW's decay makes them −1e35).
      g[i] = adaptive ? 0.0f : 0.25f;
    }
    const int64_t pos = 17;
    w[pos] = adaptive ? FLT_MAX : 0.5f;
    g[pos] = adaptive ? -1.0f : -1e30f;
    EXPECT_FALSE(opt->Step(backend, w, g));
    EXPECT_FALSE(std::isfinite(w[pos]));
    EXPECT_TRUE(AllFiniteIn(w, 0, pos));
    EXPECT_TRUE(AllFiniteIn(w, pos + 1, kN));
  }
}

// A range that leaves the bad element out is clean; one that holds it is not.
TEST(OptimizerGuard, ARangeWithoutTheBadElementReturnsTrue) {
  CpuBackend backend;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int64_t> position(1, kN - 2);
  for (const Kind& k : kKinds) {
    for (float bad : {kNaN, kInf}) {
      const int64_t pos = position(rng);
      SCOPED_TRACE(Name(k) + " bad element at " + std::to_string(pos));
      auto opt = Make(k, 0.05, kN);
      ASSERT_NE(opt, nullptr);
      Tensor w = RandomTensor(rng, kN);
      Tensor g = RandomTensor(rng, kN);
      g[pos] = bad;
      opt->BeginStep(1);
      EXPECT_TRUE(opt->Update(backend, w, g, 1.0f, pos + 1, kN));  // above it
      EXPECT_TRUE(opt->Update(backend, w, g, 1.0f, 0, pos));       // below it (end excluded)
      EXPECT_TRUE(AllFiniteIn(w, 0, kN));                          // w[pos] not written yet
      EXPECT_FALSE(opt->Update(backend, w, g, 1.0f, pos, pos + 1));
      EXPECT_FALSE(std::isfinite(w[pos]));
      // Later steps: a range away from it is still clean, the whole arena is not.
      opt->BeginStep(2);
      g[pos] = 0.0f;
      EXPECT_TRUE(opt->Update(backend, w, g, 1.0f, pos + 1, kN));
      EXPECT_FALSE(opt->Update(backend, w, g, 1.0f, 0, kN));
    }
  }
}

// Lengths around the vector widths (4 and 8 floats, unrolled ×4) and their tails.
constexpr int64_t kLengths[] = {1, 3, 5, 7, 9, 15, 17, 31, 33, 63, 65, 101, 1001, 4099};

std::vector<float> CleanArray(std::mt19937& rng, int64_t n) {
  std::uniform_real_distribution<float> u(-1e6f, 1e6f);
  std::vector<float> x(n);
  for (float& v : x) v = u(rng);
  // Extremes that are still finite: the largest floats, the smallest subnormal, signed zeros.
  const float extremes[] = {FLT_MAX, -FLT_MAX, std::numeric_limits<float>::denorm_min(), -0.0f,
                            0.0f};
  for (int64_t i = 0; i < n && i < 5; ++i) x[(i * 7) % n] = extremes[i];
  return x;
}

TEST(OptimizerGuard, AllFiniteFindsNaNAndInfAtTheEndsAndTheMiddle) {
  CpuBackend backend;
  std::mt19937 rng(4);
  EXPECT_TRUE(backend.AllFinite(0, nullptr));
  const float bads[] = {kNaN, -kNaN, kInf, -kInf};
  for (int64_t n : kLengths) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const std::vector<float> clean = CleanArray(rng, n);
    EXPECT_TRUE(backend.AllFinite(n, clean.data()));
    // An unaligned start (the arena's layers start anywhere).
    if (n > 1) {
      EXPECT_TRUE(backend.AllFinite(n - 1, clean.data() + 1));
    }
    for (float bad : bads) {
      for (int64_t pos : {int64_t{0}, n / 2, n - 1}) {
        SCOPED_TRACE(std::to_string(bad) + " at " + std::to_string(pos));
        std::vector<float> x = clean;
        x[pos] = bad;
        EXPECT_FALSE(backend.AllFinite(n, x.data()));
        if (pos > 0) {
          EXPECT_FALSE(backend.AllFinite(n - 1, x.data() + 1));
          EXPECT_TRUE(backend.AllFinite(pos, x.data()));  // the prefix before it
        }
        if (pos + 1 < n) {
          EXPECT_TRUE(backend.AllFinite(n - pos - 1, x.data() + pos + 1));
        }
      }
    }
  }
}

}  // namespace
}  // namespace psgrid
