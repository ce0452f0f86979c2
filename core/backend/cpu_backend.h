// CpuBackend: the Backend on the host, with OpenBLAS for the matrix products and plain loops
// (auto-vectorised; the optimizer loops also in an AVX2 copy on x86-64, and with SSE2
// intrinsics where a square root stops g++) for the element-wise operations. Stateless, so
// thread-safe: several jobs of a server may share one.
#ifndef PSGRID_CORE_BACKEND_CPU_BACKEND_H_
#define PSGRID_CORE_BACKEND_CPU_BACKEND_H_

#include "core/backend/backend.h"

namespace psgrid {

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }

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
};

// Threads of the OpenBLAS pool (process-wide in OpenBLAS itself); n <= 0 leaves it as is.
// Returns the number in effect.
int SetBlasThreads(int n);

}  // namespace psgrid

#endif  // PSGRID_CORE_BACKEND_CPU_BACKEND_H_
