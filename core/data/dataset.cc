#include "core/data/dataset.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/data/idx.h"
#include "core/status_macros.h"

namespace psgrid {
namespace {

// Returns dir/name.gz if it exists, else dir/name if it exists, else NOT_FOUND.
absl::StatusOr<std::string> FindMnistFile(const std::string& dir, const std::string& name) {
  const std::filesystem::path base = std::filesystem::path(dir) / name;
  for (const std::string& candidate : {base.string() + ".gz", base.string()}) {
    std::error_code ec;
    if (std::filesystem::exists(candidate, ec)) return candidate;
  }
  return absl::NotFoundError(
      absl::StrCat(dir, ": missing MNIST-format file ", name, " (or ", name, ".gz)"));
}

}  // namespace

int64_t Dataset::size() const { return features.rank() > 0 ? features.dim(0) : 0; }

Shape Dataset::sample_shape() const {
  const Shape& shape = features.shape();
  return shape.empty() ? Shape{} : Shape(shape.begin() + 1, shape.end());
}

absl::StatusOr<Dataset> ReadIdxImagesAndLabels(const std::string& images_path,
                                               const std::string& labels_path) {
  ASSIGN_OR_RETURN(IdxArray images, ReadIdxFile(images_path));
  ASSIGN_OR_RETURN(IdxArray labels, ReadIdxFile(labels_path));
  if (images.dims.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(images_path, ": images must have rank 3 (N, rows, cols), got rank ",
                     images.dims.size(), " (labels: ", labels_path, ")"));
  }
  if (labels.dims.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(labels_path, ": labels must have rank 1 (N), got rank ", labels.dims.size(),
                     " (images: ", images_path, ")"));
  }
  if (labels.dims[0] != images.dims[0]) {
    return absl::InvalidArgumentError(absl::StrCat("label count ", labels.dims[0], " in ",
                                                   labels_path, " does not match image count ",
                                                   images.dims[0], " in ", images_path));
  }

  Dataset out;
  out.features = Tensor(Shape(images.dims.begin(), images.dims.end()));
  float* dst = out.features.data();
  for (size_t i = 0; i < images.data.size(); ++i) {
    dst[i] = static_cast<float>(images.data[i]) / 255.0f;
  }
  out.labels.assign(labels.data.begin(), labels.data.end());
  const auto max_label = std::max_element(labels.data.begin(), labels.data.end());
  out.num_classes = max_label == labels.data.end() ? 0 : *max_label + 1;
  return out;
}

absl::StatusOr<TrainTestData> LoadMnistFormat(const std::string& dir) {
  static constexpr std::array<const char*, 4> kNames = {
      "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
      "t10k-labels-idx1-ubyte"};
  std::array<std::string, 4> paths;
  for (size_t i = 0; i < kNames.size(); ++i) {
    ASSIGN_OR_RETURN(paths[i], FindMnistFile(dir, kNames[i]));
  }
  TrainTestData out;
  ASSIGN_OR_RETURN(out.train, ReadIdxImagesAndLabels(paths[0], paths[1]));
  ASSIGN_OR_RETURN(out.test, ReadIdxImagesAndLabels(paths[2], paths[3]));
  const int num_classes = std::max(out.train.num_classes, out.test.num_classes);
  out.train.num_classes = num_classes;
  out.test.num_classes = num_classes;
  return out;
}

void GatherBatch(const Dataset& data, std::span<const int64_t> indices, Tensor* x,
                 std::vector<int32_t>* labels, Tensor* targets) {
  PSGRID_CHECK(x != nullptr, "GatherBatch needs an output tensor");
  const int64_t n = static_cast<int64_t>(indices.size());
  const int64_t num_samples = data.size();
  Shape shape = data.sample_shape();
  const int64_t row = NumElements(shape);
  shape.insert(shape.begin(), n);
  x->Resize(std::move(shape));

  const float* src = data.features.data();
  float* dst = x->data();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t index = indices[i];
    PSGRID_CHECK(index >= 0 && index < num_samples, "GatherBatch index out of range");
    if (row > 0) std::memcpy(dst + i * row, src + index * row, row * sizeof(float));
  }

  if (data.is_regression()) {
    PSGRID_CHECK(targets != nullptr, "GatherBatch needs a targets tensor for regression data");
    targets->Resize({n, 1});
    for (int64_t i = 0; i < n; ++i) (*targets)[i] = data.targets[indices[i]];
  } else {
    PSGRID_CHECK(labels != nullptr, "GatherBatch needs a labels vector for classification data");
    labels->resize(n);
    for (int64_t i = 0; i < n; ++i) (*labels)[i] = data.labels[indices[i]];
  }
}

}  // namespace psgrid
