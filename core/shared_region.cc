#include "core/shared_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace psgrid {
namespace {

absl::StatusOr<float*> Map(const std::string& name, int fd, int64_t bytes) {
  void* p = mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    return absl::InternalError(
        absl::StrCat("cannot map shared memory ", name, ": ", std::strerror(errno)));
  }
  return static_cast<float*>(p);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SharedRegion>> SharedRegion::Create(const std::string& name,
                                                                   int64_t floats) {
  const int64_t bytes = std::max<int64_t>(floats, 1) * static_cast<int64_t>(sizeof(float));
  const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot create shared memory ", name, ": ", std::strerror(errno)));
  }
  if (ftruncate(fd, bytes) != 0) {
    const int error = errno;
    close(fd);
    shm_unlink(name.c_str());
    return absl::InternalError(absl::StrCat("cannot size shared memory ", name, " to ", bytes,
                                            " bytes: ", std::strerror(error)));
  }
  absl::StatusOr<float*> data = Map(name, fd, bytes);
  if (!data.ok()) {
    shm_unlink(name.c_str());
    return data.status();
  }
  return std::unique_ptr<SharedRegion>(new SharedRegion(name, *data, floats, /*owner=*/true));
}

absl::StatusOr<std::unique_ptr<SharedRegion>> SharedRegion::Open(const std::string& name,
                                                                 int64_t floats) {
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open shared memory ", name, ": ", std::strerror(errno)));
  }
  struct stat st;
  const int64_t bytes = std::max<int64_t>(floats, 1) * static_cast<int64_t>(sizeof(float));
  if (fstat(fd, &st) != 0 || st.st_size < bytes) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat("shared memory ", name, " holds ", st.st_size,
                                                      " bytes; ", bytes, " are needed"));
  }
  absl::StatusOr<float*> data = Map(name, fd, bytes);
  if (!data.ok()) return data.status();
  return std::unique_ptr<SharedRegion>(new SharedRegion(name, *data, floats, /*owner=*/false));
}

int SharedRegion::RemoveStale() {
  int removed = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("psgrid-", 0) != 0) continue;
    const size_t end = name.find('-', 7);
    pid_t pid = 0;
    if (end == std::string::npos || !absl::SimpleAtoi(name.substr(7, end - 7), &pid) || pid <= 0) {
      continue;
    }
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    if (shm_unlink(("/" + name).c_str()) == 0) ++removed;
  }
  return removed;
}

SharedRegion::~SharedRegion() {
  munmap(data_, static_cast<size_t>(std::max<int64_t>(floats_, 1)) * sizeof(float));
  if (owner_) shm_unlink(name_.c_str());
}

}  // namespace psgrid
