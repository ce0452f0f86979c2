// FakeDeviceBackend: a test backend that behaves like a GPU's without one. It computes with a
// CpuBackend (the same maths, so results are bit-identical to the CPU's) but reports
// is_host() == false, so that models, optimizers and workers keep their tensors in its "device"
// memory and copy across as they must for CUDA. It allocates that memory itself and keeps a
// registry of the allocations, and checks in every operation that each pointer argument, with
// the extent the operation reads or writes, lies inside one of them; CopyToDevice and
// CopyToHost must get a device range on one side and host memory on the other. A violation is
// a test failure (ADD_FAILURE) naming the operation and the argument, counted in violations().
//
// Fresh allocations are filled with NaN, so that reading memory nobody wrote shows up in the
// results. CopyToHostAsync lands late, as a GPU's may: its destination holds NaN until the copy
// is waited for (WaitCopy, Synchronize) or found done (CopyDone answers false the first time it
// is asked about a copy); the source must not change meanwhile (checked when it lands).
// Allocations still live when the backend is destroyed are a failure too (tensors
// must not outlive their memory). One thread at a time, as every Backend.
#ifndef PSGRID_TESTS_FAKE_DEVICE_BACKEND_H_
#define PSGRID_TESTS_FAKE_DEVICE_BACKEND_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <string_view>

#include "core/backend/backend.h"
#include "core/backend/cpu_backend.h"
#include "gtest/gtest.h"

namespace psgrid::testing {

class FakeDeviceBackend final : public Backend {
 public:
  explicit FakeDeviceBackend(const CpuBackendOptions& options = {}) : cpu_(options) {}
  ~FakeDeviceBackend() override {
    if (!allocations_.empty()) {
      ADD_FAILURE() << "FakeDeviceBackend destroyed with " << allocations_.size()
                    << " device allocation(s) still live";
    }
    if (!pinned_.empty()) {
      ADD_FAILURE() << "FakeDeviceBackend destroyed with " << pinned_.size()
                    << " pinned host buffer(s) still live";
    }
    if (!in_flight_.empty()) {
      ADD_FAILURE() << "FakeDeviceBackend destroyed with " << in_flight_.size()
                    << " asynchronous copy(ies) never waited for";
    }
    for (auto& [p, bytes] : allocations_) std::free(const_cast<char*>(p));
    for (auto& [p, bytes] : pinned_) std::free(const_cast<char*>(p));
  }
  FakeDeviceBackend(const FakeDeviceBackend&) = delete;
  FakeDeviceBackend& operator=(const FakeDeviceBackend&) = delete;

  std::string_view name() const override { return "fake-device"; }

  // Failed checks so far, and the traffic between host and "device".
  int64_t violations() const { return violations_; }
  int64_t live_allocations() const { return static_cast<int64_t>(allocations_.size()); }
  int64_t copies_to_device() const { return copies_to_device_; }
  int64_t copies_to_host() const { return copies_to_host_; }
  int64_t copies_to_pinned_host() const { return copies_to_pinned_host_; }
  int64_t async_copies_to_host() const { return async_copies_to_host_; }  // CopyToHostAsync
  int64_t bytes_to_host() const { return bytes_to_host_; }
  // Whether [p, p + bytes) lies inside one device allocation.
  bool IsDevice(const void* p, size_t bytes) const { return Inside(allocations_, p, bytes); }

  // ---- Memory ----
  bool is_host() const override { return false; }
  void* AllocateBytes(size_t bytes) override {
    if (bytes == 0) return nullptr;
    constexpr size_t kAlign = 64;
    void* p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    std::memset(p, 0xFF, bytes);  // NaN in every float
    allocations_[static_cast<const char*>(p)] = bytes;
    return p;
  }
  void Free(void* p) override {
    if (p == nullptr) return;
    const auto it = allocations_.find(static_cast<const char*>(p));
    if (it == allocations_.end()) {
      Fail("Free", "p", p, 0, "is not a pointer AllocateBytes returned");
      return;
    }
    allocations_.erase(it);
    std::free(p);
  }
  void CopyToDevice(void* dst, const void* src, size_t bytes) override {
    Device("CopyToDevice", "dst", dst, bytes);
    Host("CopyToDevice", "src", src, bytes);
    ++copies_to_device_;
    cpu_.CopyToDevice(dst, src, bytes);
  }
  void CopyToHost(void* dst, const void* src, size_t bytes) override {
    CheckCopyToHost("CopyToHost", dst, src, bytes);
    cpu_.CopyToHost(dst, src, bytes);
  }
  void CopyOnDevice(void* dst, const void* src, size_t bytes) override {
    Device("CopyOnDevice", "dst", dst, bytes);
    Device("CopyOnDevice", "src", src, bytes);
    cpu_.CopyOnDevice(dst, src, bytes);
  }
  void FillZeros(int64_t n, float* y) override {
    Device("FillZeros", "y", y, F(n));
    cpu_.FillZeros(n, y);
  }
  void Synchronize() override { WaitCopy(next_ticket_ - 1); }
  uint64_t CopyToHostAsync(void* dst, const void* src, size_t bytes) override {
    CheckCopyToHost("CopyToHostAsync", dst, src, bytes);
    ++async_copies_to_host_;
    const auto* from = static_cast<const char*>(src);
    in_flight_.push_back({next_ticket_, dst, src, std::string(from, from + bytes), false});
    std::memset(dst, 0xFF, bytes);  // NaN until it lands
    return next_ticket_++;
  }
  bool CopyDone(uint64_t ticket) override {
    while (!in_flight_.empty() && in_flight_.front().ticket <= ticket) {
      if (!in_flight_.front().asked) {
        in_flight_.front().asked = true;
        return false;
      }
      Land();
    }
    return true;
  }
  void WaitCopy(uint64_t ticket) override {
    while (!in_flight_.empty() && in_flight_.front().ticket <= ticket) Land();
  }
  void* AllocatePinnedHost(size_t bytes) override {
    void* p = cpu_.AllocatePinnedHost(bytes);
    if (p != nullptr) pinned_[static_cast<const char*>(p)] = bytes;
    return p;
  }
  void FreePinnedHost(void* p) override {
    if (p == nullptr) return;
    if (pinned_.erase(static_cast<const char*>(p)) == 0) {
      Fail("FreePinnedHost", "p", p, 0, "is not a pointer AllocatePinnedHost returned");
      return;
    }
    cpu_.FreePinnedHost(p);
  }

  // ---- Dense, activations, losses, reductions ----
  void Gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const float* a, const float* b, float beta, float* c) override {
    Device("Gemm", "a", a, F(m * k));
    Device("Gemm", "b", b, F(k * n));
    Device("Gemm", "c", c, F(m * n));
    cpu_.Gemm(trans_a, trans_b, m, n, k, alpha, a, b, beta, c);
  }
  void BroadcastRows(int64_t rows, int64_t cols, const float* bias, float* y) override {
    Device("BroadcastRows", "bias", bias, F(cols));
    Device("BroadcastRows", "y", y, F(rows * cols));
    cpu_.BroadcastRows(rows, cols, bias, y);
  }
  void SumRows(int64_t rows, int64_t cols, const float* x, float* out) override {
    Device("SumRows", "x", x, F(rows * cols));
    Device("SumRows", "out", out, F(cols));
    cpu_.SumRows(rows, cols, x, out);
  }
  void ReluForward(int64_t n, const float* x, float* y) override {
    Unary("ReluForward", n, x, y);
    cpu_.ReluForward(n, x, y);
  }
  void ReluBackward(int64_t n, const float* y, const float* dy, float* dx) override {
    Binary("ReluBackward", n, y, dy, dx);
    cpu_.ReluBackward(n, y, dy, dx);
  }
  void SigmoidForward(int64_t n, const float* x, float* y) override {
    Unary("SigmoidForward", n, x, y);
    cpu_.SigmoidForward(n, x, y);
  }
  void SigmoidBackward(int64_t n, const float* y, const float* dy, float* dx) override {
    Binary("SigmoidBackward", n, y, dy, dx);
    cpu_.SigmoidBackward(n, y, dy, dx);
  }
  void TanhForward(int64_t n, const float* x, float* y) override {
    Unary("TanhForward", n, x, y);
    cpu_.TanhForward(n, x, y);
  }
  void TanhBackward(int64_t n, const float* y, const float* dy, float* dx) override {
    Binary("TanhBackward", n, y, dy, dx);
    cpu_.TanhBackward(n, y, dy, dx);
  }
  double SoftmaxCrossEntropy(int64_t rows, int64_t cols, const float* logits,
                             const int32_t* labels, float* dlogits, int64_t* correct) override {
    Device("SoftmaxCrossEntropy", "logits", logits, F(rows * cols));
    Device("SoftmaxCrossEntropy", "labels", labels, static_cast<size_t>(rows) * 4);
    Optional("SoftmaxCrossEntropy", "dlogits", dlogits, F(rows * cols));
    // `correct` is the host's result, not device memory.
    return cpu_.SoftmaxCrossEntropy(rows, cols, logits, labels, dlogits, correct);
  }
  double MeanSquaredError(int64_t n, const float* pred, const float* target,
                          float* dpred) override {
    Device("MeanSquaredError", "pred", pred, F(n));
    Device("MeanSquaredError", "target", target, F(n));
    Optional("MeanSquaredError", "dpred", dpred, F(n));
    return cpu_.MeanSquaredError(n, pred, target, dpred);
  }
  void Axpby(int64_t n, float alpha, const float* x, float beta, float* y) override {
    Unary("Axpby", n, x, y);
    cpu_.Axpby(n, alpha, x, beta, y);
  }
  double SquaredNorm(int64_t n, const float* x) override {
    Device("SquaredNorm", "x", x, F(n));
    return cpu_.SquaredNorm(n, x);
  }
  bool AllFinite(int64_t n, const float* x) override {
    Device("AllFinite", "x", x, F(n));
    return cpu_.AllFinite(n, x);
  }

  // ---- Optimizer kernels ----
  bool SgdUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* w) override {
    Unary("SgdUpdate", n, grad, w);
    return cpu_.SgdUpdate(n, rule, grad, w);
  }
  bool MomentumUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* buf,
                      float* w) override {
    Binary("MomentumUpdate", n, grad, buf, w);
    return cpu_.MomentumUpdate(n, rule, grad, buf, w);
  }
  bool NesterovUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* buf,
                      float* w) override {
    Binary("NesterovUpdate", n, grad, buf, w);
    return cpu_.NesterovUpdate(n, rule, grad, buf, w);
  }
  bool AdagradUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* sum,
                     float* w) override {
    Binary("AdagradUpdate", n, grad, sum, w);
    return cpu_.AdagradUpdate(n, rule, grad, sum, w);
  }
  bool RmspropUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* square_avg,
                     float* buf, float* w) override {
    Binary("RmspropUpdate", n, grad, square_avg, w);
    Optional("RmspropUpdate", "buf", buf, F(n));
    return cpu_.RmspropUpdate(n, rule, grad, square_avg, buf, w);
  }
  bool AdamUpdate(int64_t n, const UpdateRule& rule, bool decoupled, const float* grad, float* m,
                  float* v, float* w) override {
    Binary("AdamUpdate", n, grad, m, w);
    Device("AdamUpdate", "v", v, F(n));
    return cpu_.AdamUpdate(n, rule, decoupled, grad, m, v, w);
  }

  // ---- Convolution, pooling and dropout ----
  void Im2Col(int64_t channels, int64_t height, int64_t width, int64_t kernel, int64_t stride,
              int64_t padding, const float* x, float* cols) override {
    const int64_t oh = (height + 2 * padding - kernel) / stride + 1;
    const int64_t ow = (width + 2 * padding - kernel) / stride + 1;
    Device("Im2Col", "x", x, F(channels * height * width));
    Device("Im2Col", "cols", cols, F(channels * kernel * kernel * oh * ow));
    cpu_.Im2Col(channels, height, width, kernel, stride, padding, x, cols);
  }
  void Col2Im(int64_t channels, int64_t height, int64_t width, int64_t kernel, int64_t stride,
              int64_t padding, const float* cols, float* dx) override {
    const int64_t oh = (height + 2 * padding - kernel) / stride + 1;
    const int64_t ow = (width + 2 * padding - kernel) / stride + 1;
    Device("Col2Im", "cols", cols, F(channels * kernel * kernel * oh * ow));
    Device("Col2Im", "dx", dx, F(channels * height * width));
    cpu_.Col2Im(channels, height, width, kernel, stride, padding, cols, dx);
  }
  void BroadcastChannels(int64_t batch, int64_t channels, int64_t spatial, const float* bias,
                         float* y) override {
    Device("BroadcastChannels", "bias", bias, F(channels));
    Device("BroadcastChannels", "y", y, F(batch * channels * spatial));
    cpu_.BroadcastChannels(batch, channels, spatial, bias, y);
  }
  void SumChannels(int64_t batch, int64_t channels, int64_t spatial, const float* x,
                   float* out) override {
    Device("SumChannels", "x", x, F(batch * channels * spatial));
    Device("SumChannels", "out", out, F(channels));
    cpu_.SumChannels(batch, channels, spatial, x, out);
  }
  void MaxPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size,
                        int64_t stride, const float* x, float* y, int32_t* argmax) override {
    const int64_t out = planes * PoolOut(height, size, stride) * PoolOut(width, size, stride);
    Device("MaxPool2dForward", "x", x, F(planes * height * width));
    Device("MaxPool2dForward", "y", y, F(out));
    Device("MaxPool2dForward", "argmax", argmax, static_cast<size_t>(out) * 4);
    cpu_.MaxPool2dForward(planes, height, width, size, stride, x, y, argmax);
  }
  void MaxPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                         int64_t stride, const int32_t* argmax, const float* dy,
                         float* dx) override {
    const int64_t out = planes * PoolOut(height, size, stride) * PoolOut(width, size, stride);
    Device("MaxPool2dBackward", "argmax", argmax, static_cast<size_t>(out) * 4);
    Device("MaxPool2dBackward", "dy", dy, F(out));
    Device("MaxPool2dBackward", "dx", dx, F(planes * height * width));
    cpu_.MaxPool2dBackward(planes, height, width, size, stride, argmax, dy, dx);
  }
  void AvgPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size,
                        int64_t stride, const float* x, float* y) override {
    const int64_t out = planes * PoolOut(height, size, stride) * PoolOut(width, size, stride);
    Device("AvgPool2dForward", "x", x, F(planes * height * width));
    Device("AvgPool2dForward", "y", y, F(out));
    cpu_.AvgPool2dForward(planes, height, width, size, stride, x, y);
  }
  void AvgPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                         int64_t stride, const float* dy, float* dx) override {
    const int64_t out = planes * PoolOut(height, size, stride) * PoolOut(width, size, stride);
    Device("AvgPool2dBackward", "dy", dy, F(out));
    Device("AvgPool2dBackward", "dx", dx, F(planes * height * width));
    cpu_.AvgPool2dBackward(planes, height, width, size, stride, dy, dx);
  }
  void DropoutForward(int64_t n, float rate, uint64_t seed, const float* x, float* mask,
                      float* y) override {
    Binary("DropoutForward", n, x, mask, y);
    cpu_.DropoutForward(n, rate, seed, x, mask, y);
  }
  void DropoutBackward(int64_t n, const float* mask, const float* dy, float* dx) override {
    Binary("DropoutBackward", n, mask, dy, dx);
    cpu_.DropoutBackward(n, mask, dy, dx);
  }
  // Whole convolutions: the CPU backend's own (oneDNN where built), so that the results are its.
  int64_t Conv2dWorkspaceFloats(const Conv2dShape& s) override {
    return cpu_.Conv2dWorkspaceFloats(s);
  }
  void Conv2dForward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                     float* y, float* workspace) override {
    Device("Conv2dForward", "x", x, F(s.batch * s.channels * s.height * s.width));
    Device("Conv2dForward", "w", w, F(s.filters * s.channels * s.kernel * s.kernel));
    Optional("Conv2dForward", "bias", bias, F(s.filters));
    Device("Conv2dForward", "y", y, F(s.batch * s.filters * s.out_h() * s.out_w()));
    Device("Conv2dForward", "workspace", workspace, F(cpu_.Conv2dWorkspaceFloats(s)));
    cpu_.Conv2dForward(s, x, w, bias, y, workspace);
  }
  void Conv2dBackward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                      float* dw, float* dbias, float* dx, float* workspace) override {
    Device("Conv2dBackward", "x", x, F(s.batch * s.channels * s.height * s.width));
    Device("Conv2dBackward", "w", w, F(s.filters * s.channels * s.kernel * s.kernel));
    Device("Conv2dBackward", "dy", dy, F(s.batch * s.filters * s.out_h() * s.out_w()));
    Device("Conv2dBackward", "dw", dw, F(s.filters * s.channels * s.kernel * s.kernel));
    Optional("Conv2dBackward", "dbias", dbias, F(s.filters));
    Optional("Conv2dBackward", "dx", dx, F(s.batch * s.channels * s.height * s.width));
    Device("Conv2dBackward", "workspace", workspace, F(cpu_.Conv2dWorkspaceFloats(s)));
    cpu_.Conv2dBackward(s, x, w, dy, dw, dbias, dx, workspace);
  }

  // ---- Recurrent cells and embeddings ----
  void SwapLeadingDims(int64_t d0, int64_t d1, int64_t inner, const float* src,
                       float* dst) override {
    Unary("SwapLeadingDims", d0 * d1 * inner, src, dst);
    cpu_.SwapLeadingDims(d0, d1, inner, src, dst);
  }
  void LstmCellForward(int64_t batch, int64_t hidden, float* gates, const float* c_prev, float* c,
                       float* tanh_c, float* h) override {
    const int64_t bh = batch * hidden;
    Device("LstmCellForward", "gates", gates, F(4 * bh));
    Optional("LstmCellForward", "c_prev", c_prev, F(bh));
    Device("LstmCellForward", "c", c, F(bh));
    Device("LstmCellForward", "tanh_c", tanh_c, F(bh));
    Device("LstmCellForward", "h", h, F(bh));
    cpu_.LstmCellForward(batch, hidden, gates, c_prev, c, tanh_c, h);
  }
  void LstmCellBackward(int64_t batch, int64_t hidden, const float* gates, const float* c_prev,
                        const float* tanh_c, const float* dh, const float* dc_next,
                        float* dgates, float* dc_prev) override {
    const int64_t bh = batch * hidden;
    Device("LstmCellBackward", "gates", gates, F(4 * bh));
    Optional("LstmCellBackward", "c_prev", c_prev, F(bh));
    Device("LstmCellBackward", "tanh_c", tanh_c, F(bh));
    Device("LstmCellBackward", "dh", dh, F(bh));
    Optional("LstmCellBackward", "dc_next", dc_next, F(bh));
    Device("LstmCellBackward", "dgates", dgates, F(4 * bh));
    Optional("LstmCellBackward", "dc_prev", dc_prev, F(bh));
    cpu_.LstmCellBackward(batch, hidden, gates, c_prev, tanh_c, dh, dc_next, dgates, dc_prev);
  }
  void GruCellForward(int64_t batch, int64_t hidden, float* gates, const float* hproj,
                      const float* h_prev, float* h) override {
    const int64_t bh = batch * hidden;
    Device("GruCellForward", "gates", gates, F(3 * bh));
    Device("GruCellForward", "hproj", hproj, F(3 * bh));
    Optional("GruCellForward", "h_prev", h_prev, F(bh));
    Device("GruCellForward", "h", h, F(bh));
    cpu_.GruCellForward(batch, hidden, gates, hproj, h_prev, h);
  }
  void GruCellBackward(int64_t batch, int64_t hidden, const float* gates, const float* hproj,
                       const float* h_prev, const float* dh, float* dgx, float* dgh,
                       float* dh_prev) override {
    const int64_t bh = batch * hidden;
    Device("GruCellBackward", "gates", gates, F(3 * bh));
    Device("GruCellBackward", "hproj", hproj, F(3 * bh));
    Optional("GruCellBackward", "h_prev", h_prev, F(bh));
    Device("GruCellBackward", "dh", dh, F(bh));
    Device("GruCellBackward", "dgx", dgx, F(3 * bh));
    Device("GruCellBackward", "dgh", dgh, F(3 * bh));
    Optional("GruCellBackward", "dh_prev", dh_prev, F(bh));
    cpu_.GruCellBackward(batch, hidden, gates, hproj, h_prev, dh, dgx, dgh, dh_prev);
  }
  int64_t EmbeddingForward(int64_t n, int64_t vocab, int64_t dim, const float* ids,
                           const float* weight, float* y) override {
    Device("EmbeddingForward", "ids", ids, F(n));
    Device("EmbeddingForward", "weight", weight, F(vocab * dim));
    Device("EmbeddingForward", "y", y, F(n * dim));
    return cpu_.EmbeddingForward(n, vocab, dim, ids, weight, y);
  }
  void EmbeddingBackward(int64_t n, int64_t vocab, int64_t dim, const float* ids, const float* dy,
                         float* dweight) override {
    Device("EmbeddingBackward", "ids", ids, F(n));
    Device("EmbeddingBackward", "dy", dy, F(n * dim));
    Device("EmbeddingBackward", "dweight", dweight, F(vocab * dim));
    cpu_.EmbeddingBackward(n, vocab, dim, ids, dy, dweight);
  }

 private:
  using Ranges = std::map<const char*, size_t>;  // start → bytes

  static size_t F(int64_t floats) { return static_cast<size_t>(floats) * sizeof(float); }
  static int64_t PoolOut(int64_t extent, int64_t size, int64_t stride) {
    return (extent - size) / stride + 1;
  }
  // Whether [p, p + bytes) lies inside one of `ranges` (an empty range may sit at the end).
  static bool Inside(const Ranges& ranges, const void* p, size_t bytes) {
    const char* begin = static_cast<const char*>(p);
    auto it = ranges.upper_bound(begin);
    if (it == ranges.begin()) return false;
    --it;
    return begin >= it->first && begin + bytes <= it->first + it->second;
  }

  void Fail(const char* op, const char* arg, const void* p, size_t bytes, const char* what) {
    ++violations_;
    ADD_FAILURE() << "FakeDeviceBackend::" << op << ": argument " << arg << " (" << p << ", "
                  << bytes << " bytes) " << what;
  }
  // A device range the operation uses: inside one allocation (a null pointer only when empty).
  void Device(const char* op, const char* arg, const void* p, size_t bytes) {
    if (p == nullptr && bytes == 0) return;
    if (p == nullptr) {
      Fail(op, arg, p, bytes, "is null");
    } else if (!Inside(allocations_, p, bytes)) {
      Fail(op, arg, p, bytes, "is not inside one device allocation (host memory?)");
    }
  }
  // The same for an argument that may be null.
  void Optional(const char* op, const char* arg, const void* p, size_t bytes) {
    if (p != nullptr) Device(op, arg, p, bytes);
  }
  // Host memory: no part of it in a device allocation.
  void Host(const char* op, const char* arg, const void* p, size_t bytes) {
    if (bytes == 0) return;
    if (p == nullptr) {
      Fail(op, arg, p, bytes, "is null");
      return;
    }
    const char* begin = static_cast<const char*>(p);
    auto it = allocations_.upper_bound(begin + bytes - 1);
    if (it != allocations_.begin()) {
      --it;
      if (it->first + it->second > begin) Fail(op, arg, p, bytes, "is device memory, not host");
    }
  }
  void Unary(const char* op, int64_t n, const float* x, const float* y) {
    Device(op, "x", x, F(n));
    Device(op, "y", y, F(n));
  }
  void Binary(const char* op, int64_t n, const float* a, const float* b, const float* c) {
    Device(op, "first", a, F(n));
    Device(op, "second", b, F(n));
    Device(op, "third", c, F(n));
  }

  struct InFlight {
    uint64_t ticket;
    void* dst;
    const void* src;
    std::string data;  // src when the copy was queued
    bool asked;        // CopyDone has answered false for it once
  };
  // The checks and the counts of a copy to the host.
  void CheckCopyToHost(const char* op, void* dst, const void* src, size_t bytes) {
    Host(op, "dst", dst, bytes);
    Device(op, "src", src, bytes);
    ++copies_to_host_;
    if (Inside(pinned_, dst, bytes)) ++copies_to_pinned_host_;
    bytes_to_host_ += static_cast<int64_t>(bytes);
  }
  void Land() {
    const InFlight& c = in_flight_.front();
    if (Inside(allocations_, c.src, c.data.size()) &&
        std::memcmp(c.src, c.data.data(), c.data.size()) != 0) {
      Fail("CopyToHostAsync", "src", c.src, c.data.size(), "changed before the copy landed");
    }
    std::memcpy(c.dst, c.data.data(), c.data.size());
    in_flight_.pop_front();
  }

  CpuBackend cpu_;
  Ranges allocations_;
  Ranges pinned_;
  int64_t violations_ = 0;
  int64_t copies_to_device_ = 0;
  int64_t copies_to_host_ = 0;
  int64_t copies_to_pinned_host_ = 0;
  int64_t async_copies_to_host_ = 0;
  int64_t bytes_to_host_ = 0;
  std::deque<InFlight> in_flight_;
  uint64_t next_ticket_ = 1;
};

}  // namespace psgrid::testing

#endif  // PSGRID_TESTS_FAKE_DEVICE_BACKEND_H_
