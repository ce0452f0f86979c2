// Reader for IDX files, the format of MNIST and Fashion-MNIST.
//
// An IDX file is a 4-byte magic number (0, 0, element type, rank), then `rank` big-endian uint32
// dimensions, then the elements in row-major order. Files may be gzip-compressed or plain.
// Stateless free functions; safe to call from any thread.
#ifndef PSGRID_CORE_DATA_IDX_H_
#define PSGRID_CORE_DATA_IDX_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace psgrid {

// The contents of an IDX file of unsigned bytes: data.size() is the product of dims.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Reads an IDX file, gzip-compressed or plain (zlib's gzopen/gzread read both).
// Only element type 0x08 (unsigned byte) is supported. Every error message names the file:
//   NOT_FOUND         the file cannot be opened (or is a directory);
//   INVALID_ARGUMENT  a wrong magic number (bytes 0 and 1 must be 0, byte 3 the rank 1..4), an
//                     element type other than 0x08, a zero dimension other than the first, or a
//                     payload over 4 GiB (checked without overflow);
//   DATA_LOSS         a truncated header or payload, bytes after the payload, or a corrupt or
//                     unreadable gzip stream (the zlib message is included).
// Memory grows with the bytes actually read, so a lying header cannot force a huge allocation.
absl::StatusOr<IdxArray> ReadIdxFile(const std::string& path);

}  // namespace psgrid

#endif  // PSGRID_CORE_DATA_IDX_H_
