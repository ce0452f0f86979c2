#include "client/job_format.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "proto/job_spec_codec.h"
#include "server/job.h"

namespace psgrid {
namespace {

using Json = nlohmann::ordered_json;

bool IsClassification(const v1::JobStatus& s) { return s.spec().model().loss() != "mse"; }

// Whether rank 0 has reported a test evaluation yet.
bool HasTestMetrics(const v1::JobStatus& s) { return s.test_loss() != 0 || s.test_accuracy() != 0; }

Json StatusObject(const v1::JobStatus& s, bool with_spec) {
  Json j;
  j["id"] = s.job_id();
  j["name"] = s.name();
  j["state"] = JobStateName(s.state());
  j["message"] = s.message();
  j["step"] = s.step();
  j["total_steps"] = s.total_steps();
  j["epoch"] = s.epoch();
  j["epochs"] = s.epochs();
  j["train_loss"] = s.train_loss();
  j["test_loss"] = s.test_loss();
  j["test_accuracy"] = s.test_accuracy();
  j["samples"] = s.samples();
  j["samples_per_second"] = s.samples_per_second();
  j["workers"] = s.workers();
  j["workers_joined"] = s.workers_joined();
  j["wall_seconds"] = s.wall_seconds();
  AddConsistencyFields(s, &j);
  if (with_spec && s.has_spec()) {
    // No exceptions: a text that does not parse gives a discarded value, left out.
    Json spec = Json::parse(JobSpecToJson(s.spec()), nullptr, /*allow_exceptions=*/false);
    if (!spec.is_discarded()) j["spec"] = std::move(spec);
  }
  return j;
}

std::string Dump(const Json& j) {
  // replace: invalid UTF-8 in a name must not throw.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string Elapsed(double seconds) {
  if (seconds < 120) return absl::StrFormat("%.1fs", seconds);
  const int64_t s = static_cast<int64_t>(seconds);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60);
}

}  // namespace

void AddConsistencyFields(const v1::JobStatus& s, nlohmann::ordered_json* j) {
  (*j)["consistency"] = s.spec().training().consistency();
  (*j)["staleness_histogram"] = std::vector<int64_t>(s.staleness_histogram().begin(),
                                                     s.staleness_histogram().end());
  (*j)["late_gradients"] = s.late_gradients();
  (*j)["bad_gradients"] = s.bad_gradients();
}

double AverageSamplesPerSecond(const v1::JobStatus& s) {
  if (s.samples() > 0 && s.wall_seconds() > 0) {
    return static_cast<double>(s.samples()) / s.wall_seconds();
  }
  return s.samples_per_second();
}

std::string PendingReason(const v1::JobStatus& s) {
  if (!s.message().empty()) return s.message();
  return absl::StrCat("waiting for ", s.workers(), " worker(s)");
}

std::string JobStatusJson(const v1::JobStatus& status, bool with_spec) {
  return Dump(StatusObject(status, with_spec));
}

std::string JobListJson(const std::vector<v1::JobStatus>& jobs) {
  Json list = Json::array();
  for (const v1::JobStatus& s : jobs) list.push_back(StatusObject(s, /*with_spec=*/false));
  return Dump(list);
}

std::string JobTable(const std::vector<v1::JobStatus>& jobs) {
  if (jobs.empty()) return "no jobs\n";
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "STATE", "STEP", "EPOCH", "LOSS", "TEST-ACC", "SAMPLES/S", "WORKERS"}};
  for (const v1::JobStatus& s : jobs) {
    rows.push_back(
        {s.job_id(), s.name(), JobStateName(s.state()),
         absl::StrCat(s.step(), "/", s.total_steps()), absl::StrCat(s.epoch(), "/", s.epochs()),
         s.step() > 0 ? absl::StrFormat("%.4f", s.train_loss()) : "-",
         HasTestMetrics(s) && IsClassification(s) ? absl::StrFormat("%.4f", s.test_accuracy())
                                                  : "-",
         s.step() > 0 ? absl::StrFormat("%.0f", s.samples_per_second()) : "-",
         absl::StrCat(s.workers_joined(), "/", s.workers())});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      absl::StrAppend(&line, row[c]);
      if (c + 1 < row.size()) line.append(widths[c] - row[c].size() + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string JobDetails(const v1::JobStatus& s) {
  std::string out;
  auto add = [&out](const char* key, const std::string& value) {
    absl::StrAppend(&out, absl::StrFormat("%-15s%s\n", absl::StrCat(key, ":"), value));
  };
  add("id", s.job_id());
  add("name", s.name());
  add("state", JobStateName(s.state()));
  if (!s.message().empty()) add("message", s.message());
  add("step", absl::StrCat(s.step(), " / ", s.total_steps()));
  add("epoch", absl::StrCat(s.epoch(), " / ", s.epochs()));
  add("train loss", absl::StrFormat("%.4f", s.train_loss()));
  add("test loss", absl::StrFormat("%.4f", s.test_loss()));
  if (IsClassification(s)) add("test accuracy", absl::StrFormat("%.4f", s.test_accuracy()));
  add("samples/s", absl::StrFormat("%.0f", s.samples_per_second()));
  add("workers", absl::StrCat(s.workers_joined(), " of ", s.workers(), " joined"));
  add("wall time", Elapsed(s.wall_seconds()));
  const v1::TrainingSpec& t = s.spec().training();
  std::string consistency = t.consistency().empty() ? "sync" : t.consistency();
  if (t.consistency() == "ssp") absl::StrAppend(&consistency, " (staleness ", t.staleness(), ")");
  if (t.backup_workers() > 0) absl::StrAppend(&consistency, " with ", t.backup_workers(), " backup");
  add("consistency", consistency);
  if (s.staleness_histogram_size() > 0) {
    // "0:812 1:40 2:3": gradients by the steps they were stale.
    std::string histogram;
    for (int i = 0; i < s.staleness_histogram_size(); ++i) {
      if (s.staleness_histogram(i) == 0) continue;
      absl::StrAppend(&histogram, histogram.empty() ? "" : " ", i, ":", s.staleness_histogram(i));
    }
    add("staleness", histogram);
  }
  if (s.late_gradients() > 0) add("late gradients", absl::StrCat(s.late_gradients(), " dropped"));
  if (s.bad_gradients() > 0) {
    add("bad gradients", absl::StrCat(s.bad_gradients(), " rejected (NaN or Inf)"));
  }
  return out;
}

std::string EpochLine(const v1::JobStatus& s) {
  std::string line = absl::StrFormat(
      "epoch %d/%d  step %d/%d  loss %.4f  samples/s %.0f  test-loss %.4f", s.epoch(), s.epochs(),
      s.step(), s.total_steps(), s.train_loss(), s.samples_per_second(), s.test_loss());
  if (IsClassification(s))
    absl::StrAppend(&line, absl::StrFormat("  test-acc %.4f", s.test_accuracy()));
  absl::StrAppend(&line, "  elapsed ", Elapsed(s.wall_seconds()));
  return line;
}

std::string ProgressBarLine(const v1::JobStatus& s, int width) {
  std::string line;
  if (s.state() == v1::JOB_STATE_PENDING) {
    line = absl::StrCat("job ", s.job_id(), " pending: ", PendingReason(s));
  } else {
    constexpr int kBarWidth = 16;
    const double fraction =
        s.total_steps() > 0
            ? std::clamp(static_cast<double>(s.step()) / static_cast<double>(s.total_steps()), 0.0,
                         1.0)
            : 0.0;
    const int filled = static_cast<int>(fraction * kBarWidth);
    // The epoch in progress (the status counts completed ones).
    const int epoch = s.step() < s.total_steps() ? std::min(s.epoch() + 1, s.epochs()) : s.epoch();
    line = absl::StrFormat("[%s%s] %3.0f%% epoch %d/%d step %d loss %.4f", std::string(filled, '#'),
                           std::string(kBarWidth - filled, '.'), 100 * fraction, epoch, s.epochs(),
                           s.step(), s.train_loss());
    if (HasTestMetrics(s) && IsClassification(s)) {
      absl::StrAppend(&line, absl::StrFormat(" acc %.4f", s.test_accuracy()));
    }
    absl::StrAppend(
        &line, absl::StrFormat(" %.0f/s %s", s.samples_per_second(), Elapsed(s.wall_seconds())));
  }
  if (width > 0 && static_cast<int>(line.size()) > width) line.resize(width);
  return line;
}

std::string FinalLine(const v1::JobStatus& s) {
  std::string line = absl::StrCat("job ", s.job_id(), " ", JobStateName(s.state()));
  if (s.state() == v1::JOB_STATE_COMPLETED) {
    absl::StrAppend(&line, absl::StrFormat(": %d steps, %d epoch(s), train loss %.4f, test loss "
                                           "%.4f",
                                           s.step(), s.epoch(), s.train_loss(), s.test_loss()));
    if (IsClassification(s)) {
      absl::StrAppend(&line, absl::StrFormat(", test accuracy %.4f", s.test_accuracy()));
    }
    absl::StrAppend(&line, absl::StrFormat(", %.0f samples/s, %s", AverageSamplesPerSecond(s),
                                           Elapsed(s.wall_seconds())));
  } else {
    absl::StrAppend(&line, absl::StrFormat(" at step %d/%d", s.step(), s.total_steps()));
    if (!s.message().empty()) absl::StrAppend(&line, ": ", s.message());
  }
  return line;
}

}  // namespace psgrid
