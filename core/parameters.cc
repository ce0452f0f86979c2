#include "core/parameters.h"

#include "core/check.h"

namespace psgrid {
namespace {
// Each parameter starts on a 16-float (64-byte) boundary so that views stay aligned.
constexpr int64_t kAlignFloats = 16;
}  // namespace

int ParameterSet::Declare(std::string name, Shape shape, ParamKind kind, int64_t fan_in,
                          int64_t fan_out) {
  PSGRID_CHECK(!allocated_, "Declare after Allocate");
  const int64_t size = NumElements(shape);
  infos_.push_back({std::move(name), std::move(shape), kind, fan_in, fan_out, total_, size});
  total_ += (size + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  return static_cast<int>(infos_.size()) - 1;
}

void ParameterSet::Allocate(DeviceMemory* memory) {
  PSGRID_CHECK(!allocated_, "Allocate twice");
  values_ = Tensor({total_}, memory);
  grads_ = Tensor({total_}, memory);
  allocated_ = true;
}

void ParameterSet::AdoptArenas(float* values, float* grads) {
  PSGRID_CHECK(allocated_, "AdoptArenas before Allocate");
  PSGRID_CHECK(!values_.on_device(), "AdoptArenas of device arenas");
  values_ = Tensor::View(values, {total_});
  if (grads != nullptr) grads_ = Tensor::View(grads, {total_});
}

Tensor ParameterSet::Value(int index) {
  const ParamInfo& info = infos_[index];
  return Tensor::View(values_.data() + info.offset, info.shape, values_.memory());
}

Tensor ParameterSet::Grad(int index) {
  const ParamInfo& info = infos_[index];
  return Tensor::View(grads_.data() + info.offset, info.shape, grads_.memory());
}

int ParameterSet::Find(const std::string& name) const {
  for (size_t i = 0; i < infos_.size(); ++i) {
    if (infos_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace psgrid
