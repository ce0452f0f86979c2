// CudaBackend: set-up, device memory and host copies, the matrix product (cuBLAS, loaded at run
// time: cublas_api.h), and the registry's entry points (cuda_device.h). Host code only; the
// kernels are in the .cu files.
#include "core/backend/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/backend/cuda/cublas_api.h"
#include "core/backend/cuda/cuda_check.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/check.h"

namespace psgrid {
namespace {

std::string ErrorText(cudaError_t e) {
  return absl::StrCat(cudaGetErrorString(e), " (", cudaGetErrorName(e), ")");
}

void CublasCheck(const cuda_internal::CublasApi& blas, cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    cuda_internal::CudaCallFailed(__FILE__, __LINE__, call, blas.status_string(status));
  }
}

}  // namespace

CudaBackend::CudaBackend(int ordinal) : device_(ordinal), name_(absl::StrCat("cuda:", ordinal)) {}

std::unique_ptr<CudaBackend> CudaBackend::Create(int ordinal, std::string* error) {
  std::unique_ptr<CudaBackend> backend(new CudaBackend(ordinal));
  if (!backend->Init(error)) return nullptr;
  return backend;
}

bool CudaBackend::Init(std::string* error) {
  auto failed = [&](const char* step, cudaError_t e) {
    *error = absl::StrCat(step, ": ", ErrorText(e));
    cudaGetLastError();  // clears a sticky launch error of this thread, if any
    return false;
  };
  cudaError_t e = cudaSetDevice(device_);
  if (e != cudaSuccess) return failed("cannot select the device", e);
  e = cuda_internal::ProbeKernelImage();
  if (e != cudaSuccess) {
    cudaDeviceProp prop;
    int major = 0, minor = 0;
    if (cudaGetDeviceProperties(&prop, device_) == cudaSuccess) {
      major = prop.major;
      minor = prop.minor;
    }
    *error = absl::StrCat("this build has no kernels for the device (compute capability ", major,
                          ".", minor,
                          "; rebuild with CMAKE_CUDA_ARCHITECTURES including it): ", ErrorText(e));
    cudaGetLastError();
    return false;
  }
  e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
  if (e != cudaSuccess) return failed("cannot create a stream", e);
  blas_ = cuda_internal::LoadCublas(error);
  if (blas_ == nullptr) return false;
  const cublasStatus_t status = blas_->create(&cublas_);
  if (status != CUBLAS_STATUS_SUCCESS) {
    cublas_ = nullptr;
    *error = absl::StrCat("cannot create a cuBLAS handle: ", blas_->status_string(status));
    return false;
  }
  CublasCheck(*blas_, blas_->set_stream(cublas_, stream_), "cublasSetStream");
  // Full float32 products (no TF32 tensor cores): the CPU's results.
  CublasCheck(*blas_, blas_->set_math_mode(cublas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  void* p = nullptr;
  e = cudaMalloc(&p, sizeof(Result));
  if (e != cudaSuccess) return failed("cannot allocate device memory", e);
  result_device_ = static_cast<Result*>(p);
  e = cudaMallocHost(&p, sizeof(Result));
  if (e != cudaSuccess) return failed("cannot allocate pinned host memory", e);
  result_host_ = static_cast<Result*>(p);
  return true;
}

CudaBackend::~CudaBackend() {
  // Errors are ignored here: the device may be gone, and a destructor cannot report them.
  cudaSetDevice(device_);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  for (const auto& [ticket, event] : copies_) cudaEventDestroy(event);
  for (CUevent_st* event : spare_events_) cudaEventDestroy(event);
  if (compute_mark_ != nullptr) cudaEventDestroy(compute_mark_);
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
  if (cublas_ != nullptr) blas_->destroy(cublas_);
  for (int k = 0; k < kStages; ++k) {
    if (stage_done_[k] != nullptr) cudaEventDestroy(stage_done_[k]);
    if (stage_[k] != nullptr) cudaFreeHost(stage_[k]);
  }
  for (const auto& [p, bytes] : pinned_) cudaFreeHost(const_cast<char*>(p));
  if (scratch_ != nullptr) cudaFree(scratch_);
  if (result_device_ != nullptr) cudaFree(result_device_);
  if (result_host_ != nullptr) cudaFreeHost(result_host_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  cudaGetLastError();
}

void CudaBackend::Activate() { PSGRID_CUDA_CHECK(cudaSetDevice(device_)); }

void CudaBackend::CheckLaunch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    cuda_internal::CudaCallFailed(__FILE__, __LINE__, what, ErrorText(e).c_str());
}

void* CudaBackend::Scratch(size_t bytes) {
  if (bytes <= scratch_bytes_) return scratch_;
  if (scratch_ != nullptr) PSGRID_CUDA_CHECK(cudaFree(scratch_));  // waits for its users
  scratch_ = nullptr;
  scratch_bytes_ = 0;
  const size_t grown = std::max(bytes, size_t{1} << 16);
  PSGRID_CUDA_CHECK(cudaMalloc(&scratch_, grown));
  scratch_bytes_ = grown;
  return scratch_;
}

void CudaBackend::ClearResult() {
  PSGRID_CUDA_CHECK(cudaMemsetAsync(result_device_, 0, sizeof(Result), stream_));
  PSGRID_CUDA_CHECK(
      cudaMemsetAsync(&result_device_->first, 0xff, sizeof(result_device_->first), stream_));
}

const CudaBackend::Result& CudaBackend::FetchResult() {
  PSGRID_CUDA_CHECK(cudaMemcpyAsync(result_host_, result_device_, sizeof(Result),
                                    cudaMemcpyDeviceToHost, stream_));
  PSGRID_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return *result_host_;
}

// ---- Memory -----------------------------------------------------------------------------------

void* CudaBackend::AllocateBytes(size_t bytes) {
  if (bytes == 0) return nullptr;
  Activate();
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky; clear it all the same
    return nullptr;
  }
  return p;  // cudaMalloc aligns to 256 bytes
}

void CudaBackend::Free(void* p) {
  if (p == nullptr) return;
  Activate();
  PSGRID_CUDA_CHECK(cudaFree(p));  // synchronises with the work using it
}

bool CudaBackend::EnsureStaging() {
  if (stage_[0] != nullptr) return true;
  for (int k = 0; k < kStages; ++k) {
    if (cudaMallocHost(&stage_[k], kStageBytes) != cudaSuccess ||
        cudaEventCreateWithFlags(&stage_done_[k], cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      for (int j = 0; j <= k; ++j) {
        if (stage_[j] != nullptr) cudaFreeHost(stage_[j]);
        if (stage_done_[j] != nullptr) cudaEventDestroy(stage_done_[j]);
        stage_[j] = nullptr;
        stage_done_[j] = nullptr;
      }
      return false;
    }
  }
  return true;
}

// Host to device: each chunk is copied into a pinned stage on the host, then by DMA to the
// device, queued on the stream, while the next chunk fills the other stage. A stage is refilled
// only once its last copy has finished (its event), so the caller's buffer is free on return
// and the host never waits for the kernels queued before the copy.
void CudaBackend::CopyToDevice(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  Activate();
  if (!EnsureStaging()) {
    PSGRID_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    PSGRID_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return;
  }
  auto* out = static_cast<char*>(dst);
  const auto* in = static_cast<const char*>(src);
  for (size_t offset = 0; offset < bytes; offset += kStageBytes) {
    const int k = next_stage_;
    next_stage_ = (next_stage_ + 1) % kStages;
    const size_t len = std::min(kStageBytes, bytes - offset);
    PSGRID_CUDA_CHECK(cudaEventSynchronize(stage_done_[k]));  // never recorded: returns at once
    std::memcpy(stage_[k], in + offset, len);
    PSGRID_CUDA_CHECK(
        cudaMemcpyAsync(out + offset, stage_[k], len, cudaMemcpyHostToDevice, stream_));
    PSGRID_CUDA_CHECK(cudaEventRecord(stage_done_[k], stream_));
  }
}

// Device to host: chunk c+1 is copied by DMA into one stage while the host copies chunk c out of
// the other. Into a pinned buffer of this backend's: one DMA straight there.
void CudaBackend::CopyToHost(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  Activate();
  if (IsPinned(dst, bytes) || !EnsureStaging()) {
    PSGRID_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    PSGRID_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return;
  }
  auto* out = static_cast<char*>(dst);
  const auto* in = static_cast<const char*>(src);
  const size_t chunks = (bytes + kStageBytes - 1) / kStageBytes;
  const int first = next_stage_;
  auto stage_of = [&](size_t chunk) { return static_cast<int>((first + chunk) % kStages); };
  auto issue = [&](size_t chunk) {
    const int k = stage_of(chunk);
    const size_t offset = chunk * kStageBytes;
    const size_t len = std::min(kStageBytes, bytes - offset);
    PSGRID_CUDA_CHECK(cudaEventSynchronize(stage_done_[k]));
    PSGRID_CUDA_CHECK(
        cudaMemcpyAsync(stage_[k], in + offset, len, cudaMemcpyDeviceToHost, stream_));
    PSGRID_CUDA_CHECK(cudaEventRecord(stage_done_[k], stream_));
  };
  issue(0);
  for (size_t chunk = 0; chunk < chunks; ++chunk) {
    if (chunk + 1 < chunks) issue(chunk + 1);
    const int k = stage_of(chunk);
    const size_t offset = chunk * kStageBytes;
    PSGRID_CUDA_CHECK(cudaEventSynchronize(stage_done_[k]));
    std::memcpy(out + offset, stage_[k], std::min(kStageBytes, bytes - offset));
  }
  next_stage_ = stage_of(chunks);
}

void CudaBackend::CopyOnDevice(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  Activate();
  PSGRID_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void* CudaBackend::AllocatePinnedHost(size_t bytes) {
  if (bytes == 0) return nullptr;
  Activate();
  void* p = nullptr;
  if (cudaMallocHost(&p, bytes) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  pinned_[static_cast<const char*>(p)] = bytes;
  return p;  // page-aligned
}

void CudaBackend::FreePinnedHost(void* p) {
  if (p == nullptr) return;
  const auto it = pinned_.find(static_cast<const char*>(p));
  PSGRID_CHECK(it != pinned_.end(),
               "FreePinnedHost of a pointer that AllocatePinnedHost did not return");
  pinned_.erase(it);
  Activate();
  PSGRID_CUDA_CHECK(cudaFreeHost(p));
}

bool CudaBackend::IsPinned(const void* p, size_t bytes) const {
  const char* begin = static_cast<const char*>(p);
  auto it = pinned_.upper_bound(begin);
  if (it == pinned_.begin()) return false;
  --it;
  return begin >= it->first && begin + bytes <= it->first + it->second;
}

void CudaBackend::Synchronize() {
  Activate();
  PSGRID_CUDA_CHECK(cudaStreamSynchronize(stream_));
  WaitCopy(next_ticket_ - 1);
}

CUevent_st* CudaBackend::TakeEvent() {
  if (!spare_events_.empty()) {
    CUevent_st* event = spare_events_.back();
    spare_events_.pop_back();
    return event;
  }
  cudaEvent_t event = nullptr;
  PSGRID_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  return event;
}

void CudaBackend::ReturnEvent(CUevent_st* event) { spare_events_.push_back(event); }

uint64_t CudaBackend::CopyToHostAsync(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return 0;
  Activate();
  if (!IsPinned(dst, bytes)) {
    WaitCopy(next_ticket_ - 1);
    CopyToHost(dst, src, bytes);
    return 0;
  }
  if (copy_stream_ == nullptr) {
    PSGRID_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    PSGRID_CUDA_CHECK(cudaEventCreateWithFlags(&compute_mark_, cudaEventDisableTiming));
  }
  // The copy waits for the compute stream's work so far (a later record of the mark does not
  // move what this wait waits for).
  PSGRID_CUDA_CHECK(cudaEventRecord(compute_mark_, stream_));
  PSGRID_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, compute_mark_, 0));
  PSGRID_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, copy_stream_));
  CUevent_st* landed = TakeEvent();
  PSGRID_CUDA_CHECK(cudaEventRecord(landed, copy_stream_));
  const uint64_t ticket = next_ticket_++;
  copies_.emplace_back(ticket, landed);
  return ticket;
}

bool CudaBackend::CopyDone(uint64_t ticket) {
  while (ticket > landed_ticket_ && !copies_.empty()) {
    const auto [t, event] = copies_.front();
    const cudaError_t e = cudaEventQuery(event);
    if (e == cudaErrorNotReady) return false;
    PSGRID_CUDA_CHECK(e);
    landed_ticket_ = t;
    ReturnEvent(event);
    copies_.pop_front();
  }
  return true;
}

void CudaBackend::WaitCopy(uint64_t ticket) {
  while (ticket > landed_ticket_ && !copies_.empty()) {
    const auto [t, event] = copies_.front();
    PSGRID_CUDA_CHECK(cudaEventSynchronize(event));
    landed_ticket_ = t;
    ReturnEvent(event);
    copies_.pop_front();
  }
}

// ---- Gemm -------------------------------------------------------------------------------------

// cuBLAS is column-major, and a row-major matrix is its transpose read column-major. So the
// row-major C = op(A)·op(B) is computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: the operands
// swap places, each keeps its own transpose flag, and every leading dimension is a row-major
// row length.
void CudaBackend::Gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float* a, const float* b, float beta, float* c) {
  if (m == 0 || n == 0) return;
  PSGRID_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX, "Gemm: a dimension exceeds int");
  Activate();
  const bool ta = trans_a == Trans::kYes;
  const bool tb = trans_b == Trans::kYes;
  const int lda = static_cast<int>(std::max<int64_t>(1, ta ? m : k));
  const int ldb = static_cast<int>(std::max<int64_t>(1, tb ? k : n));
  CublasCheck(*blas_,
              blas_->sgemm(cublas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                           static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b,
                           ldb, a, lda, &beta, c, static_cast<int>(n)),
              "cublasSgemm");
}

// ---- Entry points (cuda_device.h) -------------------------------------------------------------

absl::StatusOr<int> CudaDeviceCount() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return absl::UnavailableError(absl::StrCat("cuda: no CUDA device is usable: ", ErrorText(e)));
  }
  if (count <= 0) {
    return absl::UnavailableError("cuda: no CUDA device is usable: the runtime found none");
  }
  return count;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int ordinal) {
  absl::StatusOr<int> count = CudaDeviceCount();
  if (!count.ok()) return count.status();
  if (ordinal < 0 || ordinal >= *count) {
    return absl::UnavailableError(
        absl::StrCat("cuda:", ordinal, ": no such device; ", *count,
                     " CUDA device(s) usable (cuda:0 to cuda:", *count - 1, ")"));
  }
  std::string error;
  std::unique_ptr<CudaBackend> backend = CudaBackend::Create(ordinal, &error);
  if (backend == nullptr) {
    return absl::UnavailableError(absl::StrCat("cuda:", ordinal, ": ", error));
  }
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace psgrid
