// CRC32C (Castagnoli), the checksum of snapshot tensors: hardware-accelerated (SSE4.2) where
// the CPU has it, a table otherwise; both give the same values.
//
//   uint32_t crc = Crc32c(data, n);          // of one buffer
//   crc = Crc32c(more, m, crc);              // extended over the next one
#ifndef PSGRID_CORE_IO_CRC32C_H_
#define PSGRID_CORE_IO_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace psgrid {

// The CRC32C of `n` bytes at `data`, continuing from `crc` (the CRC of the bytes before them;
// 0 to start). Crc32c("123456789", 9) == 0xE3069283. Thread-safe.
uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

// The two implementations Crc32c chooses between, for tests. Same contract as Crc32c;
// Crc32cHardware may only be called when Crc32cHardwareAvailable().
namespace crc32c_internal {
uint32_t Crc32cTable(const void* data, size_t n, uint32_t crc);
bool Crc32cHardwareAvailable();
uint32_t Crc32cHardware(const void* data, size_t n, uint32_t crc);
}  // namespace crc32c_internal

}  // namespace psgrid

#endif  // PSGRID_CORE_IO_CRC32C_H_
