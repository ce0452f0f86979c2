#include "core/io/snapshot_store.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/io/crc32c.h"
#include "core/io/failpoint.h"
#include "core/io/file_util.h"
#include "core/io/snapshot_manifest.h"
#include "core/status_macros.h"

namespace psgrid {
namespace {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "tensors.bin is little-endian");

constexpr char kTensorsFile[] = "tensors.bin";
constexpr char kManifestFile[] = "manifest.json";
constexpr char kTmpPrefix[] = ".tmp-";

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 200 || id[0] == '.') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

// Loads and checks snapshot `id` of `dir`: everything Verify promises. The tensors only when
// `with_tensors`.
absl::StatusOr<SnapshotContents> Load(const std::string& dir, const std::string& id,
                                      bool with_tensors) {
  if (!ValidId(id)) {
    return absl::InvalidArgumentError(absl::StrCat("'", id, "' is not a valid snapshot id"));
  }
  const std::string where = absl::StrCat("snapshot '", id, "' in ", dir);
  const std::string path = dir + "/" + id;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return absl::NotFoundError(where + " does not exist");
  absl::StatusOr<std::string> text = ReadFileToString(path + "/" + kManifestFile);
  if (absl::IsNotFound(text.status())) {
    return absl::DataLossError(absl::StrCat(where, ": ", kManifestFile,
                                            " is missing (an incomplete or damaged snapshot)"));
  }
  RETURN_IF_ERROR(text.status());
  ASSIGN_OR_RETURN(SnapshotManifest m, ParseSnapshotManifest(where, id, *text));
  absl::StatusOr<std::string> data = ReadFileToString(path + "/" + kTensorsFile);
  if (absl::IsNotFound(data.status())) {
    return absl::DataLossError(absl::StrCat(where, ": ", kTensorsFile, " is missing"));
  }
  RETURN_IF_ERROR(data.status());
  for (const SnapshotManifestTensor& t : m.tensors) {
    if (t.offset + t.bytes > data->size()) {
      return absl::DataLossError(absl::StrCat(where, ": ", kTensorsFile, " is truncated (",
                                              data->size(), " of ", m.bytes, " bytes): tensor '",
                                              t.name, "' is cut short"));
    }
    const uint32_t crc = Crc32c(data->data() + t.offset, t.bytes);
    if (crc != t.crc32c) {
      return absl::DataLossError(absl::StrFormat(
          "%s: tensor '%s' in %s fails its CRC32C check (stored %08x, computed %08x)", where,
          t.name, kTensorsFile, t.crc32c, crc));
    }
  }
  if (data->size() != m.bytes) {
    return absl::DataLossError(absl::StrCat(where, ": ", kTensorsFile, " has ", data->size(),
                                            " bytes, the manifest says ", m.bytes));
  }
  SnapshotContents c;
  c.id = id;
  c.step = m.step;
  c.created = m.created;
  c.metadata = std::move(m.metadata);
  if (!with_tensors) return c;
  c.tensors.reserve(m.tensors.size());
  for (SnapshotManifestTensor& t : m.tensors) {
    Tensor tensor(std::move(t.shape));
    if (t.bytes > 0) std::memcpy(tensor.data(), data->data() + t.offset, t.bytes);
    c.tensors.emplace_back(std::move(t.name), std::move(tensor));
  }
  return c;
}

absl::Status CheckContents(const SnapshotContents& c) {
  if (!ValidId(c.id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", c.id, "' is not a valid snapshot id ([A-Za-z0-9._-]{1,200}, not starting with '.')"));
  }
  std::set<std::string> names;
  for (const auto& [name, tensor] : c.tensors) {
    if (name.empty() || !names.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("snapshot '", c.id, "': tensor name '", name,
                                                     "' is empty or appears twice"));
    }
  }
  return absl::OkStatus();
}

// Writes tensors.bin and then manifest.json of `c` into the directory `tmp`, each fsynced.
absl::Status WriteFiles(const std::string& tmp, const SnapshotContents& c) {
  SnapshotManifest m;
  m.id = c.id;
  m.step = c.step;
  m.created = c.created != 0 ? c.created : static_cast<int64_t>(std::time(nullptr));
  m.metadata = c.metadata;
  std::vector<ByteSpan> pieces;
  for (const auto& [name, tensor] : c.tensors) {
    const uint64_t bytes = static_cast<uint64_t>(tensor.size()) * sizeof(float);
    const char* p = reinterpret_cast<const char*>(tensor.data());
    if (bytes > 0) pieces.emplace_back(p, bytes);
    m.tensors.push_back({name, tensor.shape(), m.bytes, bytes, bytes > 0 ? Crc32c(p, bytes) : 0});
    m.bytes += bytes;
  }
  ASSIGN_OR_RETURN(const std::string text, SnapshotManifestToJson(m));
  RETURN_IF_ERROR(WriteFileSynced(tmp + "/" + kTensorsFile, pieces));
  Failpoint("snapshot.after_data");
  RETURN_IF_ERROR(WriteFileSynced(tmp + "/" + kManifestFile, {ByteSpan(text)}));
  Failpoint("snapshot.after_manifest");
  return absl::OkStatus();
}

// Removes the .tmp- directories in `dir` of processes that are gone (and of this one when
// `own_too`). Best effort: what cannot be removed now is left for the next call.
void RemoveLeftovers(const std::string& dir, bool own_too) {
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!absl::StartsWith(name, kTmpPrefix)) continue;
    int pid = 0;
    const size_t dash = name.rfind('-');
    if (!absl::SimpleAtoi(name.substr(dash + 1), &pid) || pid <= 0) continue;
    const bool gone = ::kill(pid, 0) != 0 && errno == ESRCH;
    if (gone || (own_too && pid == ::getpid())) doomed.push_back(it->path());
  }
  for (const fs::path& p : doomed) fs::remove_all(p, ec);
}

std::string TmpName(const std::string& id) { return absl::StrCat(kTmpPrefix, id, "-", ::getpid()); }

}  // namespace

SnapshotStore::SnapshotStore(std::string dir) : dir_(std::move(dir)) {}

absl::Status SnapshotStore::Write(const SnapshotContents& contents) {
  RETURN_IF_ERROR(CheckContents(contents));
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir_, ": ", ec.message()));
  RemoveLeftovers(dir_, /*own_too=*/true);
  const std::string final_path = dir_ + "/" + contents.id;
  if (fs::exists(fs::symlink_status(final_path, ec))) {
    return absl::AlreadyExistsError(
        absl::StrCat("snapshot '", contents.id, "' already exists in ", dir_));
  }
  const std::string tmp = dir_ + "/" + TmpName(contents.id);
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec) || ec) {
    return absl::InternalError(absl::StrCat("creating ", tmp, ": ", ec.message()));
  }
  absl::Status status = WriteFiles(tmp, contents);
  if (status.ok()) status = SyncDirectory(tmp);
  if (status.ok()) Failpoint("snapshot.before_rename");
  if (status.ok()) status = RenameAndSyncParent(tmp, final_path);
  if (!status.ok()) fs::remove_all(tmp, ec);
  return status;
}

absl::StatusOr<std::vector<SnapshotInfo>> SnapshotStore::List() const {
  std::vector<SnapshotInfo> all;
  std::error_code ec;
  fs::directory_iterator it(dir_, ec);
  if (ec == std::errc::no_such_file_or_directory) return all;
  for (const fs::directory_iterator end; !ec && it != end; it.increment(ec)) {
    const std::string id = it->path().filename().string();
    std::error_code type_ec;
    if (!ValidId(id) || !it->is_directory(type_ec)) continue;  // also skips .tmp- leftovers
    absl::StatusOr<std::string> text = ReadFileToString(it->path().string() + "/" + kManifestFile);
    if (!text.ok()) continue;  // incomplete or unreadable: not a snapshot
    absl::StatusOr<SnapshotManifest> m = ParseSnapshotManifest(id, id, *text);
    if (!m.ok()) continue;
    all.push_back({id, m->step, m->created, static_cast<int64_t>(m->bytes + text->size())});
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", dir_, ": ", ec.message()));
  std::sort(all.begin(), all.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return std::tie(a.step, a.created, a.id) < std::tie(b.step, b.created, b.id);
  });
  return all;
}

absl::Status SnapshotStore::Verify(const std::string& id) const {
  return Load(dir_, id, /*with_tensors=*/false).status();
}

absl::StatusOr<SnapshotContents> SnapshotStore::Read(const std::string& id) const {
  return Load(dir_, id, /*with_tensors=*/true);
}

absl::Status SnapshotStore::Prune(int keep_last) {
  if (keep_last < 0) {
    return absl::InvalidArgumentError(absl::StrCat("keep_last must be >= 0, not ", keep_last));
  }
  RemoveLeftovers(dir_, /*own_too=*/false);
  ASSIGN_OR_RETURN(std::vector<SnapshotInfo> all, List());
  if (keep_last == 0 || all.size() <= static_cast<size_t>(keep_last)) return absl::OkStatus();
  // Each goes in one atomic step (a rename to a .tmp- name, which List skips), then its files.
  absl::Status status;
  std::error_code ec;
  for (size_t i = 0; i + keep_last < all.size(); ++i) {
    const std::string tmp = dir_ + "/" + TmpName(all[i].id);
    fs::remove_all(tmp, ec);
    absl::Status renamed = RenameAndSyncParent(dir_ + "/" + all[i].id, tmp);
    if (status.ok()) status = renamed;
    if (!renamed.ok()) continue;
    Failpoint("snapshot.during_prune");
    fs::remove_all(tmp, ec);
    if (ec && status.ok()) {
      status = absl::InternalError(absl::StrCat("removing ", tmp, ": ", ec.message()));
    }
  }
  return status;
}

}  // namespace psgrid
