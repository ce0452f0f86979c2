#include "core/device_memory.h"

#include <cstdlib>

namespace psgrid {

void* DeviceMemory::AllocatePinnedHost(size_t bytes) {
  if (bytes == 0) return nullptr;
  constexpr size_t kAlign = 64;
  return std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
}

void DeviceMemory::FreePinnedHost(void* p) { std::free(p); }

uint64_t DeviceMemory::CopyToHostAsync(void* dst, const void* src, size_t bytes) {
  CopyToHost(dst, src, bytes);
  return 0;
}

bool DeviceMemory::CopyDone(uint64_t) { return true; }

void DeviceMemory::WaitCopy(uint64_t) {}

}  // namespace psgrid
