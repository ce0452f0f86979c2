// Backend parity: every Backend operation, forward and backward, on every backend this build
// has, on random inputs (odd sizes, strides and padding, null optional pointers, NaN and invalid
// inputs), against CpuBackend: floats within float32 tolerance, integers (arg-max, correct
// counts, embedding positions, finiteness flags) exactly. Inputs go to the backend under test
// through its memory methods.
//
// The suite is instantiated for every name in AvailableBackends(). For "cpu" it runs a second
// CpuBackend against the reference: a check of the harness itself that needs no device. A
// backend that cannot be created here (CUDA built in, no GPU) skips every test with the reason.
// Registry names and CpuBackend's memory methods are checked on the CPU alone.
#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/backend/backend.h"
#include "core/backend/cpu_backend.h"
#include "core/backend/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace psgrid {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// An array in a backend's memory, filled from the host and read back through the backend's
// memory methods.
template <typename T>
class DeviceArray {
 public:
  DeviceArray(Backend* backend, const std::vector<T>& host)
      : backend_(backend), size_(host.size()) {
    data_ = static_cast<T*>(backend_->AllocateBytes(bytes()));
    if (size_ > 0) {
      EXPECT_NE(data_, nullptr) << "allocating " << bytes() << " bytes";
      backend_->CopyToDevice(data_, host.data(), bytes());
    }
  }
  DeviceArray(DeviceArray&& other) noexcept
      : backend_(other.backend_), data_(std::exchange(other.data_, nullptr)), size_(other.size_) {}
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { backend_->Free(data_); }

  T* get() const { return data_; }
  std::vector<T> ToHost() const {
    std::vector<T> out(size_);
    backend_->CopyToHost(out.data(), data_, bytes());
    return out;
  }

 private:
  size_t bytes() const { return size_ * sizeof(T); }

  Backend* backend_;
  T* data_ = nullptr;
  size_t size_;
};

// got matches want element by element: NaN where want is NaN, the same infinity, else within
// atol + rtol·|want|.
::testing::AssertionResult Near(const std::vector<float>& want, const std::vector<float>& got,
                                float rtol = 1e-4f, float atol = 1e-5f) {
  if (want.size() != got.size()) {
    return ::testing::AssertionFailure() << "sizes differ: " << want.size() << " vs " << got.size();
  }
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < want.size(); ++i) {
    const float w = want[i], g = got[i];
    bool ok;
    if (std::isnan(w)) {
      ok = std::isnan(g);
    } else if (std::isinf(w)) {
      ok = g == w;
    } else {
      ok = std::fabs(g - w) <= atol + rtol * std::fabs(w);
    }
    if (!ok && bad++ < 5) first << "\n  [" << i << "] want " << w << ", got " << g;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << want.size() << " differ:" << first.str();
}

::testing::AssertionResult NearDouble(double want, double got, double rtol) {
  if (std::isnan(want) ? std::isnan(got)
                       : std::fabs(got - want) <= rtol * std::fabs(want) + 1e-12) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "want " << want << ", got " << got;
}

class BackendParityTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(GetParam());
    if (!backend.ok()) {
      GTEST_SKIP() << "backend '" << GetParam()
                   << "' cannot be created here: " << backend.status().message();
    }
    backend_ = std::move(*backend);
  }

  std::vector<float> Random(int64_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = u(rng_);
    return v;
  }
  // Small integers as floats: many ties.
  std::vector<float> Quantized(int64_t n, int levels) {
    std::uniform_int_distribution<int> u(0, levels - 1);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = static_cast<float>(u(rng_));
    return v;
  }
  int Below(int bound) { return std::uniform_int_distribution<int>(0, bound - 1)(rng_); }

  template <typename T>
  DeviceArray<T> Up(const std::vector<T>& host) {
    return DeviceArray<T>(backend_.get(), host);
  }

  CpuBackend cpu_;
  std::unique_ptr<Backend> backend_;
  std::mt19937 rng_{20240607};
};

// ---- Memory -------------------------------------------------------------------------------

TEST_P(BackendParityTest, MemoryRoundTrips) {
  EXPECT_EQ(backend_->AllocateBytes(0), nullptr);
  backend_->Free(nullptr);
  // Sizes around and beyond a staging chunk (4 MiB in the CUDA backend), several buffers in a
  // row (staging buffers reused), then all read back.
  const std::vector<int64_t> sizes = {1, 3, 1000, (int64_t{4} << 20) / 4 - 1,
                                      (int64_t{4} << 20) / 4 * 2 + 123};
  std::vector<std::vector<float>> hosts;
  std::vector<DeviceArray<float>> arrays;
  for (int64_t n : sizes) {
    hosts.push_back(Random(n));
    arrays.push_back(Up(hosts.back()));
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<float> back = arrays[i].ToHost();
    EXPECT_TRUE(back == hosts[i]) << "size " << sizes[i];
  }
  // Reading back into the middle of a host buffer, from the middle of a device one.
  std::vector<float> part(10, -7.0f);
  backend_->CopyToHost(part.data() + 2, arrays[2].get() + 100, 5 * sizeof(float));
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(part[i], i >= 2 && i < 7 ? hosts[2][100 + i - 2] : -7.0f) << i;
  }
  float* floats = backend_->AllocateFloats(17);
  ASSERT_NE(floats, nullptr);
  backend_->FillZeros(17, floats);
  std::vector<float> zeros(17, 1.0f);
  backend_->Synchronize();
  backend_->CopyToHost(zeros.data(), floats, 17 * sizeof(float));
  EXPECT_EQ(zeros, std::vector<float>(17, 0.0f));
  backend_->Free(floats);
}

// Asynchronous reads see every operation called before them (here a large product and an
// update of the source queued just before), land in order, and leave the source usable.
TEST_P(BackendParityTest, AsynchronousCopiesToHost) {
  constexpr int64_t kN = 1 << 20, kParts = 4;
  const std::vector<float> a = Random(512 * 512), b = Random(512 * 512), x = Random(kN);
  DeviceArray<float> da = Up(a), db = Up(b), dc = Up(std::vector<float>(512 * 512)), dx = Up(x);
  float* pinned = static_cast<float*>(backend_->AllocatePinnedHost(kN * sizeof(float)));
  ASSERT_NE(pinned, nullptr);
  std::fill(pinned, pinned + kN, -1.0f);
  std::vector<uint64_t> tickets;
  for (int64_t part = kParts - 1; part >= 0; --part) {  // backward's order: the end first
    const int64_t from = part * kN / kParts, n = kN / kParts;
    backend_->Gemm(Trans::kNo, Trans::kNo, 512, 512, 512, 1.0f, da.get(), db.get(), 0.0f, dc.get());
    backend_->Axpby(n, 1.0f, dx.get() + from, 2.0f, dx.get() + from);  // x ← 3x on this part
    tickets.push_back(backend_->CopyToHostAsync(pinned + from, dx.get() + from, n * sizeof(float)));
  }
  backend_->WaitCopy(tickets.back());
  for (uint64_t t : tickets) EXPECT_TRUE(backend_->CopyDone(t));
  int64_t bad = 0;
  for (int64_t i = 0; i < kN; ++i) bad += pinned[i] != 3.0f * x[i];
  EXPECT_EQ(bad, 0) << "elements that are not 3x";
  // The copies did not disturb the source, and a plain read after them sees it.
  std::vector<float> back = dx.ToHost();
  EXPECT_EQ(back[7], 3.0f * x[7]);
  // Into pageable memory: a plain copy (ticket 0, done).
  std::vector<float> pageable(8, -1.0f);
  const uint64_t t = backend_->CopyToHostAsync(pageable.data(), dx.get(), 8 * sizeof(float));
  backend_->WaitCopy(t);
  EXPECT_TRUE(backend_->CopyDone(t));
  EXPECT_EQ(pageable[3], 3.0f * x[3]);
  backend_->FreePinnedHost(pinned);
}

// ---- Dense ops ----------------------------------------------------------------------------

TEST_P(BackendParityTest, Gemm) {
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape& s : {Shape{1, 1, 1}, Shape{3, 5, 7}, Shape{17, 1, 33}, Shape{1, 19, 4},
                         Shape{64, 10, 300}, Shape{65, 129, 31}}) {
    for (Trans ta : {Trans::kNo, Trans::kYes}) {
      for (Trans tb : {Trans::kNo, Trans::kYes}) {
        for (const auto& [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{0.5f, 1.5f}}) {
          SCOPED_TRACE(::testing::Message() << "m=" << s.m << " n=" << s.n << " k=" << s.k << " ta="
                                            << (ta == Trans::kYes) << " tb=" << (tb == Trans::kYes)
                                            << " alpha=" << alpha << " beta=" << beta);
          const std::vector<float> a = Random(s.m * s.k), b = Random(s.k * s.n);
          // With beta = 0 C's old contents are ignored, NaN included.
          std::vector<float> c =
              beta == 0.0f ? std::vector<float>(s.m * s.n, kNaN) : Random(s.m * s.n);
          DeviceArray<float> da = Up(a), db = Up(b), dc = Up(c);
          cpu_.Gemm(ta, tb, s.m, s.n, s.k, alpha, a.data(), b.data(), beta, c.data());
          backend_->Gemm(ta, tb, s.m, s.n, s.k, alpha, da.get(), db.get(), beta, dc.get());
          EXPECT_TRUE(Near(c, dc.ToHost(), 1e-4f, 1e-5f * static_cast<float>(s.k)));
        }
      }
    }
  }
}

TEST_P(BackendParityTest, BroadcastAndSumRows) {
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {37, 10}, {300, 129}, {5, 1000}, {1000, 3}};
  for (const auto& [rows, cols] : shapes) {
    SCOPED_TRACE(::testing::Message() << "rows=" << rows << " cols=" << cols);
    const std::vector<float> bias = Random(cols);
    std::vector<float> y(rows * cols, kNaN);
    DeviceArray<float> dbias = Up(bias), dy = Up(y);
    cpu_.BroadcastRows(rows, cols, bias.data(), y.data());
    backend_->BroadcastRows(rows, cols, dbias.get(), dy.get());
    EXPECT_TRUE(Near(y, dy.ToHost(), 0, 0));

    const std::vector<float> x = Random(rows * cols);
    std::vector<float> out(cols, kNaN);
    DeviceArray<float> dx = Up(x), dout = Up(out);
    cpu_.SumRows(rows, cols, x.data(), out.data());
    backend_->SumRows(rows, cols, dx.get(), dout.get());
    EXPECT_TRUE(Near(out, dout.ToHost(), 1e-4f, 1e-5f * std::sqrt(static_cast<float>(rows))));
  }
}

TEST_P(BackendParityTest, Activations) {
  for (int64_t n : {1, 1000, 4097}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    std::vector<float> x = Random(n, -6.0f, 6.0f);
    const float specials[] = {0.0f, -0.0f, kNaN, kInf, -kInf, 100.0f, -100.0f, 1e-30f};
    for (size_t i = 0; i < std::size(specials) && i < x.size(); ++i)
      x[i * 7 % x.size()] = specials[i];
    const std::vector<float> dy = Random(n);
    DeviceArray<float> dx_in = Up(x), ddy = Up(dy);
    using Forward = void (Backend::*)(int64_t, const float*, float*);
    using Backward = void (Backend::*)(int64_t, const float*, const float*, float*);
    struct Op {
      const char* name;
      Forward forward;
      Backward backward;
    };
    for (const Op& op : {Op{"relu", &Backend::ReluForward, &Backend::ReluBackward},
                         Op{"sigmoid", &Backend::SigmoidForward, &Backend::SigmoidBackward},
                         Op{"tanh", &Backend::TanhForward, &Backend::TanhBackward}}) {
      SCOPED_TRACE(op.name);
      std::vector<float> y(n, kNaN), dx(n, kNaN);
      DeviceArray<float> dev_y = Up(y), dev_dx = Up(dx);
      (cpu_.*op.forward)(n, x.data(), y.data());
      ((*backend_).*op.forward)(n, dx_in.get(), dev_y.get());
      EXPECT_TRUE(Near(y, dev_y.ToHost(), 1e-5f, 1e-7f));
      // The backward pass from the CPU's y on both, so that only the backward maths differs.
      DeviceArray<float> dev_y_ref = Up(y);
      (cpu_.*op.backward)(n, y.data(), dy.data(), dx.data());
      ((*backend_).*op.backward)(n, dev_y_ref.get(), ddy.get(), dev_dx.get());
      EXPECT_TRUE(Near(dx, dev_dx.ToHost(), 1e-5f, 1e-7f));
    }
    // relu passes NaN and −0 through: compare bits.
    std::vector<float> y(n);
    DeviceArray<float> dev_y = Up(y);
    cpu_.ReluForward(n, x.data(), y.data());
    backend_->ReluForward(n, dx_in.get(), dev_y.get());
    const std::vector<float> got = dev_y.ToHost();
    EXPECT_EQ(std::memcmp(y.data(), got.data(), y.size() * sizeof(float)), 0);
  }
}

TEST_P(BackendParityTest, AxpbyAndFillZeros) {
  for (int64_t n : {1, 1001}) {
    const std::pair<float, float> coefficients[] = {{1.5f, 0.0f}, {0.5f, 1.0f}, {-2.0f, 0.25f}};
    for (const auto& [alpha, beta] : coefficients) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " alpha=" << alpha << " beta=" << beta);
      const std::vector<float> x = Random(n);
      // beta = 0 ignores y: NaN there must not come through.
      std::vector<float> y = beta == 0.0f ? std::vector<float>(n, kNaN) : Random(n);
      DeviceArray<float> dx = Up(x), dy = Up(y);
      cpu_.Axpby(n, alpha, x.data(), beta, y.data());
      backend_->Axpby(n, alpha, dx.get(), beta, dy.get());
      EXPECT_TRUE(Near(y, dy.ToHost(), 1e-6f, 0));
    }
    std::vector<float> z = Random(n);
    DeviceArray<float> dz = Up(z);
    cpu_.FillZeros(n, z.data());
    backend_->FillZeros(n, dz.get());
    EXPECT_TRUE(Near(z, dz.ToHost(), 0, 0));
  }
}

TEST_P(BackendParityTest, SwapLeadingDims) {
  struct Dims {
    int64_t d0, d1, inner;
  };
  for (const Dims& d : {Dims{1, 1, 1}, Dims{3, 5, 7}, Dims{64, 35, 1}, Dims{10, 1, 128}}) {
    SCOPED_TRACE(::testing::Message() << d.d0 << "x" << d.d1 << "x" << d.inner);
    const std::vector<float> src = Random(d.d0 * d.d1 * d.inner);
    std::vector<float> dst(src.size(), kNaN);
    DeviceArray<float> dsrc = Up(src), ddst = Up(dst);
    cpu_.SwapLeadingDims(d.d0, d.d1, d.inner, src.data(), dst.data());
    backend_->SwapLeadingDims(d.d0, d.d1, d.inner, dsrc.get(), ddst.get());
    EXPECT_TRUE(Near(dst, ddst.ToHost(), 0, 0));
  }
}

// ---- Losses and reductions ----------------------------------------------------------------

TEST_P(BackendParityTest, SoftmaxCrossEntropy) {
  struct Shape {
    int64_t rows, cols;
    bool ties;
  };
  for (const Shape& s :
       {Shape{1, 1, false}, Shape{1, 10, false}, Shape{7, 3, false}, Shape{64, 10, false},
        Shape{33, 100, false}, Shape{4, 1000, false}, Shape{50, 7, true}, Shape{40, 70, true}}) {
    std::vector<float> logits =
        s.ties ? Quantized(s.rows * s.cols, 3) : Random(s.rows * s.cols, -4, 4);
    std::vector<int32_t> labels(s.rows);
    for (int64_t i = 0; i < s.rows; ++i) {
      // Often one of the row's maxima (any of them, so that the tie rule decides `correct`).
      const float* z = logits.data() + i * s.cols;
      const float max = *std::max_element(z, z + s.cols);
      std::vector<int32_t> maxima;
      for (int64_t j = 0; j < s.cols; ++j) {
        if (z[j] == max) maxima.push_back(static_cast<int32_t>(j));
      }
      labels[i] = Below(2) == 0 ? maxima[Below(static_cast<int>(maxima.size()))]
                                : Below(static_cast<int>(s.cols));
    }
    for (bool nan : {false, true}) {
      if (nan && s.cols < 3) continue;
      if (nan) {
        logits[0] = kNaN;  // row 0, column 0: NaN stays the arg-max
        if (s.rows > 1) logits[s.cols + s.cols / 2] = kNaN;  // row 1: NaN in the middle
      }
      for (bool grad : {false, true}) {
        for (bool count : {false, true}) {
          SCOPED_TRACE(::testing::Message()
                       << "rows=" << s.rows << " cols=" << s.cols << " ties=" << s.ties
                       << " nan=" << nan << " grad=" << grad << " count=" << count);
          std::vector<float> dlogits(logits.size(), kNaN);
          DeviceArray<float> dz = Up(logits), ddz = Up(dlogits);
          DeviceArray<int32_t> dlabels = Up(labels);
          int64_t correct = -5, dev_correct = -7;
          const double loss =
              cpu_.SoftmaxCrossEntropy(s.rows, s.cols, logits.data(), labels.data(),
                                       grad ? dlogits.data() : nullptr, count ? &correct : nullptr);
          const double dev_loss = backend_->SoftmaxCrossEntropy(
              s.rows, s.cols, dz.get(), dlabels.get(), grad ? ddz.get() : nullptr,
              count ? &dev_correct : nullptr);
          EXPECT_TRUE(NearDouble(loss, dev_loss, 1e-5));
          if (count) {
            EXPECT_EQ(correct, dev_correct);
          } else {
            EXPECT_EQ(dev_correct, -7);
          }
          if (grad) {
            EXPECT_TRUE(Near(dlogits, ddz.ToHost(), 1e-4f, 1e-7f));
          } else {
            EXPECT_TRUE(Near(dlogits, ddz.ToHost(), 0, 0));  // untouched
          }
        }
      }
    }
  }
}

TEST_P(BackendParityTest, MeanSquaredError) {
  for (int64_t n : {1, 7, 1000, 100003}) {
    for (bool grad : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " grad=" << grad);
      const std::vector<float> pred = Random(n), target = Random(n);
      std::vector<float> dpred(n, kNaN);
      DeviceArray<float> dp = Up(pred), dt = Up(target), dd = Up(dpred);
      const double loss =
          cpu_.MeanSquaredError(n, pred.data(), target.data(), grad ? dpred.data() : nullptr);
      const double dev_loss =
          backend_->MeanSquaredError(n, dp.get(), dt.get(), grad ? dd.get() : nullptr);
      EXPECT_TRUE(NearDouble(loss, dev_loss, 1e-9));
      EXPECT_TRUE(Near(dpred, dd.ToHost(), 1e-6f, 0));
    }
  }
}

TEST_P(BackendParityTest, SquaredNormAndAllFinite) {
  for (int64_t n : {0, 1, 1000, (1 << 20) + 3}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    const std::vector<float> x = Random(n, -3.0f, 3.0f);
    DeviceArray<float> dx = Up(x);
    EXPECT_TRUE(
        NearDouble(cpu_.SquaredNorm(n, x.data()), backend_->SquaredNorm(n, dx.get()), 1e-9));
    EXPECT_TRUE(backend_->AllFinite(n, dx.get()));
  }
  const int64_t n = 5000;
  struct Case {
    const char* name;
    int64_t at;
    float value;
  };
  for (const Case& c : {Case{"NaN first", 0, kNaN}, Case{"+Inf last", n - 1, kInf},
                        Case{"-Inf middle", n / 2, -kInf}, Case{"FLT_MAX", 17, FLT_MAX},
                        Case{"-FLT_MAX", 3, -FLT_MAX}}) {
    SCOPED_TRACE(c.name);
    std::vector<float> x = Random(n);
    x[c.at] = c.value;
    DeviceArray<float> dx = Up(x);
    const bool want = cpu_.AllFinite(n, x.data());
    EXPECT_EQ(want, std::isfinite(c.value));
    EXPECT_EQ(backend_->AllFinite(n, dx.get()), want);
    // Only the first element in view.
    EXPECT_EQ(backend_->AllFinite(1, dx.get()), cpu_.AllFinite(1, x.data()));
  }
}

// ---- Optimizer kernels --------------------------------------------------------------------

// One optimizer kernel run on both backends from the same weights and state; compares the
// return value exactly and the weights and state within tolerance.
class UpdateCase {
 public:
  UpdateCase(Backend* cpu, Backend* device) : cpu_(cpu), device_(device) {}
  // grad, then the state buffers, then w last.
  std::vector<std::vector<float>> host;
  void Run(const std::function<bool(Backend*, std::vector<float*>&)>& kernel) {
    std::vector<float*> cpu_ptrs, dev_ptrs;
    std::vector<DeviceArray<float>> arrays;
    std::vector<std::vector<float>> cpu_data = host;
    for (auto& v : cpu_data) cpu_ptrs.push_back(v.data());
    for (auto& v : host) {
      arrays.emplace_back(device_, v);
      dev_ptrs.push_back(arrays.back().get());
    }
    const bool want = kernel(cpu_, cpu_ptrs);
    const bool got = kernel(device_, dev_ptrs);
    EXPECT_EQ(want, got) << "finiteness flag";
    for (size_t i = 1; i < host.size(); ++i) {
      EXPECT_TRUE(Near(cpu_data[i], arrays[i].ToHost(), 1e-5f, 1e-7f)) << "buffer " << i;
    }
    last_flag = want;
  }
  bool last_flag = true;

 private:
  Backend* cpu_;
  Backend* device_;
};

TEST_P(BackendParityTest, OptimizerKernels) {
  UpdateRule rule;
  rule.lr = 0.1f;
  rule.momentum = 0.9f;
  rule.weight_decay = 0.01f;
  rule.grad_scale = 0.5f;
  rule.eps = 1e-6f;
  rule.alpha = 0.9f;
  rule.bias_correction1 = 1.0f - 0.9f * 0.9f * 0.9f;
  rule.bias_correction2 = 1.0f - 0.999f * 0.999f * 0.999f;
  enum class Bad { kNone, kNaN, kInf, kHuge };
  for (int64_t n : {1, 37, 10007}) {
    for (Bad bad : {Bad::kNone, Bad::kNaN, Bad::kInf, Bad::kHuge}) {
      const std::vector<float> grad = [&] {
        std::vector<float> g = Random(n);
        const int64_t at = n / 3;
        if (bad == Bad::kNaN) g[at] = kNaN;
        if (bad == Bad::kInf) g[at] = -kInf;
        if (bad == Bad::kHuge) g[at] = 3e38f;  // finite; its square overflows
        return g;
      }();
      const std::vector<float> w = Random(n), buf = Random(n), pos = Random(n, 0.0f, 2.0f),
                               pos2 = Random(n, 0.0f, 1.0f);
      auto check = [&](const char* name, std::vector<std::vector<float>> buffers,
                       const std::function<bool(Backend*, std::vector<float*>&)>& kernel) {
        SCOPED_TRACE(::testing::Message()
                     << name << " n=" << n << " bad=" << static_cast<int>(bad));
        UpdateCase c(&cpu_, backend_.get());
        c.host = std::move(buffers);
        c.Run(kernel);
        if (bad == Bad::kNaN || bad == Bad::kInf) {
          EXPECT_FALSE(c.last_flag);
        } else if (bad == Bad::kNone) {
          EXPECT_TRUE(c.last_flag);
        }
      };
      check("sgd", {grad, w},
            [&](Backend* b, std::vector<float*>& p) { return b->SgdUpdate(n, rule, p[0], p[1]); });
      check("momentum", {grad, buf, w}, [&](Backend* b, std::vector<float*>& p) {
        return b->MomentumUpdate(n, rule, p[0], p[1], p[2]);
      });
      check("nesterov", {grad, buf, w}, [&](Backend* b, std::vector<float*>& p) {
        return b->NesterovUpdate(n, rule, p[0], p[1], p[2]);
      });
      check("adagrad", {grad, pos, w}, [&](Backend* b, std::vector<float*>& p) {
        return b->AdagradUpdate(n, rule, p[0], p[1], p[2]);
      });
      check("rmsprop", {grad, pos, w}, [&](Backend* b, std::vector<float*>& p) {
        return b->RmspropUpdate(n, rule, p[0], p[1], nullptr, p[2]);
      });
      check("rmsprop momentum", {grad, pos, buf, w}, [&](Backend* b, std::vector<float*>& p) {
        return b->RmspropUpdate(n, rule, p[0], p[1], p[2], p[3]);
      });
      check("adam", {grad, buf, pos2, w}, [&](Backend* b, std::vector<float*>& p) {
        return b->AdamUpdate(n, rule, false, p[0], p[1], p[2], p[3]);
      });
      check("adamw", {grad, buf, pos2, w}, [&](Backend* b, std::vector<float*>& p) {
        return b->AdamUpdate(n, rule, true, p[0], p[1], p[2], p[3]);
      });
    }
  }
  // A NaN already in the state (a momentum buffer) reaches the weight.
  const int64_t n = 9;
  std::vector<float> grad = Random(n), buf = Random(n), w = Random(n);
  buf[4] = kNaN;
  UpdateCase c(&cpu_, backend_.get());
  c.host = {grad, buf, w};
  c.Run([&](Backend* b, std::vector<float*>& p) {
    return b->MomentumUpdate(n, rule, p[0], p[1], p[2]);
  });
  EXPECT_FALSE(c.last_flag);
}

// ---- Convolution, pooling, dropout --------------------------------------------------------

struct ConvConfig {
  int64_t channels, height, width, kernel, stride, padding;
};
constexpr ConvConfig kConvConfigs[] = {
    {1, 5, 5, 3, 1, 0}, {3, 7, 9, 3, 2, 1}, {2, 8, 8, 5, 1, 2}, {4, 11, 6, 2, 3, 0},
    {1, 4, 4, 4, 1, 3}, {2, 6, 7, 1, 1, 0}, {3, 9, 9, 3, 3, 2}, {2, 28, 28, 5, 1, 2},
};

TEST_P(BackendParityTest, Im2ColAndCol2Im) {
  for (const ConvConfig& c : kConvConfigs) {
    SCOPED_TRACE(::testing::Message()
                 << "c=" << c.channels << " h=" << c.height << " w=" << c.width << " k=" << c.kernel
                 << " s=" << c.stride << " p=" << c.padding);
    const int64_t out_h = (c.height + 2 * c.padding - c.kernel) / c.stride + 1;
    const int64_t out_w = (c.width + 2 * c.padding - c.kernel) / c.stride + 1;
    const int64_t cols_size = c.channels * c.kernel * c.kernel * out_h * out_w;
    const std::vector<float> x = Random(c.channels * c.height * c.width);
    std::vector<float> cols(cols_size, kNaN);
    DeviceArray<float> dx = Up(x), dcols = Up(cols);
    cpu_.Im2Col(c.channels, c.height, c.width, c.kernel, c.stride, c.padding, x.data(),
                cols.data());
    backend_->Im2Col(c.channels, c.height, c.width, c.kernel, c.stride, c.padding, dx.get(),
                     dcols.get());
    EXPECT_TRUE(Near(cols, dcols.ToHost(), 0, 0));

    const std::vector<float> g = Random(cols_size);
    std::vector<float> dimg(x.size(), kNaN);
    DeviceArray<float> dg = Up(g), ddimg = Up(dimg);
    cpu_.Col2Im(c.channels, c.height, c.width, c.kernel, c.stride, c.padding, g.data(),
                dimg.data());
    backend_->Col2Im(c.channels, c.height, c.width, c.kernel, c.stride, c.padding, dg.get(),
                     ddimg.get());
    EXPECT_TRUE(Near(dimg, ddimg.ToHost(), 1e-5f, 1e-6f));
  }
}

TEST_P(BackendParityTest, ChannelBias) {
  struct Shape {
    int64_t batch, channels, spatial;
  };
  for (const Shape& s : {Shape{1, 1, 1}, Shape{2, 3, 5}, Shape{16, 8, 49}, Shape{64, 32, 784},
                         Shape{3, 1000, 1}, Shape{100, 1, 3}}) {
    SCOPED_TRACE(::testing::Message() << s.batch << "x" << s.channels << "x" << s.spatial);
    const std::vector<float> bias = Random(s.channels);
    std::vector<float> y(s.batch * s.channels * s.spatial, kNaN);
    DeviceArray<float> dbias = Up(bias), dy = Up(y);
    cpu_.BroadcastChannels(s.batch, s.channels, s.spatial, bias.data(), y.data());
    backend_->BroadcastChannels(s.batch, s.channels, s.spatial, dbias.get(), dy.get());
    EXPECT_TRUE(Near(y, dy.ToHost(), 0, 0));

    const std::vector<float> x = Random(s.batch * s.channels * s.spatial);
    std::vector<float> out(s.channels, kNaN);
    DeviceArray<float> dx = Up(x), dout = Up(out);
    cpu_.SumChannels(s.batch, s.channels, s.spatial, x.data(), out.data());
    backend_->SumChannels(s.batch, s.channels, s.spatial, dx.get(), dout.get());
    EXPECT_TRUE(Near(out, dout.ToHost(), 1e-5f, 1e-4f));
  }
}

// Whole convolutions (the Backend defaults, or a backend's own), forward and backward, with and
// without bias and input gradient, 1×1 kernels included (no Im2Col on the default path).
TEST_P(BackendParityTest, Conv2d) {
  const Conv2dShape shapes[] = {
      {.batch = 1, .channels = 1, .height = 5, .width = 5, .filters = 1, .kernel = 3},
      {.batch = 3,
       .channels = 2,
       .height = 7,
       .width = 9,
       .filters = 4,
       .kernel = 3,
       .stride = 2,
       .padding = 1},
      {.batch = 2, .channels = 3, .height = 8, .width = 6, .filters = 5, .kernel = 1},
      {.batch = 4,
       .channels = 1,
       .height = 28,
       .width = 28,
       .filters = 8,
       .kernel = 5,
       .padding = 2},
      {.batch = 2,
       .channels = 6,
       .height = 11,
       .width = 10,
       .filters = 3,
       .kernel = 2,
       .stride = 3},
      {.batch = 2,
       .channels = 4,
       .height = 6,
       .width = 6,
       .filters = 2,
       .kernel = 1,
       .stride = 2,
       .padding = 1},
      // Columns over 2^25 floats: the CUDA backend takes the batch in two chunks (56 + 4).
      {.batch = 60,
       .channels = 64,
       .height = 32,
       .width = 32,
       .filters = 4,
       .kernel = 3,
       .padding = 1},
  };
  for (const Conv2dShape& s : shapes) {
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "batch=" << s.batch << " c=" << s.channels << " h=" << s.height
                   << " w=" << s.width << " f=" << s.filters << " k=" << s.kernel
                   << " s=" << s.stride << " p=" << s.padding << " bias=" << with_bias);
      const int64_t patch = s.channels * s.kernel * s.kernel;
      const int64_t y_size = s.batch * s.filters * s.out_h() * s.out_w();
      const float tol = 1e-5f * static_cast<float>(patch);
      const std::vector<float> x = Random(s.batch * s.channels * s.height * s.width),
                               w = Random(s.filters * patch), bias = Random(s.filters);
      std::vector<float> y(y_size, kNaN);
      std::vector<float> cpu_ws(std::max<int64_t>(cpu_.Conv2dWorkspaceFloats(s), 1));
      DeviceArray<float> dx = Up(x), dw = Up(w), dbias = Up(bias), dy = Up(y);
      DeviceArray<float> dev_ws =
          Up(std::vector<float>(std::max<int64_t>(backend_->Conv2dWorkspaceFloats(s), 1)));
      cpu_.Conv2dForward(s, x.data(), w.data(), with_bias ? bias.data() : nullptr, y.data(),
                         cpu_ws.data());
      backend_->Conv2dForward(s, dx.get(), dw.get(), with_bias ? dbias.get() : nullptr, dy.get(),
                              dev_ws.get());
      EXPECT_TRUE(Near(y, dy.ToHost(), 1e-4f, tol)) << "y";

      const std::vector<float> g = Random(y_size);
      DeviceArray<float> dg = Up(g);
      for (bool input_grad : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "dx=" << input_grad);
        std::vector<float> gw(w.size(), kNaN), gb(bias.size(), kNaN), gx(x.size(), kNaN);
        DeviceArray<float> dgw = Up(gw), dgb = Up(gb), dgx = Up(gx);
        cpu_.Conv2dBackward(s, x.data(), w.data(), g.data(), gw.data(),
                            with_bias ? gb.data() : nullptr, input_grad ? gx.data() : nullptr,
                            cpu_ws.data());
        backend_->Conv2dBackward(s, dx.get(), dw.get(), dg.get(), dgw.get(),
                                 with_bias ? dgb.get() : nullptr, input_grad ? dgx.get() : nullptr,
                                 dev_ws.get());
        const float sum_tol = 1e-5f * static_cast<float>(s.batch * s.out_h() * s.out_w());
        EXPECT_TRUE(Near(gw, dgw.ToHost(), 1e-4f, sum_tol)) << "dw";
        EXPECT_TRUE(Near(gb, dgb.ToHost(), 1e-4f, sum_tol)) << "dbias";
        EXPECT_TRUE(Near(gx, dgx.ToHost(), 1e-4f, tol)) << "dx";
      }
    }
  }
}

struct PoolConfig {
  int64_t planes, height, width, size, stride;
};
constexpr PoolConfig kPoolConfigs[] = {{1, 4, 4, 2, 2}, {3, 7, 9, 3, 2}, {2, 6, 6, 2, 1},
                                       {5, 5, 8, 3, 3}, {1, 1, 1, 1, 1}, {8, 28, 28, 2, 2},
                                       {2, 9, 5, 4, 1}};

TEST_P(BackendParityTest, MaxPool) {
  for (const PoolConfig& c : kPoolConfigs) {
    for (bool nan : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "planes=" << c.planes << " h=" << c.height << " w=" << c.width
                   << " size=" << c.size << " stride=" << c.stride << " nan=" << nan);
      const int64_t out_h = (c.height - c.size) / c.stride + 1;
      const int64_t out_w = (c.width - c.size) / c.stride + 1;
      const int64_t out = c.planes * out_h * out_w;
      // Few distinct values: ties everywhere, so the first-maximum rule shows.
      std::vector<float> x = Quantized(c.planes * c.height * c.width, 3);
      if (nan) {
        for (int64_t i = 0; i < static_cast<int64_t>(x.size()); i += 5) x[i] = kNaN;
      }
      std::vector<float> y(out, -1.0f);
      std::vector<int32_t> argmax(out, -1);
      DeviceArray<float> dx = Up(x), dy = Up(y);
      DeviceArray<int32_t> dargmax = Up(argmax);
      cpu_.MaxPool2dForward(c.planes, c.height, c.width, c.size, c.stride, x.data(), y.data(),
                            argmax.data());
      backend_->MaxPool2dForward(c.planes, c.height, c.width, c.size, c.stride, dx.get(), dy.get(),
                                 dargmax.get());
      EXPECT_TRUE(Near(y, dy.ToHost(), 0, 0));
      EXPECT_EQ(argmax, dargmax.ToHost());

      // Backward from the CPU's arg-max on both.
      DeviceArray<int32_t> dargmax_ref = Up(argmax);
      const std::vector<float> g = Random(out);
      std::vector<float> dimg(x.size(), kNaN);
      DeviceArray<float> dg = Up(g), ddimg = Up(dimg);
      cpu_.MaxPool2dBackward(c.planes, c.height, c.width, c.size, c.stride, argmax.data(), g.data(),
                             dimg.data());
      backend_->MaxPool2dBackward(c.planes, c.height, c.width, c.size, c.stride, dargmax_ref.get(),
                                  dg.get(), ddimg.get());
      EXPECT_TRUE(Near(dimg, ddimg.ToHost(), 1e-6f, 1e-7f));
    }
  }
}

TEST_P(BackendParityTest, AvgPool) {
  for (const PoolConfig& c : kPoolConfigs) {
    SCOPED_TRACE(::testing::Message() << "planes=" << c.planes << " h=" << c.height << " w="
                                      << c.width << " size=" << c.size << " stride=" << c.stride);
    const int64_t out_h = (c.height - c.size) / c.stride + 1;
    const int64_t out_w = (c.width - c.size) / c.stride + 1;
    const int64_t out = c.planes * out_h * out_w;
    const std::vector<float> x = Random(c.planes * c.height * c.width);
    std::vector<float> y(out, kNaN);
    DeviceArray<float> dx = Up(x), dy = Up(y);
    cpu_.AvgPool2dForward(c.planes, c.height, c.width, c.size, c.stride, x.data(), y.data());
    backend_->AvgPool2dForward(c.planes, c.height, c.width, c.size, c.stride, dx.get(), dy.get());
    EXPECT_TRUE(Near(y, dy.ToHost(), 1e-6f, 1e-7f));

    const std::vector<float> g = Random(out);
    std::vector<float> dimg(x.size(), kNaN);
    DeviceArray<float> dg = Up(g), ddimg = Up(dimg);
    cpu_.AvgPool2dBackward(c.planes, c.height, c.width, c.size, c.stride, g.data(), dimg.data());
    backend_->AvgPool2dBackward(c.planes, c.height, c.width, c.size, c.stride, dg.get(),
                                ddimg.get());
    EXPECT_TRUE(Near(dimg, ddimg.ToHost(), 1e-6f, 1e-7f));
  }
}

TEST_P(BackendParityTest, Dropout) {
  for (int64_t n : {1, 1000, 4097}) {
    for (float rate : {0.0f, 0.3f, 0.9f}) {
      for (uint64_t seed : {uint64_t{0}, uint64_t{42}, (uint64_t{1} << 63) + 5}) {
        SCOPED_TRACE(::testing::Message() << "n=" << n << " rate=" << rate << " seed=" << seed);
        const std::vector<float> x = Random(n);
        std::vector<float> mask(n, kNaN), y(n, kNaN);
        DeviceArray<float> dx = Up(x), dmask = Up(mask), dy = Up(y);
        cpu_.DropoutForward(n, rate, seed, x.data(), mask.data(), y.data());
        backend_->DropoutForward(n, rate, seed, dx.get(), dmask.get(), dy.get());
        EXPECT_TRUE(Near(mask, dmask.ToHost(), 0, 0));  // the same draw, exactly
        EXPECT_TRUE(Near(y, dy.ToHost(), 1e-6f, 0));

        const std::vector<float> g = Random(n);
        std::vector<float> dxg(n, kNaN);
        DeviceArray<float> dg = Up(g), ddxg = Up(dxg);
        DeviceArray<float> dmask_ref = Up(mask);
        cpu_.DropoutBackward(n, mask.data(), g.data(), dxg.data());
        backend_->DropoutBackward(n, dmask_ref.get(), dg.get(), ddxg.get());
        EXPECT_TRUE(Near(dxg, ddxg.ToHost(), 1e-6f, 0));
      }
    }
  }
}

// ---- Recurrent cells and embeddings -------------------------------------------------------

TEST_P(BackendParityTest, LstmCell) {
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {3, 7}, {16, 64}};
  for (const auto& [batch, hidden] : shapes) {
    const int64_t n = batch * hidden;
    for (bool prev : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "batch=" << batch << " hidden=" << hidden << " c_prev=" << prev);
      const std::vector<float> pre = Random(4 * n, -3.0f, 3.0f), c_prev = Random(n);
      std::vector<float> gates = pre, c(n, kNaN), tanh_c(n, kNaN), h(n, kNaN);
      DeviceArray<float> dgates = Up(gates), dc_prev = Up(c_prev), dc = Up(c), dtanh_c = Up(tanh_c),
                         dh = Up(h);
      cpu_.LstmCellForward(batch, hidden, gates.data(), prev ? c_prev.data() : nullptr, c.data(),
                           tanh_c.data(), h.data());
      backend_->LstmCellForward(batch, hidden, dgates.get(), prev ? dc_prev.get() : nullptr,
                                dc.get(), dtanh_c.get(), dh.get());
      EXPECT_TRUE(Near(gates, dgates.ToHost())) << "gates";
      EXPECT_TRUE(Near(c, dc.ToHost())) << "c";
      EXPECT_TRUE(Near(tanh_c, dtanh_c.ToHost())) << "tanh_c";
      EXPECT_TRUE(Near(h, dh.ToHost())) << "h";

      // Backward from the CPU's forward results, every optional pointer present or null.
      DeviceArray<float> dgates_ref = Up(gates), dtanh_ref = Up(tanh_c);
      const std::vector<float> grad_h = Random(n), dc_next = Random(n);
      DeviceArray<float> dgrad_h = Up(grad_h), ddc_next = Up(dc_next);
      for (bool next : {false, true}) {
        for (bool out_prev : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "dc_next=" << next << " dc_prev=" << out_prev);
          std::vector<float> dg(4 * n, kNaN), dcp(n, kNaN);
          DeviceArray<float> ddg = Up(dg), ddcp = Up(dcp);
          cpu_.LstmCellBackward(batch, hidden, gates.data(), prev ? c_prev.data() : nullptr,
                                tanh_c.data(), grad_h.data(), next ? dc_next.data() : nullptr,
                                dg.data(), out_prev ? dcp.data() : nullptr);
          backend_->LstmCellBackward(batch, hidden, dgates_ref.get(),
                                     prev ? dc_prev.get() : nullptr, dtanh_ref.get(), dgrad_h.get(),
                                     next ? ddc_next.get() : nullptr, ddg.get(),
                                     out_prev ? ddcp.get() : nullptr);
          EXPECT_TRUE(Near(dg, ddg.ToHost(), 1e-5f, 1e-7f)) << "dgates";
          EXPECT_TRUE(Near(dcp, ddcp.ToHost(), 1e-5f, 1e-7f)) << "dc_prev";
        }
      }
    }
  }
}

TEST_P(BackendParityTest, GruCell) {
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {3, 7}, {16, 64}};
  for (const auto& [batch, hidden] : shapes) {
    const int64_t n = batch * hidden;
    for (bool prev : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "batch=" << batch << " hidden=" << hidden << " h_prev=" << prev);
      const std::vector<float> gx = Random(3 * n, -3.0f, 3.0f), gh = Random(3 * n, -3.0f, 3.0f),
                               h_prev = Random(n);
      std::vector<float> gates = gx, h(n, kNaN);
      DeviceArray<float> dgates = Up(gates), dgh = Up(gh), dh_prev = Up(h_prev), dh = Up(h);
      cpu_.GruCellForward(batch, hidden, gates.data(), gh.data(), prev ? h_prev.data() : nullptr,
                          h.data());
      backend_->GruCellForward(batch, hidden, dgates.get(), dgh.get(),
                               prev ? dh_prev.get() : nullptr, dh.get());
      EXPECT_TRUE(Near(gates, dgates.ToHost())) << "gates";
      EXPECT_TRUE(Near(h, dh.ToHost())) << "h";

      DeviceArray<float> dgates_ref = Up(gates);
      const std::vector<float> grad_h = Random(n);
      DeviceArray<float> dgrad_h = Up(grad_h);
      for (bool out_prev : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "dh_prev=" << out_prev);
        // dh_prev is added to (when h_prev is given), so it starts with values.
        std::vector<float> dgx(3 * n, kNaN), dghh(3 * n, kNaN), dhp = Random(n);
        DeviceArray<float> ddgx = Up(dgx), ddgh = Up(dghh), ddhp = Up(dhp);
        cpu_.GruCellBackward(batch, hidden, gates.data(), gh.data(), prev ? h_prev.data() : nullptr,
                             grad_h.data(), dgx.data(), dghh.data(),
                             out_prev ? dhp.data() : nullptr);
        backend_->GruCellBackward(batch, hidden, dgates_ref.get(), dgh.get(),
                                  prev ? dh_prev.get() : nullptr, dgrad_h.get(), ddgx.get(),
                                  ddgh.get(), out_prev ? ddhp.get() : nullptr);
        EXPECT_TRUE(Near(dgx, ddgx.ToHost(), 1e-5f, 1e-7f)) << "dgx";
        EXPECT_TRUE(Near(dghh, ddgh.ToHost(), 1e-5f, 1e-7f)) << "dgh";
        EXPECT_TRUE(Near(dhp, ddhp.ToHost(), 1e-5f, 1e-7f)) << "dh_prev";
      }
    }
  }
}

TEST_P(BackendParityTest, Embedding) {
  struct Shape {
    int64_t n, vocab, dim;
  };
  for (const Shape& s : {Shape{1, 1, 1}, Shape{20, 7, 5}, Shape{300, 50, 33}, Shape{1000, 3, 130},
                         Shape{500, 3000, 4}, Shape{129, 2, 1}}) {
    for (bool invalid : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "n=" << s.n << " vocab=" << s.vocab << " dim=" << s.dim
                                        << " invalid=" << invalid);
      std::vector<float> ids(s.n);
      for (float& id : ids) id = static_cast<float>(Below(static_cast<int>(s.vocab)));
      if (invalid) {
        const float bad[] = {kNaN, -1.0f, static_cast<float>(s.vocab), 0.5f, 1e20f, kInf, -kInf};
        for (size_t i = 0; i < std::size(bad); ++i) {
          ids[(s.n / 2 + i * 13) % s.n] = bad[i];
        }
        ids[0] = -0.0f;  // a valid 0
      }
      const std::vector<float> weight = Random(s.vocab * s.dim);
      std::vector<float> y(s.n * s.dim, kNaN);
      DeviceArray<float> dids = Up(ids), dweight = Up(weight), dy = Up(y);
      const int64_t first =
          cpu_.EmbeddingForward(s.n, s.vocab, s.dim, ids.data(), weight.data(), y.data());
      const int64_t dev_first =
          backend_->EmbeddingForward(s.n, s.vocab, s.dim, dids.get(), dweight.get(), dy.get());
      EXPECT_EQ(first, dev_first);
      if (!invalid) {
        EXPECT_EQ(first, -1);
      }
      EXPECT_TRUE(Near(y, dy.ToHost(), 0, 0));

      const std::vector<float> g = Random(s.n * s.dim);
      std::vector<float> dw(s.vocab * s.dim, kNaN);  // overwritten
      DeviceArray<float> dg = Up(g), ddw = Up(dw);
      cpu_.EmbeddingBackward(s.n, s.vocab, s.dim, ids.data(), g.data(), dw.data());
      backend_->EmbeddingBackward(s.n, s.vocab, s.dim, dids.get(), dg.get(), ddw.get());
      EXPECT_TRUE(Near(dw, ddw.ToHost(), 1e-5f, 1e-6f));
    }
  }
}

std::string ParamName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendParityTest, ::testing::ValuesIn(AvailableBackends()),
                         ParamName);

// Reports skipped, with the reason, when this build has a backend besides the CPU that cannot
// be created here: the parity tests above then skip too, and did not check it.
TEST(BackendParity, EveryBuiltBackendIsCreatable) {
  std::vector<std::string> missing;
  for (const std::string& name : AvailableBackends()) {
    if (name == "cpu") continue;
    absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(name);
    if (!backend.ok()) missing.push_back(std::string(backend.status().message()));
  }
  if (!missing.empty()) {
    std::string why;
    for (const std::string& m : missing) why += (why.empty() ? "" : "; ") + m;
    GTEST_SKIP() << "not checked against the CPU here: " << why;
  }
}

// ---- On the CPU alone ---------------------------------------------------------------------

TEST(CpuBackendMemory, AllocatesAlignedHostMemoryAndCopies) {
  CpuBackend cpu;
  EXPECT_TRUE(cpu.is_host());
  EXPECT_EQ(cpu.AllocateBytes(0), nullptr);
  cpu.Free(nullptr);
  for (size_t bytes : {size_t{1}, size_t{63}, size_t{64}, size_t{65}, size_t{4096 + 4}}) {
    void* p = cpu.AllocateBytes(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << bytes;
    std::memset(p, 0xab, bytes);  // all of it is writable
    cpu.Free(p);
  }
  float* f = cpu.AllocateFloats(33);
  ASSERT_NE(f, nullptr);
  std::vector<float> in(33), out(33, 0.0f);
  for (int i = 0; i < 33; ++i) in[i] = 0.5f * static_cast<float>(i) - 3.0f;
  cpu.CopyToDevice(f, in.data(), in.size() * sizeof(float));
  EXPECT_EQ(f[5], in[5]);  // host memory: readable in place
  cpu.Synchronize();
  cpu.CopyToHost(out.data(), f, out.size() * sizeof(float));
  EXPECT_EQ(in, out);
  cpu.CopyToHost(out.data(), f, 0);  // no bytes: nothing, even from null
  cpu.CopyToDevice(nullptr, in.data(), 0);
  cpu.Free(f);
}

TEST(BackendRegistry, Names) {
  ASSERT_TRUE(CreateBackend("cpu").ok());
  EXPECT_EQ((*CreateBackend("cpu"))->name(), "cpu");
  const std::vector<std::string> available = AvailableBackends();
  ASSERT_FALSE(available.empty());
  EXPECT_EQ(available[0], "cpu");

  for (const char* name : {"cuda:x", "cuda:", "cuda:-1", "cuda:1x", "cuda: 0", "cudax", "cuda0"}) {
    absl::StatusOr<std::unique_ptr<Backend>> b = CreateBackend(name);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << name << ": " << b.status();
  }
  for (const char* name : {"gpu", "", "CPU", "tpu"}) {
    absl::StatusOr<std::unique_ptr<Backend>> b = CreateBackend(name);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << name << ": " << b.status();
    EXPECT_THAT(std::string(b.status().message()), ::testing::HasSubstr("unknown backend"));
  }

  const bool cuda_built = std::find(available.begin(), available.end(), "cuda") != available.end();
  absl::StatusOr<std::unique_ptr<Backend>> cuda = CreateBackend("cuda");
  std::string fallback = "stale";
  absl::StatusOr<std::unique_ptr<Backend>> automatic = CreateBackend("auto", &fallback);
  ASSERT_TRUE(automatic.ok()) << automatic.status();  // auto always gives a backend
  if (cuda.ok()) {
    EXPECT_EQ((*cuda)->name(), "cuda:0");
    EXPECT_FALSE((*cuda)->is_host());
    EXPECT_EQ((*automatic)->name(), "cuda:0");
    EXPECT_EQ(fallback, "");
  } else {
    // Built without CUDA, or no usable device: UNAVAILABLE naming the problem, and auto falls
    // back to the CPU with that message.
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kUnavailable) << cuda.status();
    const std::string message(cuda.status().message());
    if (cuda_built) {
      EXPECT_THAT(message, ::testing::HasSubstr("cuda"));
      std::printf("cuda unavailable here: %s\n", message.c_str());
    } else {
      EXPECT_THAT(message, ::testing::HasSubstr("this build has no CUDA backend"));
    }
    EXPECT_EQ((*automatic)->name(), "cpu");
    EXPECT_EQ(fallback, message);
  }
  // A device number past the last: UNAVAILABLE either way.
  EXPECT_EQ(CreateBackend("cuda:999").status().code(), absl::StatusCode::kUnavailable);
}

// Without a usable device (a build machine), "cuda" says that no CUDA device is usable.
TEST(BackendRegistry, CudaWithoutDeviceNamesTheProblem) {
  const std::vector<std::string> available = AvailableBackends();
  if (std::find(available.begin(), available.end(), "cuda") == available.end()) {
    GTEST_SKIP() << "this build has no CUDA backend";
  }
  absl::StatusOr<std::unique_ptr<Backend>> cuda = CreateBackend("cuda");
  if (cuda.ok()) GTEST_SKIP() << "a CUDA device is usable here";
  EXPECT_EQ(cuda.status().code(), absl::StatusCode::kUnavailable);
  const std::string message(cuda.status().message());
  // No device at all, or a device this build has no kernels for.
  EXPECT_THAT(message, ::testing::AnyOf(::testing::HasSubstr("no CUDA device is usable"),
                                        ::testing::HasSubstr("no kernels for the device")));
}

}  // namespace
}  // namespace psgrid
