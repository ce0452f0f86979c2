// The manifest.json of one snapshot (see core/io/snapshot_store.h for the layout): what
// tensors.bin holds, where, and each tensor's CRC32C. Parsing checks everything that can be
// checked without tensors.bin.
//
//   ASSIGN_OR_RETURN(std::string text, SnapshotManifestToJson(manifest));
//   ASSIGN_OR_RETURN(SnapshotManifest m, ParseSnapshotManifest("snapshot 'a'", "a", text));
//
// Plain values and thread-safe free functions.
#ifndef PSGRID_CORE_IO_SNAPSHOT_MANIFEST_H_
#define PSGRID_CORE_IO_SNAPSHOT_MANIFEST_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace psgrid {

inline constexpr int kSnapshotFormatVersion = 1;

struct SnapshotManifestTensor {
  std::string name;
  Shape shape;          // float32
  uint64_t offset = 0;  // in tensors.bin
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
};

struct SnapshotManifest {
  std::string id;
  int64_t step = 0;
  int64_t created = 0;  // unix seconds
  uint64_t bytes = 0;   // of tensors.bin
  std::map<std::string, std::string> metadata;
  std::vector<SnapshotManifestTensor> tensors;  // back to back from offset 0
};

// The manifest as JSON text. INVALID_ARGUMENT when a name or metadata string is not UTF-8.
absl::StatusOr<std::string> SnapshotManifestToJson(const SnapshotManifest& manifest);

// Parses `text` as the manifest of snapshot `id` and checks it: the fields and their types,
// format_version 1, the id, float32 tensors whose bytes fit their shapes and which tile
// `bytes` back to back, no duplicate names. DATA_LOSS saying what is wrong, prefixed with
// `where` (e.g. "snapshot 'a' in /dir").
absl::StatusOr<SnapshotManifest> ParseSnapshotManifest(const std::string& where,
                                                       const std::string& id,
                                                       const std::string& text);

}  // namespace psgrid

#endif  // PSGRID_CORE_IO_SNAPSHOT_MANIFEST_H_
