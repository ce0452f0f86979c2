// Writing a benchmark's JSON result (bench/results/...): one place for the file handling.
#ifndef PSGRID_BENCH_BENCH_JSON_H_
#define PSGRID_BENCH_BENCH_JSON_H_

#include <cstdio>
#include <fstream>
#include <string>

#include "nlohmann/json.hpp"

namespace psgrid {

// Writes `result` (indented) to `path` and says so on stdout; false, with a message on stderr,
// when the file cannot be written.
inline bool WriteJsonResult(const std::string& path, const nlohmann::json& result) {
  std::ofstream file(path);
  file << result.dump(2) << "\n";
  if (!file) {
    std::fprintf(stderr, "could not write %s\n", path.c_str());
    return false;
  }
  std::printf("written: %s\n", path.c_str());
  return true;
}

}  // namespace psgrid

#endif  // PSGRID_BENCH_BENCH_JSON_H_
