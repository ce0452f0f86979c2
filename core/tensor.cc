#include "core/tensor.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/check.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace psgrid {
namespace {
constexpr size_t kAlignment = 64;

float* AllocateAligned(int64_t n) {
  if (n == 0) return nullptr;
  size_t bytes = (static_cast<size_t>(n) * sizeof(float) + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, bytes);
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<float*>(p);
}
}  // namespace

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(const Shape& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

void tensor_internal::Release::operator()(float* p) const {
  if (memory != nullptr) {
    memory->Free(p);
  } else {
    std::free(p);
  }
}

void Tensor::DeviceElementAccess() {
  std::fprintf(stderr,
               "psgrid: host access (operator[] or span()) to the elements of a device tensor; "
               "copy them with Read, ToHost or CopyFrom\n");
  std::abort();
}

Tensor::Tensor(Shape shape, DeviceMemory* memory) : memory_(DeviceOrNull(memory)) {
  Resize(std::move(shape));
  SetZero();
}

Tensor::Tensor(Shape shape, std::span<const float> values) : Tensor(std::move(shape)) {
  PSGRID_CHECK(static_cast<int64_t>(values.size()) == size_, "value count does not match shape");
  if (size_ > 0) std::memcpy(data_, values.data(), size_ * sizeof(float));
}

Tensor Tensor::View(float* data, Shape shape, DeviceMemory* memory) {
  Tensor t;
  t.size_ = NumElements(shape);
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.memory_ = DeviceOrNull(memory);
  return t;
}

Tensor::Tensor(const Tensor& other) { *this = other; }

Tensor& Tensor::operator=(const Tensor& other) {
  if (this == &other) return *this;
  storage_.reset();
  data_ = nullptr;
  capacity_ = 0;
  memory_ = other.memory_;
  Resize(other.shape_);
  CopyFrom(other);
  return *this;
}

void Tensor::Resize(Shape shape) {
  int64_t n = NumElements(shape);
  if (data_ != nullptr && storage_ == nullptr) {
    PSGRID_CHECK(n == size_, "a view cannot change its element count");
  } else if (n > capacity_) {
    storage_.reset();  // before the new allocation: a device has no memory to spare
    float* p = nullptr;
    if (memory_ == nullptr) {
      p = AllocateAligned(n);
    } else {
      p = memory_->AllocateFloats(n);
      if (p == nullptr) {
        std::fprintf(stderr, "psgrid: cannot allocate %lld bytes of device memory\n",
                     static_cast<long long>(n) * 4);
        std::abort();
      }
    }
    storage_ = std::unique_ptr<float[], tensor_internal::Release>(
        p, tensor_internal::Release{memory_});
    data_ = p;
    capacity_ = n;
  }
  shape_ = std::move(shape);
  size_ = n;
}

void Tensor::SetZero() {
  if (size_ == 0) return;
  if (memory_ != nullptr) {
    memory_->FillZeros(size_, data_);
  } else {
    std::memset(data_, 0, size_ * sizeof(float));
  }
}

void Tensor::SetMemory(DeviceMemory* memory) {
  DeviceMemory* const target = DeviceOrNull(memory);
  if (target == memory_) return;
  PSGRID_CHECK(data_ == nullptr || storage_ != nullptr, "a view cannot change its memory");
  Tensor moved;
  moved.memory_ = target;
  if (size_ > 0) {
    moved.Resize(shape_);
    moved.CopyFrom(*this);
  } else {
    moved.shape_ = shape_;  // an empty tensor (a default one has shape {} and no elements)
  }
  *this = std::move(moved);
}

void Tensor::CopyFrom(const Tensor& src) {
  PSGRID_CHECK(src.size_ == size_, "CopyFrom between tensors of different sizes");
  const size_t bytes = static_cast<size_t>(size_) * sizeof(float);
  if (bytes == 0 || src.data_ == data_) return;
  if (memory_ == nullptr && src.memory_ == nullptr) {
    std::memcpy(data_, src.data_, bytes);
  } else if (src.memory_ == nullptr) {
    memory_->CopyToDevice(data_, src.data_, bytes);
  } else if (memory_ == nullptr) {
    src.memory_->CopyToHost(data_, src.data_, bytes);
  } else {
    PSGRID_CHECK(memory_ == src.memory_, "CopyFrom between two devices");
    memory_->CopyOnDevice(data_, src.data_, bytes);
  }
}

Tensor Tensor::ToHost() const {
  Tensor out;
  out.Resize(shape_);
  out.CopyFrom(*this);
  return out;
}

void Tensor::Write(int64_t offset, std::span<const float> values) {
  const int64_t n = static_cast<int64_t>(values.size());
  PSGRID_CHECK(offset >= 0 && offset + n <= size_, "Write out of bounds");
  if (n == 0) return;
  if (memory_ != nullptr) {
    memory_->CopyToDevice(data_ + offset, values.data(), n * sizeof(float));
  } else {
    std::memcpy(data_ + offset, values.data(), n * sizeof(float));
  }
}

void Tensor::Read(int64_t offset, std::span<float> out) const {
  const int64_t n = static_cast<int64_t>(out.size());
  PSGRID_CHECK(offset >= 0 && offset + n <= size_, "Read out of bounds");
  if (n == 0) return;
  if (memory_ != nullptr) {
    memory_->CopyToHost(out.data(), data_ + offset, n * sizeof(float));
  } else {
    std::memcpy(out.data(), data_ + offset, n * sizeof(float));
  }
}

uint64_t Tensor::ReadAsync(int64_t offset, std::span<float> out) const {
  const int64_t n = static_cast<int64_t>(out.size());
  PSGRID_CHECK(offset >= 0 && offset + n <= size_, "ReadAsync out of bounds");
  if (n == 0) return 0;
  if (memory_ == nullptr) {
    std::memcpy(out.data(), data_ + offset, n * sizeof(float));
    return 0;
  }
  return memory_->CopyToHostAsync(out.data(), data_ + offset, n * sizeof(float));
}

}  // namespace psgrid
