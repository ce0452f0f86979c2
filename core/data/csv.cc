#include "core/data/csv.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace psgrid {

absl::StatusOr<Dataset> ReadCsv(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: is a directory"));
  }
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open: ", errno != 0 ? std::strerror(errno) : "open failed"));
  }

  std::vector<float> features;
  std::vector<float> targets;
  size_t num_columns = 0;  // of the first data row; 0 until it is seen
  bool seen_first_line = false;
  std::vector<double> row;
  std::string line;
  for (int64_t line_number = 1; std::getline(in, line); ++line_number) {
    const absl::string_view text = absl::StripAsciiWhitespace(line);  // also drops '\r'
    if (text.empty()) continue;
    const std::vector<absl::string_view> fields = absl::StrSplit(text, ',');
    const auto where = [&](size_t column) {
      return absl::StrCat(path, ": line ", line_number, ", column ", column + 1, ": ");
    };

    // Parse every field; a non-number on the first line makes it a header.
    row.assign(fields.size(), 0.0);
    size_t bad_column = fields.size();
    for (size_t c = 0; c < fields.size() && bad_column == fields.size(); ++c) {
      if (!absl::SimpleAtod(fields[c], &row[c])) bad_column = c;
    }
    const bool first_line = !seen_first_line;
    seen_first_line = true;
    if (bad_column < fields.size()) {
      if (first_line) continue;  // header
      return absl::InvalidArgumentError(
          absl::StrCat(where(bad_column), "'", fields[bad_column], "' is not a number"));
    }
    for (size_t c = 0; c < fields.size(); ++c) {
      // Checked on the double: converting an out-of-range double to float is undefined.
      if (!std::isfinite(row[c]) || std::abs(row[c]) > std::numeric_limits<float>::max()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(c), "'", fields[c], "' is not a finite float"));
      }
    }

    if (num_columns == 0) {
      if (fields.size() < 2) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(fields.size() - 1), "only ", fields.size(),
                         " column; need at least 2 (features..., target)"));
      }
      num_columns = fields.size();
    } else if (fields.size() != num_columns) {
      const size_t column = std::min(fields.size(), num_columns);  // first missing or extra one
      return absl::InvalidArgumentError(absl::StrCat(where(column), "row has ", fields.size(),
                                                     " columns, the first data row has ",
                                                     num_columns));
    }
    for (size_t c = 0; c + 1 < num_columns; ++c) features.push_back(static_cast<float>(row[c]));
    targets.push_back(static_cast<float>(row[num_columns - 1]));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  if (targets.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no data rows"));

  const int64_t n = static_cast<int64_t>(targets.size());
  Dataset out;
  out.features = Tensor({n, static_cast<int64_t>(num_columns) - 1}, features);
  out.targets = Tensor({n, 1}, targets);
  return out;
}

}  // namespace psgrid
