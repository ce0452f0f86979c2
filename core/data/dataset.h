// In-memory training data and the loaders for MNIST-format directories.
//
//   ASSIGN_OR_RETURN(TrainTestData data, LoadMnistFormat("/usr/share/datasets/fashion-mnist"));
//   GatherBatch(data.train, sampler.Batch(step, rank), &x, &labels, &targets);
//
// A Dataset is plain data: safe to read from many threads, not to modify concurrently.
#ifndef PSGRID_CORE_DATA_DATASET_H_
#define PSGRID_CORE_DATA_DATASET_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace psgrid {

// N samples for classification (labels) or regression (targets).
struct Dataset {
  Tensor features;              // [N, sample dims...] float32; IDX pixels scaled to [0, 1] (v/255)
  std::vector<int32_t> labels;  // classification targets, size N; empty for regression
  Tensor targets;               // regression targets [N, 1]; empty (rank 0) for classification
  int num_classes = 0;          // classification: 1 + max label (0 for regression)

  // N (0 for a default-constructed Dataset).
  int64_t size() const;
  // features.shape() without the first dim.
  Shape sample_shape() const;
  // True when the targets are regression values (targets has shape [N, 1]).
  bool is_regression() const { return targets.rank() > 0; }
};

struct TrainTestData {
  Dataset train;
  Dataset test;
};

// Reads an images IDX file (rank 3: N, rows, cols -> features [N, rows, cols], scaled by 1/255)
// and a labels IDX file (rank 1: N). Errors from ReadIdxFile pass through; a wrong rank, or a
// label count that does not match the image count, is INVALID_ARGUMENT naming both files (and
// both counts).
absl::StatusOr<Dataset> ReadIdxImagesAndLabels(const std::string& images_path,
                                               const std::string& labels_path);

// Loads an MNIST-format directory: train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each with a ".gz" suffix (preferred when
// both exist) or plain. A missing file is NOT_FOUND naming the directory and the file, checked
// before anything is read. num_classes of both halves is the max of the two.
absl::StatusOr<TrainTestData> LoadMnistFormat(const std::string& dir);

// Copies the rows `indices` of `data` into x ([n, sample dims...], via Tensor::Resize so buffers
// are reused across calls) and into *labels (classification; resized to n) or *targets (regression;
// [n, 1]). The output the dataset does not use is left unchanged and may be null. Indices must be
// in [0, data.size()) (CHECKed: they come from our own sampler, not from input files).
void GatherBatch(const Dataset& data, std::span<const int64_t> indices, Tensor* x,
                 std::vector<int32_t>* labels, Tensor* targets);

}  // namespace psgrid

#endif  // PSGRID_CORE_DATA_DATASET_H_
