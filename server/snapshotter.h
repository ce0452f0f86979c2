// Snapshotter: writes one job's snapshots to its SnapshotStore in the background, at most one
// at a time, and prunes to keep_last after each complete one.
//
// The job copies its state (SnapshotContents) between two steps, which is all training waits
// for; the write, fsyncs and pruning run on the snapshotter's own thread.
//
//   Snapshotter snapshots(dir, /*keep_last=*/3);
//   if (!snapshots.TryStart(job.Capture())) { /* a write is in flight: skip this one */ }
//   ASSIGN_OR_RETURN(SnapshotInfo info, snapshots.Write(job.Capture(), deadline));  // waits
//
// Thread-safe. The destructor waits for the write in flight.
#ifndef PSGRID_SERVER_SNAPSHOTTER_H_
#define PSGRID_SERVER_SNAPSHOTTER_H_

#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/io/snapshot_store.h"

namespace psgrid {

class Snapshotter {
 public:
  Snapshotter(std::string dir, int keep_last);
  ~Snapshotter();
  Snapshotter(const Snapshotter&) = delete;
  Snapshotter& operator=(const Snapshotter&) = delete;

  const SnapshotStore& store() const { return store_; }
  // The snapshots, oldest first, at most keep_last of them (the newest): between a write
  // landing and the pruning after it the store holds one more, which is on its way out.
  absl::StatusOr<std::vector<SnapshotInfo>> List() const;
  bool Busy() const;
  // Starts writing `contents` unless a write is in flight (then returns false).
  bool TryStart(SnapshotContents contents);
  // Waits (until `deadline`) for the write in flight, writes `contents` and waits for it.
  // DEADLINE_EXCEEDED when the deadline passes first (the write goes on); the write's own
  // error otherwise.
  absl::StatusOr<SnapshotInfo> Write(SnapshotContents contents, absl::Time deadline);
  // The outcome of the last finished write (OK before any), and how long its files took
  // (SnapshotStore::Write: writing, fsyncs, rename; not the pruning).
  absl::Status last_status() const;
  absl::Duration last_write_time() const;

 private:
  void StartLocked(SnapshotContents contents) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run(SnapshotContents contents);

  SnapshotStore store_;
  const int keep_last_;
  mutable absl::Mutex mu_;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  int64_t writes_started_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t writes_done_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_status_ ABSL_GUARDED_BY(mu_);
  SnapshotInfo last_info_ ABSL_GUARDED_BY(mu_);
  absl::Duration last_write_time_ ABSL_GUARDED_BY(mu_);
  std::thread thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace psgrid

#endif  // PSGRID_SERVER_SNAPSHOTTER_H_
