// CRC32C: the published check values, and the SSE4.2 and table implementations agreeing on
// every length and alignment, whole or continued.
#include "core/io/crc32c.h"

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace psgrid {
namespace {

using crc32c_internal::Crc32cHardware;
using crc32c_internal::Crc32cHardwareAvailable;
using crc32c_internal::Crc32cTable;

TEST(Crc32c, MatchesKnownVectors) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c("", 0), 0u);
  const std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xFF);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43u);  // RFC 3720, B.4
  std::vector<uint8_t> ascending(32), descending(32);
  for (int i = 0; i < 32; ++i) {
    ascending[i] = static_cast<uint8_t>(i);
    descending[i] = static_cast<uint8_t>(31 - i);
  }
  EXPECT_EQ(Crc32c(ascending.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(descending.data(), 32), 0x113FDB5Cu);
}

TEST(Crc32c, TableMatchesKnownVectors) {
  EXPECT_EQ(Crc32cTable("123456789", 9, 0), 0xE3069283u);
  const std::vector<uint8_t> zeros(32, 0x00);
  EXPECT_EQ(Crc32cTable(zeros.data(), zeros.size(), 0), 0x8A9136AAu);
}

TEST(Crc32c, ContinuingEqualsOneCall) {
  const std::string text = "The quick brown fox jumps over the lazy dog";
  const uint32_t whole = Crc32c(text.data(), text.size());
  for (size_t split = 0; split <= text.size(); ++split) {
    EXPECT_EQ(Crc32c(text.data() + split, text.size() - split, Crc32c(text.data(), split)), whole)
        << "split at " << split;
  }
}

TEST(Crc32c, HardwareAgreesWithTableOnRandomBuffers) {
  if (!Crc32cHardwareAvailable()) GTEST_SKIP() << "this CPU has no SSE4.2";
  std::mt19937_64 rng(42);
  std::vector<uint8_t> buffer(4099);
  for (uint8_t& b : buffer) b = static_cast<uint8_t>(rng());
  // Every offset (alignment) 0..7 with lengths around the 8-byte word size and odd lengths.
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n : {0, 1, 3, 7, 8, 9, 15, 16, 17, 63, 255, 1001, 4091}) {
      const uint8_t* p = buffer.data() + offset;
      ASSERT_EQ(Crc32cHardware(p, n, 0), Crc32cTable(p, n, 0)) << offset << " " << n;
      ASSERT_EQ(Crc32cHardware(p, n, 0xDEADBEEF), Crc32cTable(p, n, 0xDEADBEEF));
    }
  }
  // Continuation across random pieces, mixing the implementations.
  uint32_t hardware = 0, table = 0, mixed = 0;
  size_t at = 0;
  for (int piece = 0; at < buffer.size(); ++piece) {
    const size_t n = std::min<size_t>(rng() % 37, buffer.size() - at);
    hardware = Crc32cHardware(buffer.data() + at, n, hardware);
    table = Crc32cTable(buffer.data() + at, n, table);
    mixed = piece % 2 ? Crc32cHardware(buffer.data() + at, n, mixed)
                      : Crc32cTable(buffer.data() + at, n, mixed);
    at += n;
  }
  EXPECT_EQ(hardware, table);
  EXPECT_EQ(mixed, table);
  EXPECT_EQ(table, Crc32c(buffer.data(), buffer.size()));
}

TEST(Crc32c, DetectsASingleFlippedBit) {
  std::vector<uint8_t> buffer(1024, 0x5A);
  const uint32_t before = Crc32c(buffer.data(), buffer.size());
  for (size_t bit = 0; bit < buffer.size() * 8; bit += 97) {
    buffer[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_NE(Crc32c(buffer.data(), buffer.size()), before) << "bit " << bit;
    buffer[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  }
}

}  // namespace
}  // namespace psgrid
