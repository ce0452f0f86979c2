// LoadJobData: the training and test sets that a job's data spec names.
//
//   fashion-mnist, mnist: the MNIST-format IDX directory at data.path.
//   csv: data.path for training and data.test_path for testing; without a test_path the last
//        10% of the rows (at least one) are held out for testing.
//   text: windows of data.sequence_length characters of the UTF-8 file at data.path and the
//        next character of each (core/data/text.h); the last 10% of the text validates.
#ifndef PSGRID_CORE_DATA_LOADER_H_
#define PSGRID_CORE_DATA_LOADER_H_

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "psgrid/v1/job.pb.h"

namespace psgrid {

absl::StatusOr<TrainTestData> LoadJobData(const v1::DataSpec& spec);

// What a model must fit, known without keeping the data.
struct DataShape {
  Shape sample_shape;    // per sample, e.g. {28, 28}
  int64_t output_width;  // classes (labels) or target values (regression)
  int64_t train_samples;
  bool regression;
};

// The shape of the data a spec names (reads it; the parameter server uses this at submit time
// to reject models that do not fit). Errors as LoadJobData.
absl::StatusOr<DataShape> DescribeJobData(const v1::DataSpec& spec);

// Number of values the model must output per sample: classes or target width.
int64_t OutputWidth(const Dataset& data);

}  // namespace psgrid

#endif  // PSGRID_CORE_DATA_LOADER_H_
