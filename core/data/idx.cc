#include "core/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"

namespace psgrid {
namespace {

constexpr uint8_t kTypeUnsignedByte = 0x08;
constexpr int kMaxRank = 4;
constexpr uint64_t kMaxPayloadBytes = uint64_t{1} << 32;  // 4 GiB
constexpr size_t kReadChunk = size_t{16} << 20;           // bytes per gzread call (< INT_MAX)

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFilePtr = std::unique_ptr<gzFile_s, GzCloser>;

// DATA_LOSS carrying zlib's (or the OS's) description of the stream's error state.
absl::Status StreamError(gzFile f, const std::string& path) {
  int errnum = Z_OK;
  const char* msg = gzerror(f, &errnum);
  std::string detail = errnum == Z_ERRNO ? std::strerror(errno) : (msg ? msg : "unknown error");
  // zlib prefixes its messages with the path; ours already starts with it.
  if (absl::StartsWith(detail, path + ": ")) detail.erase(0, path.size() + 2);
  return absl::DataLossError(absl::StrCat(path, ": corrupt or unreadable gzip stream: ", detail));
}

// Reads up to n bytes into buf and returns how many were read (fewer only at end of input).
// A stream error, including a gzip member cut short, is DATA_LOSS.
absl::StatusOr<size_t> ReadUpTo(gzFile f, const std::string& path, uint8_t* buf, size_t n) {
  size_t total = 0;
  while (total < n) {
    const unsigned chunk = static_cast<unsigned>(std::min(n - total, kReadChunk));
    const int got = gzread(f, buf + total, chunk);
    if (got < 0) return StreamError(f, path);
    if (got == 0) break;
    total += static_cast<size_t>(got);
  }
  if (total < n) {
    // zlib reports a truncated gzip member (Z_BUF_ERROR) as a short read, not as -1.
    int errnum = Z_OK;
    gzerror(f, &errnum);
    if (errnum != Z_OK) return StreamError(f, path);
  }
  return total;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Validates the dimensions and returns the element count, at most kMaxPayloadBytes.
absl::StatusOr<uint64_t> CheckedElementCount(const std::string& path,
                                             const std::vector<int64_t>& dims) {
  // The trailing dims (one sample) are checked on their own so that a first dim of 0 cannot
  // hide an absurd sample size.
  uint64_t sample = 1;
  for (size_t i = 1; i < dims.size(); ++i) {
    const uint64_t d = static_cast<uint64_t>(dims[i]);
    if (d == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": dimension ", i, " is 0 (only the first may be)"));
    }
    if (sample > kMaxPayloadBytes / d) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": dimensions too large (over 4 GiB)"));
    }
    sample *= d;
  }
  const uint64_t n = static_cast<uint64_t>(dims[0]);
  if (n != 0 && sample > kMaxPayloadBytes / n) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": dimensions too large (over 4 GiB)"));
  }
  return n * sample;
}

}  // namespace

absl::StatusOr<IdxArray> ReadIdxFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: is a directory"));
  }
  errno = 0;
  GzFilePtr file(gzopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open: ", errno != 0 ? std::strerror(errno) : "gzopen failed"));
  }
  gzbuffer(file.get(), 1 << 17);

  // Magic number: 0, 0, element type, rank.
  uint8_t magic[4];
  ASSIGN_OR_RETURN(size_t got, ReadUpTo(file.get(), path, magic, sizeof(magic)));
  if (got < sizeof(magic)) {
    return absl::DataLossError(
        absl::StrCat(path, ": truncated header (", got, " of 4 magic bytes)"));
  }
  if (magic[0] != 0 || magic[1] != 0 || magic[3] < 1 || magic[3] > kMaxRank) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: wrong magic number %02x %02x %02x %02x (want 00 00 type rank, rank 1..4)", path,
        magic[0], magic[1], magic[2], magic[3]));
  }
  if (magic[2] != kTypeUnsignedByte) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: unsupported element type 0x%02x (only 0x08, unsigned byte)", path, magic[2]));
  }
  const int rank = magic[3];

  uint8_t dim_bytes[4 * kMaxRank];
  ASSIGN_OR_RETURN(got, ReadUpTo(file.get(), path, dim_bytes, 4 * rank));
  if (got < static_cast<size_t>(4 * rank)) {
    return absl::DataLossError(
        absl::StrCat(path, ": truncated header (", got, " of ", 4 * rank, " dimension bytes)"));
  }
  IdxArray out;
  for (int i = 0; i < rank; ++i) out.dims.push_back(BigEndian32(dim_bytes + 4 * i));
  ASSIGN_OR_RETURN(const uint64_t total, CheckedElementCount(path, out.dims));

  // The payload, a chunk at a time so that a truncated file fails before a big allocation.
  out.data.reserve(std::min<uint64_t>(total, uint64_t{1} << 28));
  while (out.data.size() < total) {
    const size_t offset = out.data.size();
    const size_t want = static_cast<size_t>(std::min<uint64_t>(total - offset, kReadChunk));
    out.data.resize(offset + want);
    ASSIGN_OR_RETURN(got, ReadUpTo(file.get(), path, out.data.data() + offset, want));
    if (got < want) {
      return absl::DataLossError(
          absl::StrCat(path, ": truncated payload (", offset + got, " of ", total, " bytes)"));
    }
  }

  // Anything after the payload means the header does not describe the file. This read also
  // makes zlib reach the gzip trailer and verify its CRC.
  uint8_t extra;
  ASSIGN_OR_RETURN(got, ReadUpTo(file.get(), path, &extra, 1));
  if (got != 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": trailing bytes after the ", total, "-byte payload"));
  }
  return out;
}

}  // namespace psgrid
