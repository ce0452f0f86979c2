// Reader for tabular regression data in CSV form. Stateless; safe to call from any thread.
#ifndef PSGRID_CORE_DATA_CSV_H_
#define PSGRID_CORE_DATA_CSV_H_

#include <string>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"

namespace psgrid {

// Reads lines "f1,f2,...,fk,target" (k >= 1) into features [N, k] and targets [N, 1]; labels
// stay empty and num_classes 0. The first non-blank line is a header, and skipped, when any of
// its fields is not a number. Blank lines are skipped, a trailing '\r' and spaces around fields
// are tolerated; quoting is not supported. Line and column numbers in errors are 1-based.
// Errors:
//   NOT_FOUND         the file cannot be opened;
//   INVALID_ARGUMENT  naming the file, line and column: a non-numeric or non-finite field (also
//                     one that overflows float), a row whose column count differs from the
//                     first data row's, fewer than 2 columns; naming the file: no data rows;
//   DATA_LOSS         a read error.
absl::StatusOr<Dataset> ReadCsv(const std::string& path);

}  // namespace psgrid

#endif  // PSGRID_CORE_DATA_CSV_H_
