// Runs the psgrid command line in-process and captures what it prints.
#ifndef PSGRID_TESTS_CLI_RUNNER_H_
#define PSGRID_TESTS_CLI_RUNNER_H_

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "client/cli.h"
#include "gtest/gtest.h"

namespace psgrid::testing {

struct CliRun {
  int code;
  std::string out;
  std::string err;
};

// `psgrid args...`: the exit code and the captured stdout and stderr.
inline CliRun RunPsgrid(std::vector<std::string> args) {
  args.insert(args.begin(), "psgrid");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const int code = RunCli(static_cast<int>(argv.size()), argv.data());
  std::fflush(stdout);
  std::fflush(stderr);
  return CliRun{code, ::testing::internal::GetCapturedStdout(),
                ::testing::internal::GetCapturedStderr()};
}

// The last non-empty line of `text` ("" when there is none): where a command prints its result.
inline std::string LastLine(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines.empty() ? "" : lines.back();
}

}  // namespace psgrid::testing

#endif  // PSGRID_TESTS_CLI_RUNNER_H_
