#include "server/snapshotter.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"

namespace psgrid {

Snapshotter::Snapshotter(std::string dir, int keep_last)
    : store_(std::move(dir)), keep_last_(keep_last) {}

Snapshotter::~Snapshotter() {
  std::thread last;
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](bool* busy) { return !*busy; }, &busy_));
    last = std::move(thread_);
  }
  if (last.joinable()) last.join();
}

absl::StatusOr<std::vector<SnapshotInfo>> Snapshotter::List() const {
  absl::StatusOr<std::vector<SnapshotInfo>> all = store_.List();
  if (all.ok() && keep_last_ > 0 && all->size() > static_cast<size_t>(keep_last_)) {
    all->erase(all->begin(), all->end() - keep_last_);
  }
  return all;
}

bool Snapshotter::Busy() const {
  absl::MutexLock lock(&mu_);
  return busy_;
}

bool Snapshotter::TryStart(SnapshotContents contents) {
  absl::MutexLock lock(&mu_);
  if (busy_) return false;
  StartLocked(std::move(contents));
  return true;
}

void Snapshotter::StartLocked(SnapshotContents contents) {
  if (thread_.joinable()) thread_.join();  // finished: busy_ is false
  busy_ = true;
  ++writes_started_;
  thread_ = std::thread([this, c = std::move(contents)]() mutable { Run(std::move(c)); });
}

void Snapshotter::Run(SnapshotContents contents) {
  SnapshotInfo info;
  info.id = contents.id;
  info.step = contents.step;
  info.created = contents.created;
  const absl::Time start = absl::Now();
  absl::Status status = store_.Write(contents);
  const absl::Duration write_time = absl::Now() - start;
  if (status.ok()) {
    // The new snapshot is complete: only now may older ones go.
    if (absl::Status pruned = store_.Prune(keep_last_); !pruned.ok()) {
      std::fprintf(stderr, "psgrid-server: pruning snapshots in %s: %s\n", store_.dir().c_str(),
                   std::string(pruned.message()).c_str());
    }
    absl::StatusOr<std::vector<SnapshotInfo>> all = store_.List();
    if (all.ok()) {
      for (const SnapshotInfo& s : *all) {
        if (s.id == info.id) info = s;
      }
    }
  } else {
    std::fprintf(stderr, "psgrid-server: snapshot %s of step %lld failed: %s\n",
                 contents.id.c_str(), static_cast<long long>(contents.step),
                 std::string(status.message()).c_str());
  }
  absl::MutexLock lock(&mu_);
  last_status_ = status;
  last_info_ = info;
  last_write_time_ = write_time;
  ++writes_done_;
  busy_ = false;
}

absl::StatusOr<SnapshotInfo> Snapshotter::Write(SnapshotContents contents, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !busy_; };
  if (!mu_.AwaitWithDeadline(absl::Condition(&idle), deadline)) {
    return absl::DeadlineExceededError("an earlier snapshot is still being written");
  }
  StartLocked(std::move(contents));
  const int64_t mine = writes_started_;
  auto done = [this, mine]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return writes_done_ >= mine; };
  if (!mu_.AwaitWithDeadline(absl::Condition(&done), deadline)) {
    return absl::DeadlineExceededError(
        "the snapshot is still being written (it goes on in the background)");
  }
  if (!last_status_.ok()) return last_status_;
  return last_info_;
}

absl::Status Snapshotter::last_status() const {
  absl::MutexLock lock(&mu_);
  return last_status_;
}

absl::Duration Snapshotter::last_write_time() const {
  absl::MutexLock lock(&mu_);
  return last_write_time_;
}

}  // namespace psgrid
