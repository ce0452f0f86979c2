#include "core/device_memory.h"

#include <cstdlib>

namespace psgrid {

void* DeviceMemory::AllocatePinnedHost(size_t bytes) {
  if (bytes == 0) return nullptr;
  constexpr size_t kAlign = 64;
  return std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
}

void DeviceMemory::FreePinnedHost(void* p) { std::free(p); }

}  // namespace psgrid
