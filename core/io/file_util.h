// Small POSIX file helpers for crash-safe writes: write-all with fsync, read a whole file,
// fsync a directory, rename and make the rename durable, the size of float32 data. Used by
// the safetensors reader and writer and the snapshot store.
//
//   RETURN_IF_ERROR(WriteFileSynced(tmp, {ByteSpan(header), ByteSpan(body)}));
//   RETURN_IF_ERROR(RenameAndSyncParent(tmp, path));   // all of it or none of it at `path`
//
// Thread-safe free functions (they share nothing); errors are values, messages name the path.
#ifndef PSGRID_CORE_IO_FILE_UTIL_H_
#define PSGRID_CORE_IO_FILE_UTIL_H_

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace psgrid {

// A borrowed run of bytes; the memory must outlive the call it is passed to.
using ByteSpan = std::span<const char>;

// Writes `pieces`, in order, to `path` (created with mode 0644, or truncated) and fsyncs it.
// INTERNAL naming the path on any error (the file may then hold part of the data).
absl::Status WriteFileSynced(const std::string& path, std::span<const ByteSpan> pieces);
inline absl::Status WriteFileSynced(const std::string& path,
                                    std::initializer_list<ByteSpan> pieces) {
  return WriteFileSynced(path, std::span<const ByteSpan>(pieces.begin(), pieces.size()));
}

// The whole contents of `path`. NOT_FOUND when it does not exist; INTERNAL naming the path
// for other errors.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// fsyncs the directory `dir`, making the creation, removal or renaming of its entries durable.
absl::Status SyncDirectory(const std::string& dir);

// rename(2)s `from` to `to` (atomically replacing a file at `to`), then fsyncs the directory
// that holds `to`. INTERNAL naming both paths on error.
absl::Status RenameAndSyncParent(const std::string& from, const std::string& to);

// The directory part of `path` ("." for a bare file name).
std::string ParentDirectory(const std::string& path);

// The bytes of a float32 tensor of `shape` on disk, or false for a negative dimension or a
// size beyond 64 bits (as a corrupt header can claim).
bool Float32Bytes(const Shape& shape, uint64_t* bytes);

}  // namespace psgrid

#endif  // PSGRID_CORE_IO_FILE_UTIL_H_
