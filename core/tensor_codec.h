// Moving a parameter arena (ParameterSet layout) over the wire as typed tensor slices.
//
// Sending: EncodeSlices() cuts every tensor of the layout into TensorSlice messages, packing
// slices into groups of at most `max_group_bytes` of tensor data (one group per stream message).
// Receiving: SliceAssembler checks each slice against the layout (known name, float32, the
// same shape, in order, in bounds) and copies its bytes into place; Finish() checks that every
// tensor arrived whole. The wire bytes are little-endian float32, as in memory on x86-64/ARM64.
#ifndef PSGRID_CORE_TENSOR_CODEC_H_
#define PSGRID_CORE_TENSOR_CODEC_H_

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "core/parameters.h"
#include "psgrid/v1/tensor.pb.h"

namespace psgrid {

inline constexpr int64_t kDefaultChunkBytes = 1 << 20;  // 1 MiB of tensor data per message

// Calls `emit` with consecutive groups of slices covering every tensor of `layout` in `arena`
// (floats at each ParamInfo's offset). Groups hold at most max_group_bytes of data, except
// that a group always holds at least one slice. Stops early if `emit` returns false.
void EncodeSlices(const std::vector<ParamInfo>& layout, const float* arena, int64_t max_group_bytes,
                  const std::function<bool(std::vector<v1::TensorSlice>&&)>& emit);

// Not thread-safe. `layout` and `arena` are borrowed for the assembler's lifetime.
class SliceAssembler {
 public:
  SliceAssembler(const std::vector<ParamInfo>& layout, float* arena);

  // INVALID_ARGUMENT naming the tensor for an unknown name, a dtype other than float32, a
  // shape unlike the layout's, an offset that is not where the previous slice ended, or bytes
  // past the tensor's end. Nothing is written for a rejected slice.
  absl::Status Add(const v1::TensorSlice& slice);
  // INVALID_ARGUMENT naming the first tensor that did not arrive whole.
  absl::Status Finish() const;

 private:
  const std::vector<ParamInfo>& layout_;
  float* arena_;
  std::unordered_map<std::string, int> index_;
  std::vector<int64_t> received_bytes_;
};

// Assembles slices of tensors whose names and shapes are not known in advance (an export):
// each name's first slice gives its shape, later slices must continue where the previous one
// ended. Not thread-safe.
class NamedSliceAssembler {
 public:
  // INVALID_ARGUMENT naming the tensor for a dtype other than float32, a shape that differs
  // from the tensor's first slice, an offset that is not where the previous slice ended, or
  // bytes past the tensor's end.
  absl::Status Add(const v1::TensorSlice& slice);
  // The tensors in the order of their first slices; INVALID_ARGUMENT naming the first tensor
  // that did not arrive whole.
  absl::StatusOr<std::vector<std::pair<std::string, Tensor>>> Finish() &&;

 private:
  std::vector<std::pair<std::string, Tensor>> tensors_;
  std::vector<int64_t> received_bytes_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_TENSOR_CODEC_H_
