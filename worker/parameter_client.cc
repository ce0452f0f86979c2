#include "worker/parameter_client.h"

#include <algorithm>

namespace psgrid {

int64_t LayoutSize(const std::vector<ParamInfo>& layout) {
  int64_t total = 0;
  for (const ParamInfo& info : layout) total = std::max(total, info.offset + info.size);
  return total;
}

bool WorthSendingEarly(const std::vector<ParamInfo>& layout) {
  if (layout.empty()) return false;
  const std::string& first = layout.front().name;
  const std::string first_layer = first.substr(0, first.find('.') + 1);
  int64_t early = 0;
  int64_t total = 0;
  for (const ParamInfo& info : layout) {
    total += info.size;
    if (info.name.compare(0, first_layer.size(), first_layer) != 0) early += info.size;
  }
  return early * 4 >= total;  // at least a quarter
}

}  // namespace psgrid
