#include "server/job_manager.h"

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
  StopAll("server shutting down");
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
    id = absl::StrCat(IdPrefix(spec.name()), "-", next_id_++);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Job> job, Job::Create(id, spec, shape, backend_.get()));
  if (!options_.data_dir.empty()) {
    // A record of what was submitted; snapshots will live beside it.
    std::error_code ec;
    const std::filesystem::path dir = std::filesystem::path(options_.data_dir) / "jobs" / id;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
    }
    std::ofstream(dir / "spec.json") << JobSpecToJson(spec) << "\n";
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

void JobManager::StopAll(const std::string& reason) {
  for (const std::shared_ptr<Job>& job : List()) job->Stop(reason);
}

}  // namespace psgrid
