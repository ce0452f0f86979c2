#include "server/job_manager.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/backend/registry.h"
#include "core/check.h"
#include "core/status_macros.h"
#include "proto/job_spec_codec.h"

namespace psgrid {
namespace {

// A job id from the spec's name: letters, digits, '-' and '_' kept, the rest made '-'.
std::string IdPrefix(const std::string& name) {
  std::string out;
  for (char c : name.substr(0, 40)) {
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '-';
  }
  return out.empty() ? "job" : out;
}

}  // namespace

JobManager::JobManager(JobManagerOptions options) : options_(std::move(options)) {
  auto backend = CreateBackend("cpu");
  PSGRID_CHECK(backend.ok(), "the cpu backend is always available");
  backend_ = std::move(*backend);
  liveness_thread_ = std::thread([this] { LivenessLoop(); });
}

JobManager::~JobManager() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  liveness_thread_.join();
  StopAllForShutdown();
}

void JobManager::LivenessLoop() {
  absl::MutexLock lock(&mu_);
  while (!shutting_down_) {
    mu_.AwaitWithTimeout(absl::Condition(&shutting_down_), options_.liveness_period);
    const absl::Time now = absl::Now();
    for (const auto& [id, job] : jobs_) job->CheckLiveness(now, options_.worker_timeout);
  }
}

absl::StatusOr<std::string> JobManager::Submit(v1::JobSpec spec) {
  ApplyJobSpecDefaults(&spec);
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  ASSIGN_OR_RETURN(DataShape shape, DescribeJobData(spec.data()));
  std::string id;
  {
    absl::MutexLock lock(&mu_);
    // Not the id of a job this data directory holds from an earlier run of the server.
    do {
      id = absl::StrCat(IdPrefix(spec.name()), "-", next_id_++);
    } while (!options_.data_dir.empty() &&
             std::filesystem::exists(std::filesystem::path(options_.data_dir) / "jobs" / id));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Job> job, Job::Create(id, spec, shape, backend_.get()));
  if (!options_.data_dir.empty()) {
    // A record of what was submitted, and the job's snapshots beside it.
    std::error_code ec;
    const std::filesystem::path dir = std::filesystem::path(options_.data_dir) / "jobs" / id;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
    }
    std::ofstream(dir / "spec.json") << JobSpecToJson(spec) << "\n";
    job->EnablePersistence(dir.string());
  }
  absl::MutexLock lock(&mu_);
  jobs_[id] = std::move(job);
  order_.push_back(id);
  return id;
}

absl::StatusOr<std::shared_ptr<Job>> JobManager::Get(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end())
    return absl::NotFoundError(absl::StrCat("no job '", job_id, "' on this server"));
  return it->second;
}

std::vector<std::shared_ptr<Job>> JobManager::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Job>> out;
  for (const std::string& id : order_) out.push_back(jobs_.at(id));
  return out;
}

absl::StatusOr<std::shared_ptr<Job>> JobManager::WaitForJobNeedingWorkers(const std::string& job_id,
                                                                          absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Job> found;
  auto find = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (shutting_down_) return true;
    for (const std::string& id : order_) {
      if (!job_id.empty() && id != job_id) continue;
      const std::shared_ptr<Job>& job = jobs_.at(id);
      if (job->NeedsWorkers()) {
        found = job;
        return true;
      }
    }
    return false;
  };
  // Jobs are added under mu_, so a new submission re-evaluates the condition.
  mu_.AwaitWithDeadline(absl::Condition(&find), deadline);
  if (found) return found;
  if (!job_id.empty() && jobs_.count(job_id) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " needs no more workers (",
                     JobStateName(jobs_.at(job_id)->Status().state()), ")"));
  }
  return absl::NotFoundError(job_id.empty() ? "no job needs a worker"
                                            : absl::StrCat("no job '", job_id, "' on this server"));
}

int JobManager::SnapshotAll(absl::Time deadline) {
  int failed = 0;
  for (const std::shared_ptr<Job>& job : List()) {
    const v1::JobState state = job->Status().state();
    if (state != v1::JOB_STATE_RUNNING) continue;
    absl::StatusOr<SnapshotInfo> snap = job->TakeSnapshot(deadline);
    if (snap.ok()) {
      std::fprintf(stderr, "psgrid-server: job %s: snapshot %s at step %lld\n", job->id().c_str(),
                   snap->id.c_str(), static_cast<long long>(snap->step));
    } else {
      ++failed;
      std::fprintf(stderr, "psgrid-server: job %s: no snapshot at shutdown: %s\n",
                   job->id().c_str(), std::string(snap.status().message()).c_str());
    }
  }
  return failed;
}

void JobManager::StopAll(const std::string& reason) {
  for (const std::shared_ptr<Job>& job : List()) job->Stop(reason);
}

void JobManager::StopAllForShutdown() {
  for (const std::shared_ptr<Job>& job : List()) job->StopForShutdown();
}

absl::Status JobManager::RestoreSnapshot(const std::string& job_id,
                                         const std::string& snapshot_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<Job> job, Get(job_id));
  ASSIGN_OR_RETURN(SnapshotContents contents, job->ReadSnapshot(snapshot_id));
  return job->Restore(contents);
}

int JobManager::ResumeJobs() {
  if (options_.data_dir.empty()) return 0;
  const std::filesystem::path root = std::filesystem::path(options_.data_dir) / "jobs";
  std::error_code ec;
  if (!std::filesystem::is_directory(root, ec)) return 0;
  std::vector<std::string> ids;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    if (entry.is_directory() && std::filesystem::exists(entry.path() / "spec.json") &&
        !std::filesystem::exists(entry.path() / "ended")) {
      ids.push_back(entry.path().filename().string());
    }
  }
  std::sort(ids.begin(), ids.end());
  int resumed = 0;
  for (const std::string& id : ids) {
    absl::Status s = ResumeJob(id, (root / id).string());
    if (s.ok()) {
      ++resumed;
    } else {
      std::fprintf(stderr, "psgrid-server: cannot resume job %s: %s\n", id.c_str(),
                   std::string(s.message()).c_str());
    }
  }
  return resumed;
}

absl::Status JobManager::ResumeJob(const std::string& id, const std::string& dir) {
  ASSIGN_OR_RETURN(v1::JobSpec spec, LoadJobSpecFile(dir + "/spec.json"));
  ASSIGN_OR_RETURN(DataShape shape, DescribeJobData(spec.data()));
  ASSIGN_OR_RETURN(std::unique_ptr<Job> job, Job::Create(id, spec, shape, backend_.get()));
  job->EnablePersistence(dir);
  // The newest snapshot that reads back whole; a damaged one is skipped, saying why.
  ASSIGN_OR_RETURN(std::vector<SnapshotInfo> snapshots, job->ListSnapshots());
  std::string from = "the start (no usable snapshot)";
  for (auto it = snapshots.rbegin(); it != snapshots.rend(); ++it) {
    absl::StatusOr<SnapshotContents> contents = job->ReadSnapshot(it->id);
    absl::Status restored = contents.ok() ? job->Restore(*contents) : contents.status();
    if (restored.ok()) {
      from = absl::StrCat("snapshot ", it->id, " (step ", it->step, ")");
      break;
    }
    std::fprintf(stderr, "psgrid-server: job %s: skipping snapshot %s: %s\n", id.c_str(),
                 it->id.c_str(), std::string(restored.message()).c_str());
  }
  job->ReserveWorkerSlots();
  std::fprintf(stderr, "psgrid-server: resumed job %s from %s; waiting for its workers\n",
               id.c_str(), from.c_str());
  absl::MutexLock lock(&mu_);
  jobs_[id] = std::move(job);
  order_.push_back(id);
  return absl::OkStatus();
}

}  // namespace psgrid
