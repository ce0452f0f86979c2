// Recurrent layers (rnn, lstm, gru) and the embedding: gradient checks against a float64
// reference of the maths (full and truncated backpropagation through time), checks through the
// layers' own forward pass, a whole model, PyTorch parity (skipped without python3-torch), the
// "alley" next-character example trained with SGD, spec errors, and a speed figure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/backend/cpu_backend.h"
#include "core/layers/embedding.h"
#include "core/layers/layer.h"
#include "core/layers/recurrent.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "core/rng.h"
#include "tests/gradient_check.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::BuiltLayer;
using ::psgrid::testing::ProbeLoss;
using ::psgrid::testing::WriteRaw;
using ::testing::ElementsAre;

// ---- Specs -------------------------------------------------------------------------------------

struct Config {
  std::string type;             // rnn | lstm | gru
  std::string activation = "";  // rnn: tanh (default) | relu | sigmoid
  int units = 4;
  int truncation = 0;
  bool return_sequences = false;
  bool average_over_time = false;

  std::string Describe() const {
    return absl::StrCat(type, activation.empty() ? "" : "/", activation, " units ", units,
                        " truncation ", truncation, return_sequences ? " sequences" : " last",
                        average_over_time ? " averaged" : "");
  }
};

v1::LayerSpec SpecOf(const Config& c) {
  v1::LayerSpec s;
  s.set_type(c.type);
  s.set_units(c.units);
  if (!c.activation.empty()) s.set_activation(c.activation);
  s.set_truncation(c.truncation);
  s.set_return_sequences(c.return_sequences);
  s.set_average_over_time(c.average_over_time);
  return s;
}

// A built, bound layer with its own parameters; null (the failure recorded) when the spec does
// not build.
std::unique_ptr<BuiltLayer> NewLayer(const v1::LayerSpec& spec, const Shape& sample) {
  auto built = std::make_unique<BuiltLayer>();
  const absl::Status status = ::psgrid::testing::BuildLayer(spec, sample, built.get());
  EXPECT_OK(status);
  if (!status.ok()) return nullptr;
  return built;
}

// One forward and backward pass of a layer built for `cfg` on [steps, in]: its parameters
// uniform in ±param_range, then x [batch, steps, in] and the upstream gradient r uniform in ±1,
// drawn from `rng` in that order. Backward leaves the parameter gradients in
// built->params.grads(); `built` is null when the layer could not be built.
struct Pass {
  std::unique_ptr<BuiltLayer> built;
  Tensor x, y, r, dx;
};

Pass RandomPass(Backend& backend, Rng& rng, const Config& cfg, int64_t batch, int64_t steps,
                int64_t in, float param_range) {
  Pass pass;
  pass.built = NewLayer(SpecOf(cfg), {steps, in});
  if (pass.built == nullptr) return pass;
  for (float& v : pass.built->params.values().span()) v = rng.Uniform(-param_range, param_range);
  pass.x = Tensor({batch, steps, in});
  for (float& v : pass.x.span()) v = rng.Uniform(-1.0f, 1.0f);
  pass.built->layer->Forward(backend, pass.x, &pass.y);
  pass.r = Tensor(pass.y.shape());
  for (float& v : pass.r.span()) v = rng.Uniform(-1.0f, 1.0f);
  pass.built->layer->Backward(backend, pass.x, pass.y, pass.r, &pass.dx);
  return pass;
}

// ---- A float64 reference of the recurrences -----------------------------------------------------
//
// Written from the equations, step by step and sample by sample, independently of the layer's
// time-major GEMM formulation.

struct RefParams {
  std::vector<double> w_ih, w_hh, b_ih, b_hh;
};

RefParams ReadParams(const ParameterSet& p) {
  const auto get = [&](const char* suffix) {
    const int i = p.Find(std::string("0.") + suffix);
    EXPECT_GE(i, 0) << suffix;
    const ParamInfo& info = p.infos()[i];
    return std::vector<double>(p.values().data() + info.offset,
                               p.values().data() + info.offset + info.size);
  };
  return {get("weight_ih_l0"), get("weight_hh_l0"), get("bias_ih_l0"), get("bias_hh_l0")};
}

double Sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

struct RefState {
  std::vector<double> h, c;  // [batch, H]
};

// Runs steps [t0, t1) from `state` (updated), writing h_t into hs [batch, T, H].
void RefSteps(const Config& cfg, const RefParams& p, const std::vector<double>& x, int64_t batch,
              int64_t steps, int64_t in, int64_t t0, int64_t t1, RefState& state,
              std::vector<double>& hs) {
  const int64_t hidden = cfg.units;
  const int64_t g = cfg.type == "lstm" ? 4 : cfg.type == "gru" ? 3 : 1;
  std::vector<double> gx(g * hidden), gh(g * hidden);
  for (int64_t t = t0; t < t1; ++t) {
    for (int64_t b = 0; b < batch; ++b) {
      const double* xt = &x[(b * steps + t) * in];
      double* h = &state.h[b * hidden];
      for (int64_t r = 0; r < g * hidden; ++r) {
        double sx = p.b_ih[r], sh = p.b_hh[r];
        for (int64_t k = 0; k < in; ++k) sx += p.w_ih[r * in + k] * xt[k];
        for (int64_t k = 0; k < hidden; ++k) sh += p.w_hh[r * hidden + k] * h[k];
        gx[r] = sx;
        gh[r] = sh;
      }
      std::vector<double> next(hidden);
      for (int64_t j = 0; j < hidden; ++j) {
        if (cfg.type == "rnn") {
          const double a = gx[j] + gh[j];
          next[j] = cfg.activation == "relu"      ? std::max(a, 0.0)
                    : cfg.activation == "sigmoid" ? Sigmoid(a)
                                                  : std::tanh(a);
        } else if (cfg.type == "lstm") {
          const double i = Sigmoid(gx[j] + gh[j]);
          const double f = Sigmoid(gx[hidden + j] + gh[hidden + j]);
          const double gg = std::tanh(gx[2 * hidden + j] + gh[2 * hidden + j]);
          const double o = Sigmoid(gx[3 * hidden + j] + gh[3 * hidden + j]);
          double& c = state.c[b * hidden + j];
          c = f * c + i * gg;
          next[j] = o * std::tanh(c);
        } else {
          const double r = Sigmoid(gx[j] + gh[j]);
          const double z = Sigmoid(gx[hidden + j] + gh[hidden + j]);
          const double n = std::tanh(gx[2 * hidden + j] + r * gh[2 * hidden + j]);
          next[j] = (1 - z) * n + z * h[j];
        }
      }
      std::copy(next.begin(), next.end(), h);
      std::copy(next.begin(), next.end(), &hs[(b * steps + t) * hidden]);
    }
  }
}

// The chunks of truncated BPTT as recurrent.h defines them: [T−k, T), [T−2k, T−k), ...; one
// chunk [0, T) for full BPTT.
std::vector<std::pair<int64_t, int64_t>> Chunks(int64_t steps, int64_t k) {
  std::vector<std::pair<int64_t, int64_t>> chunks;
  if (k <= 0 || k >= steps) return {{0, steps}};
  for (int64_t end = steps; end > 0; end -= k)
    chunks.push_back({std::max<int64_t>(0, end - k), end});
  std::reverse(chunks.begin(), chunks.end());
  return chunks;
}

// The layer's problem for the reference: input, upstream weights r (L = Σ r ⊙ y), and the
// state entering each chunk on the unperturbed parameters and input (held constant: detached).
struct RefProblem {
  Config cfg;
  int64_t batch, steps, in;
  std::vector<double> x, r;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  std::vector<RefState> chunk_states;

  RefState Zero() const {
    return {std::vector<double>(batch * cfg.units, 0.0),
            std::vector<double>(batch * cfg.units, 0.0)};
  }

  // The outputs (y as the layer gives it) of a run carrying the state throughout.
  std::vector<double> Outputs(const RefParams& p) {
    RefState s = Zero();
    std::vector<double> hs(batch * steps * cfg.units);
    chunk_states.clear();
    for (const auto& [t0, t1] : chunks) {
      chunk_states.push_back(s);
      RefSteps(cfg, p, x, batch, steps, in, t0, t1, s, hs);
    }
    if (cfg.return_sequences) return hs;
    std::vector<double> last(batch * cfg.units);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < cfg.units; ++j) {
        last[b * cfg.units + j] = hs[(b * steps + steps - 1) * cfg.units + j];
      }
    }
    return last;
  }

  // L = Σ r ⊙ y with every chunk started from its recorded (detached) state.
  double ChunkedLoss(const RefParams& p, const std::vector<double>& xin) const {
    std::vector<double> hs(batch * steps * cfg.units);
    for (size_t c = 0; c < chunks.size(); ++c) {
      RefState s = chunk_states[c];
      RefSteps(cfg, p, xin, batch, steps, in, chunks[c].first, chunks[c].second, s, hs);
    }
    double loss = 0;
    const int64_t hidden = cfg.units;
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = cfg.return_sequences ? 0 : steps - 1; t < steps; ++t) {
        for (int64_t j = 0; j < hidden; ++j) {
          const int64_t ri = cfg.return_sequences ? (b * steps + t) * hidden + j : b * hidden + j;
          loss += r[ri] * hs[(b * steps + t) * hidden + j];
        }
      }
    }
    return loss;
  }
};

void ExpectGradNear(double analytic, double expected, const std::string& what) {
  EXPECT_NEAR(analytic, expected, 1e-4 + 2e-3 * std::abs(expected)) << what;
}

// The layer's forward against the reference, then its parameter and input gradients against
// central differences (in float64, step 1e-5) of the reference's chunked loss; with
// average_over_time the parameter gradients against those divided by T. Returns the layer's
// parameter gradients.
Tensor CheckAgainstReference(const Config& cfg, int64_t batch, int64_t steps, int64_t in,
                             uint64_t seed) {
  SCOPED_TRACE(cfg.Describe() + " T " + std::to_string(steps) + " batch " + std::to_string(batch));
  CpuBackend backend;
  Rng rng(seed);
  Pass pass = RandomPass(backend, rng, cfg, batch, steps, in, 0.6f);
  if (pass.built == nullptr) return {};
  ParameterSet& params = pass.built->params;
  const Tensor &x = pass.x, &y = pass.y, &r = pass.r, &dx = pass.dx;
  EXPECT_EQ(dx.shape(), x.shape());

  RefProblem ref{cfg,
                 batch,
                 steps,
                 in,
                 {x.span().begin(), x.span().end()},
                 {r.span().begin(), r.span().end()},
                 Chunks(steps, cfg.truncation),
                 {}};
  RefParams p = ReadParams(params);
  const std::vector<double> y_ref = ref.Outputs(p);
  EXPECT_EQ(static_cast<int64_t>(y_ref.size()), y.size());
  for (int64_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y_ref[i], 2e-6) << "y[" << i << "]";

  constexpr double kH = 1e-5;
  std::vector<double> xd = ref.x;
  for (int64_t i = 0; i < x.size(); ++i) {
    const double saved = xd[i];
    xd[i] = saved + kH;
    const double up = ref.ChunkedLoss(p, xd);
    xd[i] = saved - kH;
    const double down = ref.ChunkedLoss(p, xd);
    xd[i] = saved;
    ExpectGradNear(dx[i], (up - down) / (2 * kH), "dx[" + std::to_string(i) + "]");
  }
  const double param_scale = cfg.average_over_time ? 1.0 / static_cast<double>(steps) : 1.0;
  std::vector<double>* tensors[] = {&p.w_ih, &p.w_hh, &p.b_ih, &p.b_hh};
  const char* names[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"};
  for (int k = 0; k < 4; ++k) {
    const ParamInfo& info = params.infos()[params.Find(std::string("0.") + names[k])];
    std::vector<double>& w = *tensors[k];
    for (size_t i = 0; i < w.size(); ++i) {
      const double saved = w[i];
      w[i] = saved + kH;
      const double up = ref.ChunkedLoss(p, ref.x);
      w[i] = saved - kH;
      const double down = ref.ChunkedLoss(p, ref.x);
      w[i] = saved;
      ExpectGradNear(params.grads()[info.offset + static_cast<int64_t>(i)],
                     param_scale * (up - down) / (2 * kH),
                     std::string(names[k]) + "[" + std::to_string(i) + "]");
    }
  }
  return params.grads();
}

std::vector<Config> AllCells() {
  return {{"rnn", "tanh"}, {"rnn", "relu"}, {"rnn", "sigmoid"}, {"rnn", ""}, {"lstm"}, {"gru"}};
}

TEST(RecurrentGradients, FullBpttMatchesTheReferenceForEveryCell) {
  for (Config cfg : AllCells()) {
    for (bool sequences : {false, true}) {
      cfg.return_sequences = sequences;
      for (int64_t steps : {1, 4, 7}) CheckAgainstReference(cfg, 2, steps, 3, 100 + steps);
    }
  }
}

TEST(RecurrentGradients, TruncatedBpttIsTheGradientOfTheChunkedComputation) {
  for (Config cfg : AllCells()) {
    cfg.truncation = 3;
    for (bool sequences : {false, true}) {
      cfg.return_sequences = sequences;
      // T < k, T = k + 1 (the short chunk first), T = 7 = 1 + 3 + 3.
      for (int64_t steps : {1, 4, 7}) CheckAgainstReference(cfg, 2, steps, 3, 200 + steps);
    }
    cfg.truncation = 1;  // no gradient through the state at all
    cfg.return_sequences = true;
    CheckAgainstReference(cfg, 3, 5, 2, 300);
  }
}

TEST(RecurrentGradients, AverageOverTimeDividesTheParameterGradientByT) {
  for (Config cfg : AllCells()) {
    cfg.average_over_time = true;
    for (bool sequences : {false, true}) {
      cfg.return_sequences = sequences;
      CheckAgainstReference(cfg, 2, 4, 3, 400);
      cfg.truncation = 2;
      CheckAgainstReference(cfg, 2, 7, 3, 401);
      cfg.truncation = 0;
    }
  }
}

TEST(RecurrentGradients, TruncationChangesTheGradientOnlyWhenTExceedsK) {
  for (Config cfg : AllCells()) {
    for (bool sequences : {false, true}) {
      cfg.return_sequences = sequences;
      SCOPED_TRACE(cfg.Describe());
      Config truncated = cfg;
      truncated.truncation = 3;
      // T = 7 > k: different (checked on the whole parameter gradient).
      const Tensor full = CheckAgainstReference(cfg, 2, 7, 3, 500);
      const Tensor cut = CheckAgainstReference(truncated, 2, 7, 3, 500);
      ASSERT_EQ(full.size(), cut.size());
      double diff = 0;
      for (int64_t i = 0; i < full.size(); ++i)
        diff = std::max<double>(diff, std::abs(full[i] - cut[i]));
      EXPECT_GT(diff, 1e-3);
      // T = 3 = k: identical.
      const Tensor full3 = CheckAgainstReference(cfg, 2, 3, 3, 501);
      const Tensor cut3 = CheckAgainstReference(truncated, 2, 3, 3, 501);
      for (int64_t i = 0; i < full3.size(); ++i) EXPECT_EQ(full3[i], cut3[i]) << i;
    }
  }
}

// Independently of the reference: central differences through the layer's own float32
// forward pass (full BPTT; relu's kink is left to the float64 check above).
void CheckThroughOwnForward(const Config& cfg, int64_t batch, int64_t steps, int64_t in,
                            uint64_t seed) {
  SCOPED_TRACE(cfg.Describe() + " T " + std::to_string(steps));
  CpuBackend backend;
  Rng rng(seed);
  Pass pass = RandomPass(backend, rng, cfg, batch, steps, in, 0.6f);
  ASSERT_NE(pass.built, nullptr);
  constexpr float kStep = 1e-2f;
  const auto expect = [](double analytic, double numeric, const std::string& what) {
    EXPECT_NEAR(analytic, numeric, 2e-3 + 1e-2 * std::abs(numeric)) << what;
  };
  ::psgrid::testing::ExpectLayerGradientsMatchDifferences(
      backend, *pass.built->layer, pass.built->params, pass.x, pass.r, pass.dx, kStep, expect);
}

TEST(RecurrentGradients, FullBpttMatchesDifferencesOfTheLayersOwnForward) {
  for (Config cfg : std::vector<Config>{{"rnn", "tanh"}, {"rnn", "sigmoid"}, {"lstm"}, {"gru"}}) {
    for (bool sequences : {false, true}) {
      cfg.return_sequences = sequences;
      CheckThroughOwnForward(cfg, 3, 6, 2, 600);
    }
  }
}

// Backward without dx (a model's first layer) gives the same parameter gradients.
TEST(RecurrentGradients, NoInputGradientRequested) {
  for (const Config& base : AllCells()) {
    Config cfg = base;
    cfg.return_sequences = true;
    cfg.truncation = 2;
    CpuBackend backend;
    Rng rng(7);
    Pass pass = RandomPass(backend, rng, cfg, 2, 5, 3, 0.5f);
    ASSERT_NE(pass.built, nullptr);
    BuiltLayer& built = *pass.built;
    const Tensor with_dx = built.params.grads();
    built.layer->Backward(backend, pass.x, pass.y, pass.r, nullptr);
    for (int64_t i = 0; i < with_dx.size(); ++i) EXPECT_EQ(with_dx[i], built.params.grads()[i]);
  }
}

// Backward after a Forward on a batch of another size recomputes the state it needs.
TEST(RecurrentGradients, BackwardAfterAForwardOfAnotherBatchSize) {
  for (const Config& cfg : AllCells()) {
    SCOPED_TRACE(cfg.Describe());
    CpuBackend backend;
    auto built = NewLayer(SpecOf(cfg), {4, 3});
    ASSERT_NE(built, nullptr);
    Rng rng(8);
    for (float& v : built->params.values().span()) v = rng.Uniform(-0.5f, 0.5f);
    Tensor small({2, 4, 3}), x({3, 4, 3});
    for (float& v : small.span()) v = rng.Uniform(-1.0f, 1.0f);
    for (float& v : x.span()) v = rng.Uniform(-1.0f, 1.0f);
    Tensor y, dx, ignored;
    built->layer->Forward(backend, x, &y);
    Tensor r(y.shape());
    for (float& v : r.span()) v = rng.Uniform(-1.0f, 1.0f);
    built->layer->Backward(backend, x, y, r, &dx);
    const Tensor expected = built->params.grads();
    const Tensor expected_dx = dx;
    built->layer->Forward(backend, small, &ignored);
    built->layer->Backward(backend, x, y, r, &dx);
    for (int64_t i = 0; i < expected.size(); ++i) EXPECT_EQ(built->params.grads()[i], expected[i]);
    for (int64_t i = 0; i < dx.size(); ++i) EXPECT_EQ(dx[i], expected_dx[i]);
  }
}

// ---- Embedding --------------------------------------------------------------------------------

TEST(Embedding, LooksUpRowsAndSumsTheGradientOfRepeatedIds) {
  CpuBackend backend;
  v1::LayerSpec spec;
  spec.set_type("embedding");
  spec.set_vocab(5);
  spec.set_units(3);
  auto built = NewLayer(spec, {4});
  ASSERT_NE(built, nullptr);
  EXPECT_EQ(built->output, Shape({4, 3}));
  ASSERT_EQ(built->params.infos().size(), 1u);
  EXPECT_EQ(built->params.infos()[0].name, "0.weight");
  EXPECT_EQ(built->params.infos()[0].shape, Shape({5, 3}));
  Rng rng(11);
  for (float& v : built->params.values().span()) v = rng.Uniform(-1.0f, 1.0f);
  const float* w = built->params.values().data();
  // Id 2 three times, 0 three times, 4 twice; 1 and 3 never.
  Tensor x({2, 4}, std::vector<float>{2, 0, 2, 4, 0, 2, 4, 0});
  Tensor y;
  built->layer->Forward(backend, x, &y);
  EXPECT_EQ(y.shape(), Shape({2, 4, 3}));
  for (int64_t i = 0; i < x.size(); ++i) {
    for (int j = 0; j < 3; ++j) EXPECT_EQ(y[i * 3 + j], w[static_cast<int>(x[i]) * 3 + j]);
  }
  Tensor r(y.shape());
  for (float& v : r.span()) v = rng.Uniform(-1.0f, 1.0f);
  Tensor dx;
  built->layer->Backward(backend, x, y, r, &dx);
  EXPECT_EQ(dx.shape(), x.shape());
  for (float v : dx.span()) EXPECT_EQ(v, 0.0f);
  // Central differences of L = Σ r ⊙ y (linear in the weights: exact up to rounding).
  const Tensor grads = built->params.grads();
  for (int64_t i = 0; i < grads.size(); ++i) {
    float& wi = built->params.values()[i];
    const float saved = wi;
    wi = saved + 0.5f;
    const double up = ProbeLoss(backend, *built->layer, x, r, &y);
    wi = saved - 0.5f;
    const double down = ProbeLoss(backend, *built->layer, x, r, &y);
    wi = saved;
    EXPECT_NEAR(grads[i], (up - down) / 1.0, 1e-5) << "weight[" << i << "]";
  }
  // Rows 1 and 3 were never looked up; row 2's is the sum of three upstream rows.
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(grads[1 * 3 + j], 0.0f);
    EXPECT_EQ(grads[3 * 3 + j], 0.0f);
    EXPECT_NEAR(grads[2 * 3 + j], r[0 * 3 + j] + r[2 * 3 + j] + r[5 * 3 + j], 1e-6);
  }
  EXPECT_EQ(static_cast<EmbeddingLayer&>(*built->layer).last_invalid_position(), -1);
}

TEST(Embedding, InvalidIdsAreNeverUsedAsIndices) {
  CpuBackend backend;
  EmbeddingLayer layer(4, 2);
  ParameterSet params;
  ASSERT_OK(layer.Build({6}, "0", &params));
  params.Allocate();
  layer.Bind(&params);
  for (float& v : params.values().span()) v = 1.0f;
  Tensor x({1, 6}, std::vector<float>{1, 4, -1, 2.5f, std::numeric_limits<float>::quiet_NaN(), 3});
  Tensor y;
  layer.Forward(backend, x, &y);
  EXPECT_EQ(layer.last_invalid_position(), 1);
  EXPECT_EQ(layer.invalid_batches(), 1);
  const float expected[] = {1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1};
  for (int i = 0; i < 12; ++i) EXPECT_EQ(y[i], expected[i]) << i;
  Tensor dy(y.shape());
  for (float& v : dy.span()) v = 1.0f;
  layer.Backward(backend, x, y, dy, nullptr);
  const float grad[] = {0, 0, 1, 1, 0, 0, 1, 1};  // ids 1 and 3 only
  for (int i = 0; i < 8; ++i) EXPECT_EQ(params.grads()[i], grad[i]) << i;
  // A clean batch clears the position but not the count.
  Tensor ok({1, 6}, std::vector<float>{0, 1, 2, 3, 3, 0});
  layer.Forward(backend, ok, &y);
  EXPECT_EQ(layer.last_invalid_position(), -1);
  EXPECT_EQ(layer.invalid_batches(), 1);
}

// ---- Through a Model --------------------------------------------------------------------------

v1::ModelSpec EmbeddingLstmDense(int vocab, int embed, int hidden, int classes) {
  v1::ModelSpec spec;
  v1::LayerSpec* e = spec.add_layers();
  e->set_type("embedding");
  e->set_vocab(vocab);
  e->set_units(embed);
  v1::LayerSpec* l = spec.add_layers();
  l->set_type("lstm");
  l->set_units(hidden);
  v1::LayerSpec* d = spec.add_layers();
  d->set_type("dense");
  d->set_units(classes);
  spec.set_loss("softmax_cross_entropy");
  spec.mutable_init()->set_scheme("xavier");
  spec.mutable_init()->set_seed(3);
  return spec;
}

TEST(RecurrentModel, EmbeddingLstmDenseNamesParametersAsTorch) {
  CpuBackend backend;
  auto model = Model::Create(EmbeddingLstmDense(7, 5, 6, 10), {9}, 10, &backend);
  ASSERT_OK(model);
  EXPECT_THAT(::psgrid::testing::ParameterNames((*model)->parameters()),
              ElementsAre("0.weight", "1.weight_ih_l0", "1.weight_hh_l0", "1.bias_ih_l0",
                          "1.bias_hh_l0", "2.weight", "2.bias"));
  EXPECT_THAT(::psgrid::testing::ParameterShapes((*model)->parameters()),
              ElementsAre(Shape{7, 5}, Shape{24, 5}, Shape{24, 6}, Shape{24}, Shape{24},
                          Shape{10, 6}, Shape{10}));
  const ModelSummary summary = (*model)->Summary();
  ASSERT_EQ(summary.layers.size(), 3u);
  EXPECT_EQ(summary.layers[0].output_shape, Shape({9, 5}));
  EXPECT_EQ(summary.layers[1].type, "lstm");
  EXPECT_EQ(summary.layers[1].output_shape, Shape({6}));
  EXPECT_EQ(summary.layers[1].parameters, 24 * 5 + 24 * 6 + 48);
}

// Every parameter of the model whose name does not start with one of `skip` against central
// differences of the model's mean loss.
void CheckModelGradients(const v1::ModelSpec& spec, int64_t steps, int64_t vocab, int64_t classes,
                         const std::vector<std::string>& skip = {}) {
  CpuBackend backend;
  auto model_or = Model::Create(spec, {steps}, classes, &backend);
  ASSERT_OK(model_or);
  Model& model = **model_or;
  Rng rng(21);
  for (float& v : model.parameters().values().span()) v = rng.Uniform(-0.8f, 0.8f);
  const int64_t batch = 3;
  Tensor x({batch, steps});
  for (float& v : x.span()) v = static_cast<float>(rng.Below(vocab));
  std::vector<int32_t> labels(batch);
  for (int32_t& l : labels) l = static_cast<int32_t>(rng.Below(classes));
  Targets targets;
  targets.labels = labels;
  ASSERT_OK(model.ComputeGradients(x, targets));
  constexpr double kStep = 1e-2;
  const int64_t checked = ::psgrid::testing::ExpectModelGradientsMatchDifferences(
      model, x, targets, kStep, [&](const std::string& name) {
        return std::any_of(skip.begin(), skip.end(),
                           [&](const std::string& p) { return name.rfind(p, 0) == 0; });
      });
  EXPECT_GT(checked, 0);
}

TEST(RecurrentModel, WholeModelGradientCheck) {
  // embedding → lstm (last step) → dense 10 on token ids [T].
  CheckModelGradients(EmbeddingLstmDense(5, 3, 4, 10), 6, 5, 10);

  // embedding → lstm (sequences) → gru (last step) → dense: the gradient flows through two
  // recurrent layers' input gradients into the embedding.
  v1::ModelSpec deep = EmbeddingLstmDense(5, 3, 4, 10);
  deep.mutable_layers(1)->set_return_sequences(true);
  *deep.mutable_layers()->Add() = deep.layers(2);
  deep.mutable_layers(2)->Clear();
  deep.mutable_layers(2)->set_type("gru");
  deep.mutable_layers(2)->set_units(4);
  CheckModelGradients(deep, 4, 5, 10);

  // With truncation the lstm's gradient (and the embedding's below it) is the chunked one,
  // checked against the reference above; the layers above it still get the exact gradient.
  deep.mutable_layers(1)->set_truncation(2);
  CheckModelGradients(deep, 4, 5, 10, {"0.", "1."});
}

// ---- PyTorch parity -----------------------------------------------------------------------------

void ExpectMatchesTorch(const float* ours, int64_t n, const std::string& path,
                        const std::string& what) {
  const std::vector<float> theirs = ::psgrid::testing::ReadRaw<float>(path);
  ASSERT_EQ(static_cast<int64_t>(theirs.size()), n) << what << " (" << path << ")";
  double scale = 0;  // the tensor's largest magnitude: an absolute floor for tiny elements
  for (float v : theirs) scale = std::max<double>(scale, std::abs(v));
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(ours[i], theirs[i], 1e-4 * std::abs(theirs[i]) + 1e-6 * scale + 1e-7)
        << what << "[" << i << "]";
  }
}

struct TorchCase {
  std::string name;
  Config cfg;
  int64_t batch = 0, steps = 0, in = 0;
  Pass run;  // filled in by the test; its r is the dy handed to torch
};

TorchCase MakeCase(const std::string& name, const Config& cfg, int64_t batch, int64_t steps,
                   int64_t in) {
  TorchCase c;
  c.name = name;
  c.cfg = cfg;
  c.batch = batch;
  c.steps = steps;
  c.in = in;
  return c;
}

TEST(TorchParity, RnnLstmGruAndEmbeddingMatchTorch) {
  if (!::psgrid::testing::TorchAvailable()) {
    GTEST_SKIP() << "python3-torch is not installed; skipping the PyTorch comparison";
  }
  const std::string dir = ::psgrid::testing::MakeTempDir("psgrid_rnn_torch");
  ASSERT_FALSE(dir.empty());
  std::vector<TorchCase> cases;
  cases.push_back(MakeCase("rnn_tanh_seq", {"rnn", "tanh", 6, 0, true}, 3, 5, 4));
  cases.push_back(MakeCase("rnn_tanh_last", {"rnn", "", 5, 0, false}, 2, 7, 3));
  cases.push_back(MakeCase("rnn_relu_seq", {"rnn", "relu", 6, 0, true}, 3, 5, 4));
  cases.push_back(MakeCase("rnn_relu_last", {"rnn", "relu", 5, 0, false}, 4, 6, 3));
  cases.push_back(MakeCase("lstm_seq", {"lstm", "", 6, 0, true}, 3, 5, 4));
  cases.push_back(MakeCase("lstm_last", {"lstm", "", 16, 0, false}, 4, 9, 7));
  cases.push_back(MakeCase("gru_seq", {"gru", "", 6, 0, true}, 3, 5, 4));
  cases.push_back(MakeCase("gru_last", {"gru", "", 16, 0, false}, 4, 9, 7));
  std::vector<std::string> manifest;
  CpuBackend backend;
  Rng rng(1234);
  for (TorchCase& c : cases) {
    c.run = RandomPass(backend, rng, c.cfg, c.batch, c.steps, c.in, 0.5f);
    ASSERT_NE(c.run.built, nullptr);
    ParameterSet& p = c.run.built->params;
    std::vector<std::string> params;
    for (int i = 0; i < static_cast<int>(p.infos().size()); ++i) {
      const ParamInfo& info = p.infos()[i];
      const std::string name = info.name.substr(2);  // "0.weight_ih_l0" → "weight_ih_l0"
      params.push_back(absl::StrCat("{\"name\": \"", name, "\", \"shape\": [",
                                    absl::StrJoin(info.shape, ", "), "]}"));
      WriteRaw(dir + "/" + c.name + "_" + name + ".bin", p.Value(i).data(), info.size);
    }
    WriteRaw(dir + "/" + c.name + "_x.bin", c.run.x.data(), c.run.x.size());
    WriteRaw(dir + "/" + c.name + "_dy.bin", c.run.r.data(), c.run.r.size());
    manifest.push_back(absl::StrCat(
        "{\"name\": \"", c.name, "\", \"type\": \"", c.cfg.type, "\", \"activation\": \"",
        c.cfg.activation.empty() ? "tanh" : c.cfg.activation, "\", \"units\": ", c.cfg.units,
        ", \"input_size\": ", c.in,
        ", \"return_sequences\": ", c.cfg.return_sequences ? "true" : "false", ", \"x_shape\": [",
        c.batch, ", ", c.steps, ", ", c.in, "], \"params\": [", absl::StrJoin(params, ", "), "]}"));
  }
  // The embedding: repeated ids, every row but one used.
  EmbeddingLayer embedding(11, 5);
  ParameterSet eparams;
  ASSERT_OK(embedding.Build({8}, "0", &eparams));
  eparams.Allocate();
  embedding.Bind(&eparams);
  for (float& v : eparams.values().span()) v = rng.Uniform(-1.0f, 1.0f);
  Tensor ids({3, 8});
  for (float& v : ids.span()) v = static_cast<float>(rng.Below(10));
  Tensor ey, edy(Shape{3, 8, 5});
  embedding.Forward(backend, ids, &ey);
  for (float& v : edy.span()) v = rng.Uniform(-1.0f, 1.0f);
  embedding.Backward(backend, ids, ey, edy, nullptr);
  WriteRaw(dir + "/emb_weight.bin", eparams.Value(0).data(), eparams.infos()[0].size);
  WriteRaw(dir + "/emb_x.bin", ids.data(), ids.size());
  WriteRaw(dir + "/emb_dy.bin", edy.data(), edy.size());
  manifest.push_back(
      "{\"name\": \"emb\", \"type\": \"embedding\", \"vocab\": 11, \"units\": 5, "
      "\"x_shape\": [3, 8]}");
  std::ofstream(dir + "/manifest.json") << "{\"cases\": [" << absl::StrJoin(manifest, ", ") << "]}";

  ASSERT_EQ(std::system(("/usr/bin/python3 tests/torch_rnn_check.py " + dir).c_str()), 0)
      << "tests/torch_rnn_check.py failed on " << dir;

  for (TorchCase& c : cases) {
    SCOPED_TRACE(c.name);
    const Pass& run = c.run;
    ExpectMatchesTorch(run.y.data(), run.y.size(), dir + "/" + c.name + "_out_y.bin", "y");
    ExpectMatchesTorch(run.dx.data(), run.dx.size(), dir + "/" + c.name + "_out_dx.bin", "dx");
    ParameterSet& p = run.built->params;
    for (int i = 0; i < static_cast<int>(p.infos().size()); ++i) {
      const std::string name = p.infos()[i].name.substr(2);
      ExpectMatchesTorch(p.Grad(i).data(), p.infos()[i].size,
                         dir + "/" + c.name + "_out_grad_" + name + ".bin", name);
    }
  }
  ExpectMatchesTorch(ey.data(), ey.size(), dir + "/emb_out_y.bin", "embedding y");
  ExpectMatchesTorch(eparams.Grad(0).data(), eparams.infos()[0].size,
                     dir + "/emb_out_grad_weight.bin", "embedding weight grad");
}

// ---- The "alley" example --------------------------------------------------------------------
//
// The next character of "alley" from each prefix: a → l, al → l, all → e, alle → y. Vocabulary
// {a, l, e, y} one-hot; each prefix is one sample, left-padded with zero vectors to 4 steps; an
// rnn (tanh, 6 units, last step) and a dense layer of 4 logits, trained with plain SGD.
TEST(AlleyExample, RnnLearnsTheNextCharacter) {
  CpuBackend backend;
  v1::ModelSpec spec;
  v1::LayerSpec* rnn = spec.add_layers();
  rnn->set_type("rnn");
  rnn->set_units(6);
  rnn->set_activation("tanh");
  v1::LayerSpec* dense = spec.add_layers();
  dense->set_type("dense");
  dense->set_units(4);
  spec.set_loss("softmax_cross_entropy");
  spec.mutable_init()->set_scheme("xavier");
  spec.mutable_init()->set_seed(5);
  constexpr int kSteps = 4, kVocab = 4;
  auto model_or = Model::Create(spec, {kSteps, kVocab}, kVocab, &backend);
  ASSERT_OK(model_or);
  Model& model = **model_or;

  const std::string word = "alley";
  const auto id = [](char ch) { return std::string("aley").find(ch); };
  Tensor x({kSteps, kSteps, kVocab});  // [prefix, step, one-hot]
  std::vector<int32_t> labels;
  for (int len = 1; len <= kSteps; ++len) {
    const int sample = len - 1;
    for (int i = 0; i < len; ++i) {
      const int step = kSteps - len + i;  // left padding
      x[(sample * kSteps + step) * kVocab + static_cast<int>(id(word[i]))] = 1.0f;
    }
    labels.push_back(static_cast<int32_t>(id(word[len])));
  }
  EXPECT_THAT(labels, ElementsAre(1, 1, 2, 3));  // l, l, e, y
  Targets targets;
  targets.labels = labels;

  v1::OptimizerSpec opt_spec;
  opt_spec.set_type("sgd");
  opt_spec.set_learning_rate(0.5);
  auto opt_or = CreateOptimizer(opt_spec, model.parameters().total_size());
  ASSERT_OK(opt_or);
  Optimizer& opt = **opt_or;
  double loss = 0;
  for (int step = 0; step < 400; ++step) {
    auto r = model.ComputeGradients(x, targets);
    ASSERT_OK(r);
    loss = r->loss;
    ASSERT_TRUE(opt.Step(backend, model.parameters().values(), model.parameters().grads()));
  }
  EXPECT_LT(loss, 0.05);
  auto out = model.Forward(x);
  ASSERT_OK(out);
  const char* prefixes[] = {"a", "al", "all", "alle"};
  for (int s = 0; s < kSteps; ++s) {
    const float* logits = (*out)->data() + s * kVocab;
    const int predicted = static_cast<int>(std::max_element(logits, logits + kVocab) - logits);
    EXPECT_EQ("aley"[predicted], word[s + 1]) << "after '" << prefixes[s] << "'";
  }
  std::printf("alley: loss %.4f after 400 SGD steps\n", loss);
}

// ---- Spec errors --------------------------------------------------------------------------------

TEST(RecurrentSpec, ErrorsNameTheField) {
  const auto create = [](const std::string& yaml_type,
                         const std::function<void(v1::LayerSpec&)>& set) {
    v1::LayerSpec s;
    s.set_type(yaml_type);
    s.set_units(4);
    s.set_vocab(0);
    set(s);
    return CreateLayer(s, "model.layers[1]");
  };
  EXPECT_STATUS(create("lstm", [](v1::LayerSpec& s) { s.set_units(0); }),
                absl::StatusCode::kInvalidArgument,
                "model.layers[1].units: an lstm layer needs units >= 1, got 0");
  EXPECT_STATUS(create("gru", [](v1::LayerSpec& s) { s.set_units(-2); }),
                absl::StatusCode::kInvalidArgument,
                "model.layers[1].units: a gru layer needs units >= 1, got -2");
  EXPECT_STATUS(create("rnn", [](v1::LayerSpec& s) { s.set_activation("softmax"); }),
                absl::StatusCode::kInvalidArgument,
                "model.layers[1].activation: an rnn layer needs tanh (the default), relu or "
                "sigmoid, got 'softmax'");
  EXPECT_STATUS(create("lstm", [](v1::LayerSpec& s) { s.set_activation("tanh"); }),
                absl::StatusCode::kInvalidArgument,
                "model.layers[1].activation: an lstm layer takes no activation");
  EXPECT_STATUS(create("gru", [](v1::LayerSpec& s) { s.set_activation("relu"); }),
                absl::StatusCode::kInvalidArgument,
                "model.layers[1].activation: a gru layer takes no activation");
  EXPECT_STATUS(create("rnn", [](v1::LayerSpec& s) { s.set_truncation(-1); }),
                absl::StatusCode::kInvalidArgument,
                "model.layers[1].truncation: an rnn layer needs truncation >= 0");
  EXPECT_STATUS(create("lstm", [](v1::LayerSpec& s) { s.set_vocab(3); }),
                absl::StatusCode::kInvalidArgument,
                "model.layers[1].vocab: an lstm layer takes no vocab");
  EXPECT_STATUS(create("embedding", [](v1::LayerSpec& s) {}), absl::StatusCode::kInvalidArgument,
                "model.layers[1].vocab: an embedding layer needs vocab >= 1, got 0");
  EXPECT_STATUS(create("embedding",
                       [](v1::LayerSpec& s) {
                         s.set_vocab(5);
                         s.set_units(0);
                       }),
                absl::StatusCode::kInvalidArgument,
                "model.layers[1].units: an embedding layer needs units >= 1, got 0");
  EXPECT_STATUS(create("embedding",
                       [](v1::LayerSpec& s) {
                         s.set_vocab(5);
                         s.set_truncation(2);
                       }),
                absl::StatusCode::kInvalidArgument,
                "model.layers[1].truncation: an embedding layer takes no truncation");
  for (const char* type : {"rnn", "lstm", "gru"}) {
    EXPECT_OK(create(type, [](v1::LayerSpec& s) {
      s.set_truncation(3);
      s.set_return_sequences(true);
      s.set_average_over_time(true);
    }));
  }
  EXPECT_OK(create("rnn", [](v1::LayerSpec& s) { s.set_activation("sigmoid"); }));
  EXPECT_OK(create("embedding", [](v1::LayerSpec& s) { s.set_vocab(1); }));
  EXPECT_STATUS(create("lstmm", [](v1::LayerSpec& s) {}), absl::StatusCode::kInvalidArgument,
                "rnn, lstm, gru, embedding");
}

TEST(RecurrentSpec, InputShapeErrors) {
  CpuBackend backend;
  v1::ModelSpec spec;
  v1::LayerSpec* l = spec.add_layers();
  l->set_type("lstm");
  l->set_units(4);
  spec.add_layers()->set_type("dense");
  spec.mutable_layers(1)->set_units(3);
  spec.set_loss("softmax_cross_entropy");
  spec.mutable_init()->set_scheme("he");
  EXPECT_STATUS(Model::Create(spec, {10}, 3, &backend), absl::StatusCode::kInvalidArgument,
                "model.layers[0]: an lstm layer needs a per-sample input [steps, features] "
                "(token ids need an embedding layer first), got [10]");
  EXPECT_OK(Model::Create(spec, {10, 2}, 3, &backend));
}

}  // namespace
}  // namespace psgrid
