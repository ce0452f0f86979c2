// Tensor: a float32 array with a shape, contiguous row-major, 64-byte aligned, in host memory or
// in a device's memory.
//
//   Tensor x({64, 784});                 // owns zero-filled host storage
//   Tensor v = Tensor::View(p, {10});    // borrows p; p must outlive v
//   Tensor d({64, 784}, &backend);       // zero-filled device storage (host when the backend's
//                                        // memory is host memory)
//   d.CopyFrom(x);                       // host → device
//
// A tensor either owns its storage or borrows it (a view into a ParameterSet arena, say).
// Copying a tensor deep-copies the elements into owned storage of the same memory.
//
// Memory. memory() is null for host tensors (the default, and always where the memory given is
// host memory, e.g. the CPU backend's: those tensors are plain host tensors). A device tensor's
// storage is allocated and freed through its DeviceMemory, which must outlive it; data() is then
// a device pointer, for the backend's operations, and reading or writing its elements on the
// host (operator[], span()) is a programming error that aborts: copy through Read/Write,
// CopyFrom or ToHost. Not thread-safe.
#ifndef PSGRID_CORE_TENSOR_H_
#define PSGRID_CORE_TENSOR_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/device_memory.h"

namespace psgrid {

using Shape = std::vector<int64_t>;

// Product of the dimensions (1 for a scalar shape {}).
int64_t NumElements(const Shape& shape);
// "[64, 784]"
std::string ShapeToString(const Shape& shape);

namespace tensor_internal {
// Frees a tensor's owned storage in its memory (null: the host, std::free).
struct Release {
  DeviceMemory* memory = nullptr;
  void operator()(float* p) const;
};
}  // namespace tensor_internal

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled storage in `memory` (null or host memory: the host).
  explicit Tensor(Shape shape, DeviceMemory* memory = nullptr);
  Tensor(Shape shape, std::span<const float> values);  // host; copies values; sizes must match
  // Borrows `data`, which lies in `memory` (null: the host).
  static Tensor View(float* data, Shape shape, DeviceMemory* memory = nullptr);

  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The device memory of the storage; null for host tensors.
  DeviceMemory* memory() const { return memory_; }
  bool on_device() const { return memory_ != nullptr; }

  // Host or device pointer, as memory() says.
  float* data() { return data_; }
  const float* data() const { return data_; }
  // Host tensors only.
  std::span<float> span() {
    CheckHost();
    return {data_, static_cast<size_t>(size_)};
  }
  std::span<const float> span() const {
    CheckHost();
    return {data_, static_cast<size_t>(size_)};
  }
  float& operator[](int64_t i) {
    CheckHost();
    return data_[i];
  }
  float operator[](int64_t i) const {
    CheckHost();
    return data_[i];
  }

  // Changes the shape. An owning tensor reallocates only when its capacity is too small, so
  // buffers reused across batches do not allocate in steady state; contents are unspecified
  // after growth. A view may only be reshaped to the same number of elements.
  void Resize(Shape shape);
  void SetZero();

  // Moves an owning (or empty) tensor's storage to `memory` (null or host memory: the host),
  // contents and shape kept. Nothing happens when it is there already.
  void SetMemory(DeviceMemory* memory);

  // Copies src's elements into this tensor's (both of size(); shapes may differ), whichever
  // memory each is in: host or device, in either direction. Two device tensors must share
  // their memory.
  void CopyFrom(const Tensor& src);
  // A host copy (a plain copy for a host tensor).
  Tensor ToHost() const;
  // Elements [offset, offset + values.size()) ← host `values`, and host `out` ← elements
  // [offset, offset + out.size()), on either memory.
  void Write(int64_t offset, std::span<const float> values);
  void Read(int64_t offset, std::span<float> out) const;
  // Read queued on the device (DeviceMemory::CopyToHostAsync): returns its ticket, for the
  // tensor's memory's CopyDone and WaitCopy. A host tensor copies at once (ticket 0).
  uint64_t ReadAsync(int64_t offset, std::span<float> out) const;

 private:
  void CheckHost() const {
    if (memory_ != nullptr) [[unlikely]] DeviceElementAccess();
  }
  [[noreturn]] static void DeviceElementAccess();

  Shape shape_;
  int64_t size_ = 0;
  int64_t capacity_ = 0;
  float* data_ = nullptr;
  DeviceMemory* memory_ = nullptr;
  std::unique_ptr<float[], tensor_internal::Release> storage_;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_TENSOR_H_
