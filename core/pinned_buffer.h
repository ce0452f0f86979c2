// PinnedBuffer: host memory from which a device copies fastest (DeviceMemory::AllocatePinnedHost:
// page-locked on a GPU, plain elsewhere), owned and freed with the memory that gave it.
//
//   PinnedBuffer staging(&backend, params.total_size());
//   Tensor host = staging.View({params.total_size()});   // a host tensor over it
//   params.grads().Read(0, host.span());                 // device → host in one DMA
//
// When the device cannot give pinned memory the buffer is plain host memory (the copies then
// go through the device's own staging). The memory must outlive the buffer. Not thread-safe.
#ifndef PSGRID_CORE_PINNED_BUFFER_H_
#define PSGRID_CORE_PINNED_BUFFER_H_

#include <cstdint>

#include "core/device_memory.h"
#include "core/tensor.h"

namespace psgrid {

class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  // `floats` floats, zero-filled.
  PinnedBuffer(DeviceMemory* memory, int64_t floats);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  float* data() const { return data_; }
  int64_t floats() const { return floats_; }
  // A host tensor over the buffer (NumElements(shape) <= floats()).
  Tensor View(Shape shape) const;

 private:
  void Reset();

  DeviceMemory* memory_ = nullptr;
  float* data_ = nullptr;
  int64_t floats_ = 0;
  bool from_memory_ = false;  // AllocatePinnedHost gave it (else the plain fallback)
};

}  // namespace psgrid

#endif  // PSGRID_CORE_PINNED_BUFFER_H_
