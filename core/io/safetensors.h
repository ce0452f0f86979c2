// The safetensors format (https://huggingface.co/docs/safetensors), for exporting weights to
// PyTorch and importing weights from it: 8 bytes little-endian N, then N bytes of a JSON
// header {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"key": "value"}} (padded with spaces to a multiple of 8), then the raw
// little-endian tensor bytes, contiguous, in the order of the offsets.
//
//   RETURN_IF_ERROR(WriteSafetensors(path, {{"0.weight", {256, 784}, w}}, {{"format", "pt"}}));
//   ASSIGN_OR_RETURN(SafetensorsFile f, ReadSafetensors(path));
//
// Only float32 tensors are written; reading accepts F32 (and names any other dtype in its
// error). Thread-compatible free functions.
#ifndef PSGRID_CORE_IO_SAFETENSORS_H_
#define PSGRID_CORE_IO_SAFETENSORS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace psgrid {

// A tensor to write: borrowed data of NumElements(shape) floats.
struct NamedTensorView {
  std::string name;
  Shape shape;
  const float* data = nullptr;
};

struct SafetensorsFile {
  // In the order of their data offsets in the file.
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> metadata;
};

// Writes crash-safely: to PATH.tmp-<pid>, fsync, rename over PATH, fsync the directory. A
// failure leaves any earlier file at PATH as it was. INVALID_ARGUMENT for duplicate or empty
// names (and the reserved "__metadata__"); INTERNAL naming the path for I/O errors.
absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensorView>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// Reads and checks the whole file. NOT_FOUND when it does not exist; DATA_LOSS naming the file
// (and the tensor, where one is at fault) for a header length beyond the file, a header that is
// not JSON or not of this shape, an unsupported dtype, a shape whose size does not match its
// offsets, offsets that overlap, leave gaps, or run past the end of the file.
absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);

}  // namespace psgrid

#endif  // PSGRID_CORE_IO_SAFETENSORS_H_
