// CudaBackend: the Backend on one NVIDIA GPU, with cuBLAS for the matrix products and CUDA
// kernels for everything else, all queued on one stream of its own.
//
// Plain C++: the CUDA types appear only as pointers to their forward-declared structs, so that
// code compiled by g++ alone may include this header. Create one through CreateCudaBackend
// (cuda_device.h) or CreateBackend("cuda[:N]") (core/backend/registry.h).
//
// The results are those of CpuBackend: the same formulas with the same operation order,
// compiled without FMA contraction (--fmad=false) and with IEEE division and square root, so
// that the element-wise, convolution, pooling and optimizer kernels match it bit for bit in
// most cases; the matrix products (cuBLAS), the sums reduced in a tree and the transcendental
// functions (expf, tanhf: a couple of ulp) agree to float32 rounding.
//
// A CUDA error inside an operation (an illegal address, a lost device) aborts the process with
// a message: the interface has no way to return it. Allocation failures return null.
//
// Thread-safety: as Backend, one thread at a time; that thread need not be the creating one
// (every entry point makes the backend's device current).
#ifndef PSGRID_CORE_BACKEND_CUDA_CUDA_BACKEND_H_
#define PSGRID_CORE_BACKEND_CUDA_CUDA_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/backend/backend.h"

// The CUDA runtime's and cuBLAS's handle types (cudaStream_t, cudaEvent_t, cublasHandle_t are
// pointers to these).
struct CUstream_st;
struct CUevent_st;
struct cublasContext;

namespace psgrid {
namespace cuda_internal {
struct CublasApi;
}  // namespace cuda_internal

class CudaBackend final : public Backend {
 public:
  // Sets up device `ordinal` (a stream, a cuBLAS handle, result buffers). On failure returns
  // null and sets *error to why.
  static std::unique_ptr<CudaBackend> Create(int ordinal, std::string* error);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string_view name() const override { return name_; }
  int device() const { return device_; }

  // cuda_backend.cc
  void Gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const float* a, const float* b, float beta, float* c) override;

  // ---- Element-wise (cuda_kernels_elementwise.cu) ----
  void BroadcastRows(int64_t rows, int64_t cols, const float* bias, float* y) override;
  void SumRows(int64_t rows, int64_t cols, const float* x, float* out) override;
  void ReluForward(int64_t n, const float* x, float* y) override;
  void ReluBackward(int64_t n, const float* y, const float* dy, float* dx) override;
  void SigmoidForward(int64_t n, const float* x, float* y) override;
  void SigmoidBackward(int64_t n, const float* y, const float* dy, float* dx) override;
  void TanhForward(int64_t n, const float* x, float* y) override;
  void TanhBackward(int64_t n, const float* y, const float* dy, float* dx) override;
  void Axpby(int64_t n, float alpha, const float* x, float beta, float* y) override;
  void FillZeros(int64_t n, float* y) override;
  void SwapLeadingDims(int64_t d0, int64_t d1, int64_t inner, const float* src,
                       float* dst) override;

  // ---- Losses and reductions (cuda_kernels_reduce.cu) ----
  double SoftmaxCrossEntropy(int64_t rows, int64_t cols, const float* logits, const int32_t* labels,
                             float* dlogits, int64_t* correct) override;
  double MeanSquaredError(int64_t n, const float* pred, const float* target, float* dpred) override;
  double SquaredNorm(int64_t n, const float* x) override;
  bool AllFinite(int64_t n, const float* x) override;

  // ---- Optimizer kernels (cuda_kernels_optim.cu) ----
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

  // ---- Whole convolutions over a batch (cuda_conv.cu) ----
  int64_t Conv2dWorkspaceFloats(const Conv2dShape& s) override;
  void Conv2dForward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                     float* y, float* workspace) override;
  void Conv2dBackward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                      float* dw, float* dbias, float* dx, float* workspace) override;

  // ---- Convolution, pooling and dropout (cuda_kernels_conv.cu) ----
  void Im2Col(int64_t channels, int64_t height, int64_t width, int64_t kernel, int64_t stride,
              int64_t padding, const float* x, float* cols) override;
  void Col2Im(int64_t channels, int64_t height, int64_t width, int64_t kernel, int64_t stride,
              int64_t padding, const float* cols, float* dx) override;
  void BroadcastChannels(int64_t batch, int64_t channels, int64_t spatial, const float* bias,
                         float* y) override;
  void SumChannels(int64_t batch, int64_t channels, int64_t spatial, const float* x,
                   float* out) override;
  void MaxPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size, int64_t stride,
                        const float* x, float* y, int32_t* argmax) override;
  void MaxPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                         int64_t stride, const int32_t* argmax, const float* dy,
                         float* dx) override;
  void AvgPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size, int64_t stride,
                        const float* x, float* y) override;
  void AvgPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                         int64_t stride, const float* dy, float* dx) override;
  void DropoutForward(int64_t n, float rate, uint64_t seed, const float* x, float* mask,
                      float* y) override;
  void DropoutBackward(int64_t n, const float* mask, const float* dy, float* dx) override;

  // ---- Recurrent cells and embeddings (cuda_kernels_recurrent.cu) ----
  void LstmCellForward(int64_t batch, int64_t hidden, float* gates, const float* c_prev, float* c,
                       float* tanh_c, float* h) override;
  void LstmCellBackward(int64_t batch, int64_t hidden, const float* gates, const float* c_prev,
                        const float* tanh_c, const float* dh, const float* dc_next, float* dgates,
                        float* dc_prev) override;
  void GruCellForward(int64_t batch, int64_t hidden, float* gates, const float* hproj,
                      const float* h_prev, float* h) override;
  void GruCellBackward(int64_t batch, int64_t hidden, const float* gates, const float* hproj,
                       const float* h_prev, const float* dh, float* dgx, float* dgh,
                       float* dh_prev) override;
  int64_t EmbeddingForward(int64_t n, int64_t vocab, int64_t dim, const float* ids,
                           const float* weight, float* y) override;
  void EmbeddingBackward(int64_t n, int64_t vocab, int64_t dim, const float* ids, const float* dy,
                         float* dweight) override;

  // ---- Memory (cuda_backend.cc) ----
  bool is_host() const override { return false; }
  void* AllocateBytes(size_t bytes) override;
  void Free(void* p) override;
  void CopyToDevice(void* dst, const void* src, size_t bytes) override;
  void CopyToHost(void* dst, const void* src, size_t bytes) override;
  void CopyOnDevice(void* dst, const void* src, size_t bytes) override;
  void Synchronize() override;
  // Page-locked host memory (cudaMallocHost). CopyToHost into it is one DMA, without the
  // staging buffers.
  void* AllocatePinnedHost(size_t bytes) override;
  void FreePinnedHost(void* p) override;
  // Into pinned memory: on a second stream (the copy engine runs beside the kernels), after an
  // event marks the compute stream's work so far; each copy's own event is its ticket's. Into
  // pageable memory: CopyToHost, after the queued copies (ticket 0).
  uint64_t CopyToHostAsync(void* dst, const void* src, size_t bytes) override;
  bool CopyDone(uint64_t ticket) override;
  void WaitCopy(uint64_t ticket) override;

  // What the reducing kernels hand back to the host: one of these lives in device memory and
  // one in pinned host memory.
  struct Result {
    double sum;
    unsigned long long count;
    unsigned long long first;  // EmbeddingForward: the first invalid position (~0: none)
    int flag;                  // AllFinite, the updates: 1 when a value was not finite
  };

 private:
  explicit CudaBackend(int ordinal);
  // The steps of Create; false with *error set on failure.
  bool Init(std::string* error);

  // Makes this backend's device current for the calling thread.
  void Activate();
  // Aborts with `what` and the error's text when the last launch failed.
  void CheckLaunch(const char* what);
  // Device scratch memory of at least `bytes`, valid until the next call (grown, never
  // shrunk; freed with the backend).
  void* Scratch(size_t bytes);
  // Sets the device Result to zeros (first: ~0), queued on the stream.
  void ClearResult();
  // Copies the device Result to the host and waits for it.
  const Result& FetchResult();
  // The pinned staging buffers of the host copies, allocated on first use. False when the
  // allocation failed (the copies then go straight from pageable memory).
  bool EnsureStaging();
  // The columns of `samples` images of convolution s, side by side (cuda_conv.cu).
  void Im2ColBatch(const Conv2dShape& s, int64_t samples, const float* x, float* cols);
  // Whether [p, p + bytes) lies in one AllocatePinnedHost buffer of this backend.
  bool IsPinned(const void* p, size_t bytes) const;
  // An event from the pool (created when it is empty), and its return there.
  CUevent_st* TakeEvent();
  void ReturnEvent(CUevent_st* event);

  const int device_;
  const std::string name_;
  CUstream_st* stream_ = nullptr;
  const cuda_internal::CublasApi* blas_ = nullptr;  // cuBLAS, loaded at run time
  cublasContext* cublas_ = nullptr;
  Result* result_device_ = nullptr;
  Result* result_host_ = nullptr;  // pinned
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  // Host copies go through two pinned buffers in turn, each with the event of the copy that
  // last used it.
  static constexpr int kStages = 2;
  static constexpr size_t kStageBytes = size_t{4} << 20;
  void* stage_[kStages] = {};
  CUevent_st* stage_done_[kStages] = {};
  int next_stage_ = 0;  // the stage a copy uses first
  // The AllocatePinnedHost buffers: start → bytes.
  std::map<const char*, size_t> pinned_;
  // CopyToHostAsync: its stream (created on first use), the copies not known to have landed
  // (ticket, event recorded after the copy) in ticket order, the tickets' counter, the highest
  // ticket known to have landed, the mark of the compute stream each copy waits for, and the
  // spare events.
  CUstream_st* copy_stream_ = nullptr;
  std::deque<std::pair<uint64_t, CUevent_st*>> copies_;
  uint64_t next_ticket_ = 1;
  uint64_t landed_ticket_ = 0;
  CUevent_st* compute_mark_ = nullptr;
  std::vector<CUevent_st*> spare_events_;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_BACKEND_CUDA_CUDA_BACKEND_H_
