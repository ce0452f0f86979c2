#include "core/init.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/rng.h"

namespace psgrid {

absl::Status InitializeParameters(const std::string& scheme, uint64_t seed, ParameterSet* params) {
  if (scheme != "he" && scheme != "xavier") {
    return absl::InvalidArgumentError(
        absl::StrCat("model.init.scheme: unknown scheme '", scheme, "'; expected he or xavier"));
  }
  for (int i = 0; i < static_cast<int>(params->infos().size()); ++i) {
    const ParamInfo& info = params->infos()[i];
    Tensor value = params->Value(i);
    if (info.kind == ParamKind::kBias) {
      value.SetZero();
      continue;
    }
    const double fans = scheme == "he" ? static_cast<double>(info.fan_in)
                                       : static_cast<double>(info.fan_in + info.fan_out);
    const float bound = static_cast<float>(std::sqrt(6.0 / fans));
    Rng rng(seed, info.name);
    // Drawn on the host; a device arena gets them by one copy per tensor.
    Tensor host = value.on_device() ? Tensor(info.shape) : Tensor::View(value.data(), info.shape);
    for (float& v : host.span()) v = rng.Uniform(-bound, bound);
    if (value.on_device()) value.CopyFrom(host);
  }
  return absl::OkStatus();
}

}  // namespace psgrid
