// ParameterSet: every parameter of a model, named as PyTorch names them, in one contiguous
// arena of values and one of gradients.
//
//   ParameterSet p;
//   int w = p.Declare("0.weight", {256, 784}, ParamKind::kWeight, /*fan_in=*/784, /*fan_out=*/256);
//   p.Allocate();
//   Tensor wv = p.Value(w);   // a view into the arena
//
// One arena makes the optimizer a single pass over flat arrays and a push or pull one block of
// bytes. Declaration order is the order of the state dict. The arenas are host memory, or a
// device's when allocated there (a model on a GPU). Not thread-safe; views borrow the arena and
// stay valid as long as the ParameterSet lives (it never reallocates after Allocate).
#ifndef PSGRID_CORE_PARAMETERS_H_
#define PSGRID_CORE_PARAMETERS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace psgrid {

enum class ParamKind { kWeight, kBias };

struct ParamInfo {
  std::string name;  // e.g. "0.weight"
  Shape shape;       // e.g. {256, 784}
  ParamKind kind;
  int64_t fan_in;
  int64_t fan_out;
  int64_t offset;  // in elements, into the arenas
  int64_t size;    // elements
};

class ParameterSet {
 public:
  // Declares a parameter; returns its index. Only before Allocate().
  int Declare(std::string name, Shape shape, ParamKind kind, int64_t fan_in, int64_t fan_out);
  // Allocates both arenas, zero-filled, in `memory` (a device backend's, which must outlive
  // this set; null or host memory: the host). Views (Value, Grad) are then in that memory too.
  void Allocate(DeviceMemory* memory = nullptr);
  // Switches both arenas to host memory the caller owns (total_size() floats each, e.g. shared
  // memory), taking its contents as they are. Views taken before are invalid afterwards:
  // rebind. The memory must outlive this ParameterSet's use of it. A null `grads` keeps the
  // gradient arena as it is. Host arenas only.
  void AdoptArenas(float* values, float* grads);
  // The arenas' device memory; null when they are host memory.
  DeviceMemory* memory() const { return values_.memory(); }

  const std::vector<ParamInfo>& infos() const { return infos_; }
  int64_t total_size() const { return total_; }

  Tensor& values() { return values_; }
  const Tensor& values() const { return values_; }
  Tensor& grads() { return grads_; }
  const Tensor& grads() const { return grads_; }

  Tensor Value(int index);
  Tensor Grad(int index);
  // -1 when there is no parameter of that name.
  int Find(const std::string& name) const;

 private:
  std::vector<ParamInfo> infos_;
  int64_t total_ = 0;
  bool allocated_ = false;
  Tensor values_;
  Tensor grads_;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_PARAMETERS_H_
