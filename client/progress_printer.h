// ProgressPrinter: shows a watched job's statuses as they arrive.
//
//   ProgressPrinter printer(stdout, ProgressPrinter::ModeFor(stdout, OutputFormat::kTable));
//   client->Watch(id, [&](const v1::JobStatus& s) { printer.Update(s); return true; });
//
// Modes: on a terminal, one progress line rewritten in place; otherwise one line per state
// change and per epoch (from the status's history of epoch results, so that none is skipped
// when statuses arrive epochs apart; else once the epoch's test metrics have arrived); in JSON,
// every status as one line of JSON. Once the job has ended, a final line (text modes).
// Not thread-safe; `out` is borrowed.
#ifndef PSGRID_CLIENT_PROGRESS_PRINTER_H_
#define PSGRID_CLIENT_PROGRESS_PRINTER_H_

#include <cstdio>
#include <string>

#include "client/job_format.h"
#include "psgrid/v1/service.pb.h"

namespace psgrid {

class ProgressPrinter {
 public:
  enum class Mode { kTerminal, kLines, kJsonLines };

  // kJsonLines for JSON; kTerminal when `out` is a terminal; else kLines.
  static Mode ModeFor(std::FILE* out, OutputFormat format);

  ProgressPrinter(std::FILE* out, Mode mode);

  void Update(const v1::JobStatus& status);
  // Ends a terminal's progress line (when one is showing), so that other text can follow.
  void BreakLine();

 private:
  void PrintLine(const std::string& line);
  void PrintEpoch(const v1::JobStatus& at_boundary, const v1::JobStatus& metrics);

  std::FILE* out_;
  Mode mode_;
  bool first_ = true;
  bool line_open_ = false;  // kTerminal: a progress line without its newline is showing
  v1::JobState last_state_ = v1::JOB_STATE_UNSPECIFIED;
  std::string last_message_;
  int printed_epoch_ = 0;
  // An epoch that has ended but whose line waits for its test metrics.
  bool awaiting_metrics_ = false;
  v1::JobStatus boundary_;
};

}  // namespace psgrid

#endif  // PSGRID_CLIENT_PROGRESS_PRINTER_H_
