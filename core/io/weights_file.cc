#include "core/io/weights_file.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "core/io/safetensors.h"

namespace psgrid {

absl::Status LoadWeightsFile(const std::string& path, const std::string& field,
                             ParameterSet* params) {
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat(field, ": ", file.status().message()));
  }
  return LoadWeights(file->tensors, absl::StrCat(field, ": ", path), params);
}

absl::Status LoadWeights(const std::vector<std::pair<std::string, Tensor>>& tensors,
                         const std::string& where, ParameterSet* params) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, tensor] : tensors) by_name[name] = &tensor;
  for (const ParamInfo& info : params->infos()) {
    auto it = by_name.find(info.name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": no tensor ", info.name, " ",
                                                     ShapeToString(info.shape),
                                                     ", which the model needs"));
    }
    if (it->second->shape() != info.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": tensor ", info.name, " has shape ", ShapeToString(it->second->shape()),
          ", the model needs ", ShapeToString(info.shape)));
    }
  }
  for (const auto& [name, tensor] : tensors) {
    if (params->Find(name) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tensor ", name, " is not in the model"));
    }
  }
  for (const ParamInfo& info : params->infos()) {
    // Host or device arena alike.
    params->values().Write(info.offset, by_name.at(info.name)->span());
  }
  return absl::OkStatus();
}

}  // namespace psgrid
