// Tensor: a float32 array with a shape, contiguous row-major, 64-byte aligned.
//
//   Tensor x({64, 784});           // owns zero-filled storage
//   Tensor v = Tensor::View(p, {10});  // borrows p; p must outlive v
//
// A tensor either owns its storage or borrows it (a view into a ParameterSet arena, say).
// Copying a tensor deep-copies the elements into owned storage. Not thread-safe.
#ifndef PSGRID_CORE_TENSOR_H_
#define PSGRID_CORE_TENSOR_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace psgrid {

using Shape = std::vector<int64_t>;

// Product of the dimensions (1 for a scalar shape {}).
int64_t NumElements(const Shape& shape);
// "[64, 784]"
std::string ShapeToString(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape);
  Tensor(Shape shape, std::span<const float> values);  // copies values; sizes must match
  static Tensor View(float* data, Shape shape);

  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  float* data() { return data_; }
  const float* data() const { return data_; }
  std::span<float> span() { return {data_, static_cast<size_t>(size_)}; }
  std::span<const float> span() const { return {data_, static_cast<size_t>(size_)}; }
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }

  // Changes the shape. An owning tensor reallocates only when its capacity is too small, so
  // buffers reused across batches do not allocate in steady state; contents are unspecified
  // after growth. A view may only be reshaped to the same number of elements.
  void Resize(Shape shape);
  void SetZero();

 private:
  struct AlignedFree {
    void operator()(float* p) const;
  };

  Shape shape_;
  int64_t size_ = 0;
  int64_t capacity_ = 0;
  float* data_ = nullptr;
  std::unique_ptr<float[], AlignedFree> storage_;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_TENSOR_H_
