#include "client/progress_printer.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace psgrid {
namespace {

int TerminalWidth(std::FILE* out) {
  winsize size{};
  if (ioctl(fileno(out), TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 100;
}

}  // namespace

ProgressPrinter::Mode ProgressPrinter::ModeFor(std::FILE* out, OutputFormat format) {
  if (format == OutputFormat::kJson) return Mode::kJsonLines;
  return isatty(fileno(out)) ? Mode::kTerminal : Mode::kLines;
}

ProgressPrinter::ProgressPrinter(std::FILE* out, Mode mode) : out_(out), mode_(mode) {}

void ProgressPrinter::PrintLine(const std::string& line) {
  BreakLine();
  std::fprintf(out_, "%s\n", line.c_str());
}

void ProgressPrinter::BreakLine() {
  if (line_open_) std::fputs("\n", out_);
  line_open_ = false;
  std::fflush(out_);
}

void ProgressPrinter::PrintEpoch(const v1::JobStatus& at_boundary, const v1::JobStatus& metrics) {
  v1::JobStatus line = at_boundary;
  line.set_test_loss(metrics.test_loss());
  line.set_test_accuracy(metrics.test_accuracy());
  PrintLine(EpochLine(line));
}

void ProgressPrinter::Update(const v1::JobStatus& s) {
  const bool ended = IsEndedState(s.state());
  if (mode_ == Mode::kJsonLines) {
    std::fprintf(out_, "%s\n", JobStatusJson(s, /*with_spec=*/false).c_str());
    std::fflush(out_);
    return;
  }
  if (first_) {
    first_ = false;
    printed_epoch_ = s.epoch();  // joining mid-job: earlier epochs are not shown
  }
  if (mode_ == Mode::kTerminal) {
    std::fprintf(out_, "\r%s\033[K", ProgressBarLine(s, TerminalWidth(out_) - 1).c_str());
    line_open_ = true;
    if (ended) PrintLine(FinalLine(s));
    std::fflush(out_);
    last_state_ = s.state();
    return;
  }

  // The epochs whose results the server keeps (JobStatus.history) and that have not been shown:
  // each from its own result, however many epochs this status is past the previous one.
  for (const v1::EpochResult& r : s.history()) {
    if (r.epoch() <= printed_epoch_) continue;
    v1::JobStatus line = s;
    line.set_epoch(r.epoch());
    line.set_step(r.step());
    line.set_train_loss(r.train_loss());
    line.set_samples_per_second(r.samples_per_second());
    line.set_test_loss(r.test_loss());
    line.set_test_accuracy(r.test_accuracy());
    line.set_wall_seconds(r.wall_seconds());
    PrintLine(EpochLine(line));
    printed_epoch_ = r.epoch();
  }
  if (awaiting_metrics_ && boundary_.epoch() <= printed_epoch_) awaiting_metrics_ = false;
  // Without a result in the history (an older server), an epoch's line waits for rank 0's
  // evaluation: it is printed when the test metrics change, when the next epoch has begun, or
  // when the job ends.
  if (awaiting_metrics_ &&
      (s.test_loss() != boundary_.test_loss() || s.test_accuracy() != boundary_.test_accuracy() ||
       s.epoch() > boundary_.epoch() || ended)) {
    PrintEpoch(boundary_, s);
    awaiting_metrics_ = false;
    printed_epoch_ = boundary_.epoch();
  }
  if (!awaiting_metrics_ && s.epoch() > printed_epoch_) {
    if (ended) {
      PrintEpoch(s, s);
      printed_epoch_ = s.epoch();
    } else {
      awaiting_metrics_ = true;
      boundary_ = s;
    }
  }
  if (ended) {
    if (last_state_ != s.state()) PrintLine(FinalLine(s));
  } else if (s.state() == v1::JOB_STATE_PENDING) {
    if (last_state_ != s.state() || last_message_ != s.message()) {
      PrintLine(absl::StrCat("job ", s.job_id(), " pending: ", PendingReason(s)));
    }
  } else if (s.state() == v1::JOB_STATE_RUNNING && last_state_ != s.state()) {
    PrintLine(absl::StrCat("job ", s.job_id(), " running with ", s.workers_joined(),
                           " worker(s)"));
  }
  last_message_ = s.message();
  last_state_ = s.state();
  std::fflush(out_);
}

}  // namespace psgrid
