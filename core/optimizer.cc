#include "core/optimizer.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace psgrid {
namespace {

void CheckRange(const Tensor& weights, const Tensor& grads, int64_t begin, int64_t end) {
  PSGRID_CHECK(weights.size() == grads.size(), "weights and grads differ in size");
  PSGRID_CHECK(0 <= begin && begin <= end && end <= weights.size(), "update range out of bounds");
}

// One optimizer: its kernel over a range, its state buffers (arena-shaped, named as torch
// names them in its state dict).
class RuleOptimizer final : public Optimizer {
 public:
  enum class Kind { kSgd, kMomentum, kNesterov, kAdagrad, kRmsprop, kAdam, kAdamW };

  RuleOptimizer(Kind kind, UpdateRule rule, double lr_decay, v1::ScheduleSpec schedule,
                int64_t cosine_steps, int64_t n, DeviceMemory* memory)
      : kind_(kind),
        base_(rule),
        rule_(rule),
        lr_decay_(lr_decay),
        schedule_(std::move(schedule)),
        cosine_steps_(cosine_steps) {
    auto add = [&](const char* name) { state_.emplace_back(name, Tensor({n}, memory)); };
    switch (kind) {
      case Kind::kSgd: break;
      case Kind::kMomentum: add("momentum_buffer"); break;
      case Kind::kNesterov: add("momentum_buffer"); break;
      case Kind::kAdagrad: add("sum"); break;
      case Kind::kRmsprop:
        add("square_avg");
        if (rule.momentum > 0) add("momentum_buffer");
        break;
      case Kind::kAdam:
      case Kind::kAdamW:
        add("exp_avg");
        add("exp_avg_sq");
        break;
    }
  }

  void BeginStep(int64_t t) override {
    Optimizer::BeginStep(t);
    rule_ = base_;
    rule_.lr = static_cast<float>(ScheduleFactor(schedule_, base_.lr, cosine_steps_, t));
    if (kind_ == Kind::kAdam || kind_ == Kind::kAdamW) {
      rule_.bias_correction1 = static_cast<float>(1.0 - std::pow(base_.beta1, t));
      rule_.bias_correction2 = static_cast<float>(1.0 - std::pow(base_.beta2, t));
    }
    if (kind_ == Kind::kAdagrad) {
      rule_.lr = static_cast<float>(rule_.lr / (1.0 + static_cast<double>(t - 1) * lr_decay_));
    }
  }

  bool Update(Backend& backend, Tensor& weights, const Tensor& grads, float grad_scale,
              int64_t begin, int64_t end) override {
    CheckRange(weights, grads, begin, end);
    for (auto& [name, buffer] : state_) {
      PSGRID_CHECK(buffer.size() == weights.size(), "optimizer state and weights differ in size");
      PSGRID_CHECK(buffer.memory() == weights.memory(),
                   "optimizer state and weights are in different memories");
    }
    UpdateRule r = rule_;
    r.grad_scale = grad_scale;
    const int64_t n = end - begin;
    const float* g = grads.data() + begin;
    float* w = weights.data() + begin;
    auto s = [&](size_t i) { return state_[i].second.data() + begin; };
    switch (kind_) {
      case Kind::kSgd: return backend.SgdUpdate(n, r, g, w);
      case Kind::kMomentum: return backend.MomentumUpdate(n, r, g, s(0), w);
      case Kind::kNesterov: return backend.NesterovUpdate(n, r, g, s(0), w);
      case Kind::kAdagrad: return backend.AdagradUpdate(n, r, g, s(0), w);
      case Kind::kRmsprop:
        return backend.RmspropUpdate(n, r, g, s(0), state_.size() > 1 ? s(1) : nullptr, w);
      case Kind::kAdam: return backend.AdamUpdate(n, r, /*decoupled=*/false, g, s(0), s(1), w);
      case Kind::kAdamW: return backend.AdamUpdate(n, r, /*decoupled=*/true, g, s(0), s(1), w);
    }
    PSGRID_CHECK(false, "unknown optimizer kind");
    return false;
  }

  std::vector<std::pair<std::string, Tensor*>> State() override {
    std::vector<std::pair<std::string, Tensor*>> out;
    for (auto& [name, buffer] : state_) out.emplace_back(name, &buffer);
    return out;
  }

 private:
  const Kind kind_;
  const UpdateRule base_;
  UpdateRule rule_;  // of the current step
  const double lr_decay_;
  const v1::ScheduleSpec schedule_;
  const int64_t cosine_steps_;
  std::vector<std::pair<std::string, Tensor>> state_;
};

absl::Status Field(const std::string& field, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("optimizer.", field, ": ", problem));
}

}  // namespace

float ClippedGradScale(Backend& backend, const Tensor& grads, float grad_scale,
                       double clip_norm) {
  if (clip_norm <= 0) return grad_scale;
  const double norm =
      std::sqrt(backend.SquaredNorm(grads.size(), grads.data())) * std::abs(grad_scale);
  const double coef = clip_norm / (norm + 1e-6);
  return coef < 1 ? static_cast<float>(grad_scale * coef) : grad_scale;
}

double ScheduleFactor(const v1::ScheduleSpec& s, double base_lr, int64_t cosine_steps,
                      int64_t t) {
  int64_t k = t - 1;
  if (k < s.warmup_steps()) {
    return base_lr * static_cast<double>(k + 1) / static_cast<double>(s.warmup_steps());
  }
  k -= s.warmup_steps();
  if (s.type() == "step") {
    const double gamma = s.gamma() != 0 ? s.gamma() : 0.1;
    return base_lr * std::pow(gamma, static_cast<double>(k / s.step_size()));
  }
  if (s.type() == "cosine" && cosine_steps > 0) {
    const double progress =
        static_cast<double>(std::min(k, cosine_steps)) / static_cast<double>(cosine_steps);
    return s.min_lr() + (base_lr - s.min_lr()) * (1 + std::cos(M_PI * progress)) / 2;
  }
  return base_lr;
}

absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const v1::OptimizerSpec& spec,
                                                           int64_t num_parameters,
                                                           int64_t total_steps,
                                                           DeviceMemory* memory) {
  using Kind = RuleOptimizer::Kind;
  const std::string& type = spec.type();
  static constexpr std::pair<const char*, Kind> kKinds[] = {
      {"sgd", Kind::kSgd},         {"momentum", Kind::kMomentum}, {"nesterov", Kind::kNesterov},
      {"adagrad", Kind::kAdagrad}, {"rmsprop", Kind::kRmsprop},   {"adam", Kind::kAdam},
      {"adamw", Kind::kAdamW}};
  const auto* found = std::find_if(std::begin(kKinds), std::end(kKinds),
                                   [&](const auto& k) { return type == k.first; });
  if (found == std::end(kKinds)) {
    return Field("type", absl::StrCat("unknown optimizer '", type,
                                      "'; expected sgd, momentum, nesterov, adagrad, rmsprop, "
                                      "adam or adamw"));
  }
  const Kind kind = found->second;
  const bool adam = kind == Kind::kAdam || kind == Kind::kAdamW;
  UpdateRule rule;
  const double lr = spec.learning_rate();  // its default is the spec's (ApplyJobSpecDefaults)
  if (!(lr > 0) || !std::isfinite(lr)) {
    return Field("learning_rate", absl::StrCat("must be a positive finite number, got ", lr));
  }
  rule.lr = static_cast<float>(lr);
  const double momentum = spec.momentum();
  if (!(momentum >= 0 && momentum < 1)) {
    return Field("momentum", absl::StrCat("must be in [0, 1), got ", momentum));
  }
  if (momentum != 0 && kind != Kind::kMomentum && kind != Kind::kNesterov &&
      kind != Kind::kRmsprop) {
    return Field("momentum", absl::StrCat("is not used by ", type));
  }
  if (kind == Kind::kNesterov && momentum == 0) {
    return Field("momentum", "nesterov needs a momentum above 0");
  }
  rule.momentum = static_cast<float>(momentum);
  const double decay = spec.has_weight_decay() ? spec.weight_decay()
                                                : (kind == Kind::kAdamW ? 1e-2 : 0.0);
  if (!(decay >= 0) || !std::isfinite(decay)) {
    return Field("weight_decay", absl::StrCat("must be 0 or more, got ", decay));
  }
  rule.weight_decay = static_cast<float>(decay);
  if (spec.betas_size() != 0) {
    if (!adam) return Field("betas", absl::StrCat("is not used by ", type));
    if (spec.betas_size() != 2) return Field("betas", "must be two numbers [beta1, beta2]");
    for (double b : spec.betas()) {
      if (!(b >= 0 && b < 1)) return Field("betas", absl::StrCat("must be in [0, 1), got ", b));
    }
    rule.beta1 = static_cast<float>(spec.betas(0));
    rule.beta2 = static_cast<float>(spec.betas(1));
  }
  if (spec.has_eps()) {
    if (!(spec.eps() > 0) || !std::isfinite(spec.eps())) {
      return Field("eps", absl::StrCat("must be a positive number, got ", spec.eps()));
    }
    if (!adam && kind != Kind::kAdagrad && kind != Kind::kRmsprop) {
      return Field("eps", absl::StrCat("is not used by ", type));
    }
    rule.eps = static_cast<float>(spec.eps());
  } else {
    rule.eps = kind == Kind::kAdagrad ? 1e-10f : 1e-8f;
  }
  if (spec.has_alpha()) {
    if (kind != Kind::kRmsprop) return Field("alpha", absl::StrCat("is not used by ", type));
    if (!(spec.alpha() >= 0 && spec.alpha() < 1)) {
      return Field("alpha", absl::StrCat("must be in [0, 1), got ", spec.alpha()));
    }
    rule.alpha = static_cast<float>(spec.alpha());
  }
  if (spec.lr_decay() != 0) {
    if (kind != Kind::kAdagrad) return Field("lr_decay", absl::StrCat("is not used by ", type));
    if (!(spec.lr_decay() >= 0)) return Field("lr_decay", "must be 0 or more");
  }
  if (!(spec.clip_norm() >= 0) || !std::isfinite(spec.clip_norm())) {
    return Field("clip_norm", absl::StrCat("must be 0 (off) or a positive number, got ",
                                           spec.clip_norm()));
  }
  const v1::ScheduleSpec& schedule = spec.schedule();
  const std::string& stype = schedule.type();
  if (!stype.empty() && stype != "constant" && stype != "step" && stype != "cosine") {
    return Field("schedule.type", absl::StrCat("unknown schedule '", stype,
                                               "'; expected constant, step or cosine"));
  }
  if (schedule.warmup_steps() < 0) return Field("schedule.warmup_steps", "must be 0 or more");
  if (stype == "step" && schedule.step_size() < 1) {
    return Field("schedule.step_size", "a step schedule needs a step_size of at least 1");
  }
  if (!(schedule.gamma() >= 0 && schedule.gamma() <= 1)) {
    return Field("schedule.gamma", absl::StrCat("must be in (0, 1], got ", schedule.gamma()));
  }
  if (schedule.total_steps() < 0) return Field("schedule.total_steps", "must be 0 or more");
  if (!(schedule.min_lr() >= 0 && schedule.min_lr() <= lr)) {
    return Field("schedule.min_lr", "must be between 0 and the learning rate");
  }
  int64_t cosine_steps = schedule.total_steps();
  if (cosine_steps == 0) cosine_steps = std::max<int64_t>(total_steps - schedule.warmup_steps(), 0);
  if (stype == "cosine" && cosine_steps == 0) {
    return Field("schedule.total_steps", "a cosine schedule needs its length");
  }
  return std::make_unique<RuleOptimizer>(kind, rule, spec.lr_decay(), schedule, cosine_steps,
                                         num_parameters, memory);
}

}  // namespace psgrid
