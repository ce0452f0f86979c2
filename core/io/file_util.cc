#include "core/io/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"

namespace psgrid {
namespace {

absl::Status ErrnoError(int err, const std::string& what) {
  const std::string text = absl::StrCat(what, ": ", std::strerror(err));
  return err == ENOENT ? absl::NotFoundError(text) : absl::InternalError(text);
}

// Closes `fd` on scope exit unless released.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  int Release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, ByteSpan bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("writing ", path, ": ", std::strerror(errno)));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFileSynced(const std::string& path, std::span<const ByteSpan> pieces) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("creating ", path, ": ", std::strerror(errno)));
  }
  FdCloser closer(fd);
  for (ByteSpan piece : pieces) {
    if (absl::Status s = WriteAll(fd, piece, path); !s.ok()) return s;
  }
  if (::fsync(fd) != 0) {
    return absl::InternalError(absl::StrCat("fsync of ", path, ": ", std::strerror(errno)));
  }
  if (::close(closer.Release()) != 0) {
    return absl::InternalError(absl::StrCat("closing ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("opening ", path));
  FdCloser closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, absl::StrCat("stat of ", path));
  if (S_ISDIR(st.st_mode)) return absl::InternalError(absl::StrCat(path, " is a directory"));
  std::string contents;
  contents.resize(st.st_size > 0 ? static_cast<size_t>(st.st_size) : 0);
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::read(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("reading ", path));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  contents.resize(done);
  return contents;
}

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("opening directory ", dir, ": ", std::strerror(errno)));
  }
  FdCloser closer(fd);
  if (::fsync(fd) != 0) {
    return absl::InternalError(
        absl::StrCat("fsync of directory ", dir, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status RenameAndSyncParent(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("renaming ", from, " to ", to, ": ", std::strerror(errno)));
  }
  return SyncDirectory(ParentDirectory(to));
}

std::string ParentDirectory(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

bool Float32Bytes(const Shape& shape, uint64_t* bytes) {
  uint64_t n = sizeof(float);
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  *bytes = n;
  return true;
}

}  // namespace psgrid
