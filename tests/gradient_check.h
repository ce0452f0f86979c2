// Numerical gradient checks shared by the tests: central differences of a layer's probe loss
// L = Σ r ⊙ layer(x), and of a model's loss, against the analytic gradients; and a layer built
// on its own for them.
#ifndef PSGRID_TESTS_GRADIENT_CHECK_H_
#define PSGRID_TESTS_GRADIENT_CHECK_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "core/backend/backend.h"
#include "core/layers/layer.h"
#include "core/loss.h"
#include "core/model.h"
#include "core/parameters.h"
#include "core/tensor.h"
#include "gtest/gtest.h"

namespace psgrid::testing {

// A layer made from its spec alone, its parameters ("0.…") allocated and bound. The layer holds
// the address of `params`: a BuiltLayer stays where it was built.
struct BuiltLayer {
  std::unique_ptr<Layer> layer;
  ParameterSet params;
  Shape output;  // per sample
};

// Builds `spec` (named "layer" in errors; `seed` seeds dropout's masks) for per-sample input
// `sample` into *out.
inline absl::Status BuildLayer(const v1::LayerSpec& spec, const Shape& sample, BuiltLayer* out,
                               uint64_t seed = 0) {
  auto layer = CreateLayer(spec, "layer", seed);
  if (!layer.ok()) return layer.status();
  out->layer = std::move(*layer);
  auto shape = out->layer->Build(sample, "0", &out->params);
  if (!shape.ok()) return shape.status();
  out->output = *shape;
  out->params.Allocate();
  out->layer->Bind(&out->params);
  return absl::OkStatus();
}

// Compares an analytic derivative with its difference quotient; `what` names the element.
using GradientExpectation =
    std::function<void(double analytic, double numeric, const std::string& what)>;

// |analytic − numeric| <= 2e-3 + 1e-2·max(|analytic|, |numeric|).
inline void ExpectGradientClose(double analytic, double numeric, const std::string& what) {
  const double tol = 2e-3 + 1e-2 * std::max(std::abs(analytic), std::abs(numeric));
  EXPECT_NEAR(analytic, numeric, tol) << what;
}

// L = Σ r ⊙ layer(x) in double, so ∂L/∂y = r; the layer's output is left in *y.
inline double ProbeLoss(Backend& backend, Layer& layer, const Tensor& x, const Tensor& r,
                        Tensor* y) {
  layer.Forward(backend, x, y);
  double sum = 0;
  for (int64_t i = 0; i < y->size(); ++i) sum += static_cast<double>((*y)[i]) * r[i];
  return sum;
}

// The gradients the layer's Backward(x, y, r) gave, `dx` and params.grads(), against central
// differences of ProbeLoss: every element of x, then every parameter, moved by ±step and put
// back, each pair handed to `expect` as "dx[i]" or "<parameter name>[i]". `w ± step` and
// `2·step` are computed in Real (float or double, as the caller's step is). `before_forward`,
// when set, runs before every forward pass (e.g. to replay dropout's mask).
template <typename Real>
void ExpectLayerGradientsMatchDifferences(Backend& backend, Layer& layer, ParameterSet& params,
                                          Tensor& x, const Tensor& r, const Tensor& dx, Real step,
                                          const GradientExpectation& expect = ExpectGradientClose,
                                          const std::function<void(Layer&)>& before_forward = {}) {
  const Tensor analytic_params = params.grads();
  Tensor y;
  const auto loss = [&]() {
    if (before_forward) before_forward(layer);
    return ProbeLoss(backend, layer, x, r, &y);
  };
  for (int64_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = saved + step;
    const double up = loss();
    x[i] = saved - step;
    const double down = loss();
    x[i] = saved;
    expect(dx[i], (up - down) / (2 * step), "dx[" + std::to_string(i) + "]");
  }
  for (const ParamInfo& info : params.infos()) {
    for (int64_t i = info.offset; i < info.offset + info.size; ++i) {
      float& w = params.values()[i];
      const float saved = w;
      w = saved + step;
      const double up = loss();
      w = saved - step;
      const double down = loss();
      w = saved;
      expect(analytic_params[i], (up - down) / (2 * step),
             info.name + "[" + std::to_string(i - info.offset) + "]");
    }
  }
}

// The model's parameter gradients, as ComputeGradients(x, targets) left them, against central
// differences (±step) of Evaluate(x, targets)'s loss, each within 2e-4 + 2e-2·|numeric|; the
// parameters `skip` accepts (by name) are left out. Returns how many entries were checked.
inline int64_t ExpectModelGradientsMatchDifferences(
    Model& model, const Tensor& x, const Targets& targets, double step,
    const std::function<bool(const std::string& name)>& skip = {}) {
  const Tensor analytic = model.parameters().grads();
  int64_t checked = 0;
  for (const ParamInfo& info : model.parameters().infos()) {
    if (skip && skip(info.name)) continue;
    for (int64_t i = info.offset; i < info.offset + info.size; ++i) {
      float& w = model.parameters().values()[i];
      const float saved = w;
      w = saved + step;
      const double up = model.Evaluate(x, targets)->loss;
      w = saved - step;
      const double down = model.Evaluate(x, targets)->loss;
      w = saved;
      const double numeric = (up - down) / (2 * step);
      EXPECT_NEAR(analytic[i], numeric, 2e-4 + 2e-2 * std::abs(numeric))
          << info.name << "[" << i - info.offset << "]";
      ++checked;
    }
  }
  return checked;
}

}  // namespace psgrid::testing

#endif  // PSGRID_TESTS_GRADIENT_CHECK_H_
