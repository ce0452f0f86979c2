// Weights from a safetensors file (PyTorch state-dict names and shapes) into a model's
// parameters: the import side of `psgrid export`, for `model.init_from` and `psgrid evaluate`.
#ifndef PSGRID_CORE_IO_WEIGHTS_FILE_H_
#define PSGRID_CORE_IO_WEIGHTS_FILE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/parameters.h"
#include "core/tensor.h"

namespace psgrid {

// Loads `path` into `params`, strictly as torch's load_state_dict(strict=True): every
// parameter must be in the file with its shape, and the file may hold nothing else. Errors
// start with `field` (e.g. "model.init_from") and the path, and name the tensor at fault:
// NOT_FOUND for a missing file, DATA_LOSS for a damaged one, INVALID_ARGUMENT for a missing,
// extra or misshapen tensor. Nothing is changed on an error.
absl::Status LoadWeightsFile(const std::string& path, const std::string& field,
                             ParameterSet* params);
// The same check and copy for tensors in memory; errors start with `where`.
absl::Status LoadWeights(const std::vector<std::pair<std::string, Tensor>>& tensors,
                         const std::string& where, ParameterSet* params);

}  // namespace psgrid

#endif  // PSGRID_CORE_IO_WEIGHTS_FILE_H_
