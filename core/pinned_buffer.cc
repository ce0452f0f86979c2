#include "core/pinned_buffer.h"

#include <cstring>
#include <new>
#include <utility>

#include "core/check.h"

namespace psgrid {

PinnedBuffer::PinnedBuffer(DeviceMemory* memory, int64_t floats)
    : memory_(memory), floats_(floats) {
  if (floats == 0) return;
  const size_t bytes = static_cast<size_t>(floats) * sizeof(float);
  data_ = static_cast<float*>(memory->AllocatePinnedHost(bytes));
  from_memory_ = data_ != nullptr;
  if (data_ == nullptr) {
    // The base class's plain host memory, freed the same way below.
    data_ = static_cast<float*>(memory->DeviceMemory::AllocatePinnedHost(bytes));
    if (data_ == nullptr) throw std::bad_alloc();
  }
  std::memset(data_, 0, bytes);
}

PinnedBuffer::~PinnedBuffer() { Reset(); }

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : memory_(other.memory_),
      data_(std::exchange(other.data_, nullptr)),
      floats_(std::exchange(other.floats_, 0)),
      from_memory_(other.from_memory_) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    memory_ = other.memory_;
    data_ = std::exchange(other.data_, nullptr);
    floats_ = std::exchange(other.floats_, 0);
    from_memory_ = other.from_memory_;
  }
  return *this;
}

Tensor PinnedBuffer::View(Shape shape) const {
  PSGRID_CHECK(NumElements(shape) <= floats_, "PinnedBuffer::View larger than the buffer");
  return Tensor::View(data_, std::move(shape));
}

void PinnedBuffer::Reset() {
  if (data_ == nullptr) return;
  if (from_memory_) {
    memory_->FreePinnedHost(data_);
  } else {
    memory_->DeviceMemory::FreePinnedHost(data_);
  }
  data_ = nullptr;
  floats_ = 0;
}

}  // namespace psgrid
