#include "core/optimizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace psgrid {
namespace {

void CheckRange(const Tensor& weights, const Tensor& grads, int64_t state_size, int64_t begin,
                int64_t end) {
  PSGRID_CHECK(weights.size() == grads.size() && weights.size() == state_size,
               "weights, grads and optimizer state differ in size");
  PSGRID_CHECK(0 <= begin && begin <= end && end <= weights.size(), "update range out of bounds");
}

class Sgd final : public Optimizer {
 public:
  explicit Sgd(float lr) : lr_(lr) {}
  void Update(Backend& backend, Tensor& weights, const Tensor& grads, float grad_scale,
              int64_t begin, int64_t end) override {
    CheckRange(weights, grads, weights.size(), begin, end);
    backend.SgdUpdate(end - begin, lr_, grad_scale, grads.data() + begin, weights.data() + begin);
  }
  std::vector<std::pair<std::string, Tensor*>> State() override { return {}; }

 private:
  float lr_;
};

class Momentum final : public Optimizer {
 public:
  Momentum(float lr, float momentum, int64_t n) : lr_(lr), momentum_(momentum), velocity_({n}) {}
  void Update(Backend& backend, Tensor& weights, const Tensor& grads, float grad_scale,
              int64_t begin, int64_t end) override {
    CheckRange(weights, grads, velocity_.size(), begin, end);
    backend.MomentumUpdate(end - begin, lr_, momentum_, grad_scale, grads.data() + begin,
                           velocity_.data() + begin, weights.data() + begin);
  }
  std::vector<std::pair<std::string, Tensor*>> State() override {
    return {{"velocity", &velocity_}};
  }

 private:
  float lr_;
  float momentum_;
  Tensor velocity_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const v1::OptimizerSpec& spec,
                                                           int64_t num_parameters) {
  const double lr = spec.learning_rate();
  if (!(lr > 0) || !std::isfinite(lr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer.learning_rate: must be a positive finite number, got ", lr));
  }
  if (spec.type() == "sgd") return std::make_unique<Sgd>(static_cast<float>(lr));
  if (spec.type() == "momentum") {
    if (!(spec.momentum() >= 0 && spec.momentum() < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer.momentum: must be in [0, 1), got ", spec.momentum()));
    }
    return std::make_unique<Momentum>(static_cast<float>(lr), static_cast<float>(spec.momentum()),
                                      num_parameters);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("optimizer.type: unknown optimizer '", spec.type(), "'; expected sgd or momentum"));
}

}  // namespace psgrid
