// SnapshotStore: a job's snapshots on disk, crash-safe, listed, verified and read back.
//
// Layout under the store's directory (one per job), one directory per snapshot:
//   <dir>/<id>/tensors.bin    every tensor's raw little-endian bytes, back to back
//   <dir>/<id>/manifest.json  written last: {"format_version": 1, "id", "step", "created"
//                             (unix seconds), "bytes" (of tensors.bin), "metadata": {k: v},
//                             "tensors": [{"name", "dtype": "F32", "shape", "offset", "bytes",
//                             "crc32c"}]}
// Write() builds it as <dir>/.tmp-<id>-<pid>/, fsyncs each file, writes the manifest last,
// fsyncs it, renames the directory to <dir>/<id> and fsyncs <dir>. A crash at any moment
// leaves the earlier snapshots intact and the partial one unlisted (no manifest, or a .tmp-
// name); List() skips such leftovers and Write() removes them.
//
//   SnapshotStore store(data_dir + "/jobs/" + job_id + "/snapshots");
//   RETURN_IF_ERROR(store.Write(contents));
//   ASSIGN_OR_RETURN(std::vector<SnapshotInfo> all, store.List());   // oldest first
//   ASSIGN_OR_RETURN(SnapshotContents back, store.Read(all.back().id));  // verified
//
// Thread-compatible: one writer at a time per directory (the server runs at most one write per
// job); List, Verify and Read may run beside a Write.
#ifndef PSGRID_CORE_IO_SNAPSHOT_STORE_H_
#define PSGRID_CORE_IO_SNAPSHOT_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace psgrid {

struct SnapshotContents {
  std::string id;        // a directory name: [A-Za-z0-9._-]{1,200}, not starting with '.'
  int64_t step = 0;
  int64_t created = 0;   // unix seconds
  std::map<std::string, std::string> metadata;  // e.g. the job spec as JSON, epoch, seeds
  std::vector<std::pair<std::string, Tensor>> tensors;  // float32, in this order on disk
  // When `tensors` are views (a capture into one reusable buffer), what keeps them alive.
  std::shared_ptr<const float[]> storage;
};

struct SnapshotInfo {
  std::string id;
  int64_t step = 0;
  int64_t created = 0;
  int64_t bytes = 0;  // tensors.bin + manifest.json
};

class SnapshotStore {
 public:
  explicit SnapshotStore(std::string dir);

  const std::string& dir() const { return dir_; }

  // Creates the directory if needed. ALREADY_EXISTS when the id is taken; INVALID_ARGUMENT
  // for a bad id or tensor name; INTERNAL naming the file for I/O errors (nothing is left
  // behind but a .tmp- directory that the next Write removes).
  absl::Status Write(const SnapshotContents& contents);
  // Complete snapshots (a readable manifest), oldest step first (then oldest created). An
  // empty list when the directory does not exist.
  absl::StatusOr<std::vector<SnapshotInfo>> List() const;
  // Checks the manifest and every tensor's size and CRC32C. NOT_FOUND for an unknown id (no
  // such directory); INVALID_ARGUMENT for a malformed one; DATA_LOSS naming the snapshot and
  // the file or tensor at fault, including a directory without manifest.json (which List
  // skips: a snapshot the protocol completed but that lost its manifest since).
  absl::Status Verify(const std::string& id) const;
  // Verify, then the contents.
  absl::StatusOr<SnapshotContents> Read(const std::string& id) const;
  // Removes complete snapshots beyond the newest `keep_last` (0 keeps all; INVALID_ARGUMENT
  // when negative) and leftover .tmp- directories of other processes that are gone. Each
  // snapshot is first renamed to a .tmp- name, so a crash never leaves half of one listed.
  absl::Status Prune(int keep_last);

 private:
  std::string dir_;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_IO_SNAPSHOT_STORE_H_
