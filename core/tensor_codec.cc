#include "core/tensor_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace psgrid {

void EncodeSlices(const std::vector<ParamInfo>& layout, const float* arena, int64_t max_group_bytes,
                  const std::function<bool(std::vector<v1::TensorSlice>&&)>& emit) {
  std::vector<v1::TensorSlice> group;
  int64_t group_bytes = 0;
  for (const ParamInfo& info : layout) {
    const char* bytes = reinterpret_cast<const char*>(arena + info.offset);
    const int64_t total = info.size * static_cast<int64_t>(sizeof(float));
    int64_t offset = 0;
    do {
      if (group_bytes >= max_group_bytes && !group.empty()) {
        if (!emit(std::move(group))) return;
        group.clear();
        group_bytes = 0;
      }
      const int64_t room = std::max<int64_t>(max_group_bytes - group_bytes, sizeof(float));
      const int64_t take = std::min(total - offset, room / 4 * 4);
      v1::TensorSlice& slice = group.emplace_back();
      slice.set_name(info.name);
      slice.set_dtype(v1::DTYPE_FLOAT32);
      for (int64_t d : info.shape) slice.add_shape(d);
      slice.set_offset(offset);
      slice.set_data(bytes + offset, take);
      offset += take;
      group_bytes += take;
    } while (offset < total);
  }
  if (!group.empty()) emit(std::move(group));
}

SliceAssembler::SliceAssembler(const std::vector<ParamInfo>& layout, float* arena)
    : layout_(layout), arena_(arena), received_bytes_(layout.size(), 0) {
  for (size_t i = 0; i < layout.size(); ++i) index_[layout[i].name] = static_cast<int>(i);
}

absl::Status SliceAssembler::Add(const v1::TensorSlice& slice) {
  auto it = index_.find(slice.name());
  if (it == index_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown tensor '", slice.name(), "'"));
  }
  const ParamInfo& info = layout_[it->second];
  if (slice.dtype() != v1::DTYPE_FLOAT32) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", info.name, ": dtype ",
                                                   v1::DType_Name(slice.dtype()),
                                                   ", expected DTYPE_FLOAT32"));
  }
  if (!std::equal(slice.shape().begin(), slice.shape().end(), info.shape.begin(),
                  info.shape.end())) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", info.name, ": shape [",
                                                   absl::StrJoin(slice.shape(), ", "),
                                                   "], expected ", ShapeToString(info.shape)));
  }
  int64_t& received = received_bytes_[it->second];
  if (slice.offset() != received) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", info.name, ": slice at byte ",
                                                   slice.offset(), ", expected byte ", received));
  }
  const int64_t total = info.size * static_cast<int64_t>(sizeof(float));
  const int64_t size = static_cast<int64_t>(slice.data().size());
  if (size % 4 != 0 || size > total - received) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", info.name, ": ", size,
                                                   " bytes at byte ", received, " do not fit its ",
                                                   total, " bytes of float32"));
  }
  std::memcpy(reinterpret_cast<char*>(arena_ + info.offset) + received, slice.data().data(), size);
  received += size;
  return absl::OkStatus();
}

absl::Status SliceAssembler::Finish() const {
  for (size_t i = 0; i < layout_.size(); ++i) {
    const int64_t total = layout_[i].size * static_cast<int64_t>(sizeof(float));
    if (received_bytes_[i] != total) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", layout_[i].name, ": received ",
                                                     received_bytes_[i], " of ", total, " bytes"));
    }
  }
  return absl::OkStatus();
}

absl::Status NamedSliceAssembler::Add(const v1::TensorSlice& slice) {
  auto it = index_.find(slice.name());
  if (it == index_.end()) {
    if (slice.name().empty()) return absl::InvalidArgumentError("a tensor slice without a name");
    Shape shape(slice.shape().begin(), slice.shape().end());
    int64_t elements = 1;
    for (int64_t d : shape) {
      if (d < 0 || (d > 0 && elements > (int64_t{1} << 40) / d)) {
        return absl::InvalidArgumentError(absl::StrCat("tensor ", slice.name(), ": shape ",
                                                       ShapeToString(shape), " is impossible"));
      }
      elements *= d;
    }
    it = index_.emplace(slice.name(), tensors_.size()).first;
    tensors_.emplace_back(slice.name(), Tensor(shape));
    received_bytes_.push_back(0);
  }
  auto& [name, tensor] = tensors_[it->second];
  if (slice.dtype() != v1::DTYPE_FLOAT32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", name, ": dtype ", v1::DType_Name(slice.dtype()), ", expected DTYPE_FLOAT32"));
  }
  if (!std::equal(slice.shape().begin(), slice.shape().end(), tensor.shape().begin(),
                  tensor.shape().end())) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, ": shape [",
                                                   absl::StrJoin(slice.shape(), ", "),
                                                   "], earlier ", ShapeToString(tensor.shape())));
  }
  int64_t& received = received_bytes_[it->second];
  if (slice.offset() != received) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, ": slice at byte ",
                                                   slice.offset(), ", expected byte ", received));
  }
  const int64_t total = tensor.size() * static_cast<int64_t>(sizeof(float));
  const int64_t size = static_cast<int64_t>(slice.data().size());
  if (size % 4 != 0 || size > total - received) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, ": ", size, " bytes at byte ",
                                                   received, " do not fit its ", total,
                                                   " bytes of float32"));
  }
  std::memcpy(reinterpret_cast<char*>(tensor.data()) + received, slice.data().data(), size);
  received += size;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, Tensor>>> NamedSliceAssembler::Finish() && {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const int64_t total = tensors_[i].second.size() * static_cast<int64_t>(sizeof(float));
    if (received_bytes_[i] != total) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", tensors_[i].first, ": received ",
                                                     received_bytes_[i], " of ", total, " bytes"));
    }
  }
  return std::move(tensors_);
}

}  // namespace psgrid
