#include "core/data/loader.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/data/csv.h"
#include "core/data/text.h"
#include "core/status_macros.h"

namespace psgrid {
namespace {

Dataset Slice(const Dataset& data, int64_t begin, int64_t end) {
  std::vector<int64_t> indices(end - begin);
  std::iota(indices.begin(), indices.end(), begin);
  Dataset out;
  out.num_classes = data.num_classes;
  GatherBatch(data, indices, &out.features, &out.labels, data.is_regression() ? &out.targets : nullptr);
  return out;
}

}  // namespace

absl::StatusOr<TrainTestData> LoadJobData(const v1::DataSpec& spec) {
  if (spec.dataset() == "fashion-mnist" || spec.dataset() == "mnist") {
    return LoadMnistFormat(spec.path());
  }
  if (spec.dataset() == "csv") {
    ASSIGN_OR_RETURN(Dataset train, ReadCsv(spec.path()));
    TrainTestData out;
    if (!spec.test_path().empty()) {
      ASSIGN_OR_RETURN(out.test, ReadCsv(spec.test_path()));
      if (out.test.sample_shape() != train.sample_shape()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "data.test_path: ", spec.test_path(), " has ", ShapeToString(out.test.sample_shape()),
            " features per row but ", spec.path(), " has ", ShapeToString(train.sample_shape())));
      }
      out.train = std::move(train);
      return out;
    }
    const int64_t n = train.size();
    if (n < 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data.path: ", spec.path(), " has ", n, " rows; at least 2 are needed to hold out a test part"));
    }
    const int64_t test_rows = std::max<int64_t>(1, n / 10);
    out.train = Slice(train, 0, n - test_rows);
    out.test = Slice(train, n - test_rows, n);
    return out;
  }
  if (spec.dataset() == "text") {
    ASSIGN_OR_RETURN(TextData text, LoadTextData(spec.path(), spec.sequence_length()));
    return std::move(text.data);
  }
  return absl::InvalidArgumentError(absl::StrCat("data.dataset: unknown data set '", spec.dataset(),
                                                 "'; expected fashion-mnist, mnist, csv or text"));
}

absl::StatusOr<DataShape> DescribeJobData(const v1::DataSpec& spec) {
  ASSIGN_OR_RETURN(TrainTestData data, LoadJobData(spec));
  return DataShape{data.train.sample_shape(), OutputWidth(data.train), data.train.size(),
                   data.train.is_regression()};
}

int64_t OutputWidth(const Dataset& data) {
  if (data.is_regression()) return data.targets.size() / std::max<int64_t>(1, data.size());
  return data.num_classes;
}

}  // namespace psgrid
