// CpuBackend: the Backend on the host, with OpenBLAS for the matrix products and plain loops
// (auto-vectorised; the optimizer loops also in an AVX2 copy on x86-64, and with SSE2
// intrinsics where a square root stops g++) for the element-wise operations, and oneDNN for
// whole convolutions where the build has it. Thread-safe: several jobs of a server may share
// one (the only state, oneDNN's primitives per convolution shape, is under a mutex).
#ifndef PSGRID_CORE_BACKEND_CPU_BACKEND_H_
#define PSGRID_CORE_BACKEND_CPU_BACKEND_H_

#include <memory>

#include "core/backend/backend.h"

namespace psgrid {

struct CpuBackendOptions {
  // Whole convolutions through oneDNN when this build has it (cpu_backend_dnnl.cc); off: the
  // Backend defaults (Im2Col + Gemm per sample), e.g. to compare the two.
  bool onednn_convolutions = true;
};

class DnnlConvolutions;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options = {});
  ~CpuBackend() override;
  CpuBackend(const CpuBackend&) = delete;
  CpuBackend& operator=(const CpuBackend&) = delete;

  std::string_view name() const override { return "cpu"; }
  // Whether the whole convolutions run through oneDNN.
  bool onednn_convolutions() const;

  void Gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const float* a, const float* b, float beta, float* c) override;
  void BroadcastRows(int64_t rows, int64_t cols, const float* bias, float* y) override;
  void SumRows(int64_t rows, int64_t cols, const float* x, float* out) override;
  void ReluForward(int64_t n, const float* x, float* y) override;
  void ReluBackward(int64_t n, const float* y, const float* dy, float* dx) override;
  void SigmoidForward(int64_t n, const float* x, float* y) override;
  void SigmoidBackward(int64_t n, const float* y, const float* dy, float* dx) override;
  void TanhForward(int64_t n, const float* x, float* y) override;
  void TanhBackward(int64_t n, const float* y, const float* dy, float* dx) override;
  double SoftmaxCrossEntropy(int64_t rows, int64_t cols, const float* logits,
                             const int32_t* labels, float* dlogits, int64_t* correct) override;
  double MeanSquaredError(int64_t n, const float* pred, const float* target,
                          float* dpred) override;
  void Axpby(int64_t n, float alpha, const float* x, float beta, float* y) override;
  double SquaredNorm(int64_t n, const float* x) override;
  bool AllFinite(int64_t n, const float* x) override;
  bool SgdUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* w) override;
  bool MomentumUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* buf,
                      float* w) override;
  bool NesterovUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* buf,
                      float* w) override;
  bool AdagradUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* sum,
                     float* w) override;
  bool RmspropUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* square_avg,
                     float* buf, float* w) override;
  bool AdamUpdate(int64_t n, const UpdateRule& rule, bool decoupled, const float* grad, float* m,
                  float* v, float* w) override;

  // ---- Convolution, pooling and dropout (cpu_backend_conv.cc) ----
  void Im2Col(int64_t channels, int64_t height, int64_t width, int64_t kernel, int64_t stride,
              int64_t padding, const float* x, float* cols) override;
  void Col2Im(int64_t channels, int64_t height, int64_t width, int64_t kernel, int64_t stride,
              int64_t padding, const float* cols, float* dx) override;
  void BroadcastChannels(int64_t batch, int64_t channels, int64_t spatial, const float* bias,
                         float* y) override;
  void SumChannels(int64_t batch, int64_t channels, int64_t spatial, const float* x,
                   float* out) override;
  void MaxPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size,
                        int64_t stride, const float* x, float* y, int32_t* argmax) override;
  void MaxPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                         int64_t stride, const int32_t* argmax, const float* dy,
                         float* dx) override;
  void AvgPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size,
                        int64_t stride, const float* x, float* y) override;
  void AvgPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                         int64_t stride, const float* dy, float* dx) override;
  void DropoutForward(int64_t n, float rate, uint64_t seed, const float* x, float* mask,
                      float* y) override;
  void DropoutBackward(int64_t n, const float* mask, const float* dy, float* dx) override;
  // ---- end of convolution, pooling and dropout ----
  // ---- Recurrent cells and embeddings (cpu_backend_recurrent.cc) ----
  void SwapLeadingDims(int64_t d0, int64_t d1, int64_t inner, const float* src,
                       float* dst) override;
  void FillZeros(int64_t n, float* y) override;
  void LstmCellForward(int64_t batch, int64_t hidden, float* gates, const float* c_prev, float* c,
                       float* tanh_c, float* h) override;
  void LstmCellBackward(int64_t batch, int64_t hidden, const float* gates, const float* c_prev,
                        const float* tanh_c, const float* dh, const float* dc_next,
                        float* dgates, float* dc_prev) override;
  void GruCellForward(int64_t batch, int64_t hidden, float* gates, const float* hproj,
                      const float* h_prev, float* h) override;
  void GruCellBackward(int64_t batch, int64_t hidden, const float* gates, const float* hproj,
                       const float* h_prev, const float* dh, float* dgx, float* dgh,
                       float* dh_prev) override;
  int64_t EmbeddingForward(int64_t n, int64_t vocab, int64_t dim, const float* ids,
                           const float* weight, float* y) override;
  void EmbeddingBackward(int64_t n, int64_t vocab, int64_t dim, const float* ids, const float* dy,
                         float* dweight) override;
  // ---- end of recurrent cells and embeddings ----
  // ---- Whole convolutions (cpu_backend_dnnl.cc) ----
  int64_t Conv2dWorkspaceFloats(const Conv2dShape& s) override;
  void Conv2dForward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                     float* y, float* workspace) override;
  void Conv2dBackward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                      float* dw, float* dbias, float* dx, float* workspace) override;
  // ---- Memory (cpu_backend.cc): host memory, 64-byte aligned; the copies are memcpy ----
  bool is_host() const override { return true; }
  void* AllocateBytes(size_t bytes) override;
  void Free(void* p) override;
  void CopyToDevice(void* dst, const void* src, size_t bytes) override;
  void CopyToHost(void* dst, const void* src, size_t bytes) override;
  void CopyOnDevice(void* dst, const void* src, size_t bytes) override;
  void Synchronize() override {}
  // ---- end of memory ----

 private:
  std::unique_ptr<DnnlConvolutions> dnnl_;  // null: the Backend defaults
};

// Threads of the OpenBLAS pool (process-wide in OpenBLAS itself); n <= 0 leaves it as is.
// Returns the number in effect.
int SetBlasThreads(int n);

}  // namespace psgrid

#endif  // PSGRID_CORE_BACKEND_CPU_BACKEND_H_
