#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/check.h"
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
  return "[" + absl::StrJoin(shape, ", ") + "]";
}

void Tensor::AlignedFree::operator()(float* p) const { std::free(p); }

Tensor::Tensor(Shape shape) { Resize(std::move(shape)); SetZero(); }

Tensor::Tensor(Shape shape, std::span<const float> values) : Tensor(std::move(shape)) {
  PSGRID_CHECK(static_cast<int64_t>(values.size()) == size_, "value count does not match shape");
  if (size_ > 0) std::memcpy(data_, values.data(), size_ * sizeof(float));
}

Tensor Tensor::View(float* data, Shape shape) {
  Tensor t;
  t.size_ = NumElements(shape);
  t.shape_ = std::move(shape);
  t.data_ = data;
  return t;
}

Tensor::Tensor(const Tensor& other) { *this = other; }

Tensor& Tensor::operator=(const Tensor& other) {
  if (this == &other) return *this;
  storage_.reset();
  data_ = nullptr;
  capacity_ = 0;
  Resize(other.shape_);
  if (size_ > 0) std::memcpy(data_, other.data_, size_ * sizeof(float));
  return *this;
}

void Tensor::Resize(Shape shape) {
  int64_t n = NumElements(shape);
  if (data_ != nullptr && storage_ == nullptr) {
    PSGRID_CHECK(n == size_, "a view cannot change its element count");
  } else if (n > capacity_) {
    storage_.reset(AllocateAligned(n));
    data_ = storage_.get();
    capacity_ = n;
  }
  shape_ = std::move(shape);
  size_ = n;
}

void Tensor::SetZero() {
  if (size_ > 0) std::memset(data_, 0, size_ * sizeof(float));
}

}  // namespace psgrid
