#include "core/model.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/check.h"
#include "core/init.h"
#include "core/status_macros.h"

namespace psgrid {

absl::StatusOr<std::unique_ptr<Model>> Model::Create(const v1::ModelSpec& spec,
                                                     const Shape& input_shape, int64_t outputs,
                                                     Backend* backend) {
  std::unique_ptr<Model> model(new Model());
  model->backend_ = backend;
  model->memory_ = DeviceOrNull(backend);
  model->input_shape_ = input_shape;
  if (spec.layers().empty())
    return absl::InvalidArgumentError("model.layers: the model has no layers");
  ASSIGN_OR_RETURN(model->loss_, CreateLoss(spec.loss()));
  Shape shape = input_shape;
  for (int i = 0; i < spec.layers_size(); ++i) {
    const std::string field = absl::StrCat("model.layers[", i, "]");
    // Sizes the data decides: the last dense layer's units (the classes or target values) and
    // an embedding's vocabulary (a text data set's classes are its vocabulary) when left 0.
    v1::LayerSpec layer_spec = spec.layers(i);
    if (layer_spec.type() == "dense" && layer_spec.units() == 0 && i + 1 == spec.layers_size()) {
      layer_spec.set_units(static_cast<int32_t>(outputs));
    }
    if (layer_spec.type() == "embedding" && layer_spec.vocab() == 0) {
      layer_spec.set_vocab(static_cast<int32_t>(outputs));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Layer> layer, CreateLayer(layer_spec, field, spec.init().seed()));
    const int first_param = static_cast<int>(model->params_.infos().size());
    absl::StatusOr<Shape> out = layer->Build(shape, absl::StrCat(i), &model->params_);
    if (!out.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", out.status().message(), " (input ", ShapeToString(shape), ")"));
    }
    shape = *out;
    const bool has_params = static_cast<int>(model->params_.infos().size()) > first_param;
    model->first_param_.push_back(has_params ? first_param : -1);
    model->output_shapes_.push_back(shape);
    model->layers_.push_back(std::move(layer));
  }
  if (NumElements(shape) != outputs) {
    int last_dense = -1;
    for (int i = 0; i < spec.layers_size(); ++i) {
      if (spec.layers(i).type() == "dense") last_dense = i;
    }
    const std::string field =
        last_dense >= 0 ? absl::StrCat("model.layers[", last_dense, "].units") : "model.layers";
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": the model outputs ", NumElements(shape), " values per sample but the data needs ",
        outputs, model->loss_->uses_labels() ? " (one per class)" : " (one per target)"));
  }
  // With a device backend every tensor of the model lives on the device: the parameter arenas,
  // the layers' buffers, the activations and gradients, and the copies of each batch's inputs
  // and targets.
  DeviceMemory* const memory = model->memory_;
  model->params_.Allocate(memory);
  for (auto& layer : model->layers_) {
    layer->Bind(&model->params_);
    if (memory != nullptr) layer->UseMemory(memory);
  }
  RETURN_IF_ERROR(InitializeParameters(spec.init().scheme(), spec.init().seed(), &model->params_));
  model->activations_.resize(model->layers_.size());
  for (Tensor& t : model->activations_) t.SetMemory(memory);
  for (Tensor* t : {&model->loss_grad_, &model->grad_a_, &model->grad_b_, &model->input_,
                    &model->target_values_, &model->labels_}) {
    t->SetMemory(memory);
  }
  model->pool_first_.assign(model->layers_.size(), false);
  for (size_t i = 0; i + 1 < model->layers_.size(); ++i) {
    model->pool_first_[i] = model->layers_[i]->type() == "relu" &&
                            model->layers_[i + 1]->type() == "maxpool2d";
  }
  return model;
}

void Model::AdoptParameterArenas(float* values, float* grads) {
  PSGRID_CHECK(memory_ == nullptr, "AdoptParameterArenas on a device backend");
  params_.AdoptArenas(values, grads);
  for (auto& layer : layers_) layer->Bind(&params_);
}

void Model::SetRandomStream(uint64_t stream) {
  for (auto& layer : layers_) layer->SetRandomStream(stream);
}

ModelSummary Model::Summary() const {
  ModelSummary s;
  s.input_shape = input_shape_;
  for (const ParamInfo& info : params_.infos()) {
    (info.kind == ParamKind::kBias ? s.biases : s.weights) += info.size;
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    int64_t count = 0;
    const std::string prefix = absl::StrCat(i, ".");
    for (const ParamInfo& info : params_.infos()) {
      if (info.name.rfind(prefix, 0) == 0) count += info.size;
    }
    s.layers.push_back(
        {static_cast<int>(i), std::string(layers_[i]->type()), output_shapes_[i], count});
  }
  return s;
}

std::string FormatSummary(const ModelSummary& s) {
  std::string out = absl::StrFormat("%-6s %-10s %-16s %12s\n", "layer", "type", "output", "params");
  absl::StrAppend(&out, absl::StrFormat("%-6s %-10s %-16s %12s\n", "", "input",
                                        ShapeToString(s.input_shape), ""));
  for (const LayerSummary& l : s.layers) {
    absl::StrAppend(&out, absl::StrFormat("%-6d %-10s %-16s %12d\n", l.index, l.type,
                                          ShapeToString(l.output_shape), l.parameters));
  }
  absl::StrAppend(&out,
                  absl::StrFormat("parameters: %d (%d weights + %d biases), %d bytes as float32 "
                                  "(weights %d bytes)\n",
                                  s.parameters(), s.weights, s.biases, s.bytes(), s.weights * 4));
  return out;
}

absl::Status Model::CheckInput(const Tensor& x) const {
  if (x.rank() != static_cast<int>(input_shape_.size()) + 1 || x.dim(0) < 1 ||
      Shape(x.shape().begin() + 1, x.shape().end()) != input_shape_) {
    return absl::InvalidArgumentError(absl::StrCat("the input has shape ", ShapeToString(x.shape()),
                                                   "; the model expects [batch] + ",
                                                   ShapeToString(input_shape_)));
  }
  return absl::OkStatus();
}

const Tensor& Model::InBackendMemory(const Tensor& t, Tensor* staging) {
  if (t.memory() == memory_) return t;
  staging->Resize(t.shape());
  staging->CopyFrom(t);
  return *staging;
}

Targets Model::TargetsInBackendMemory(const Targets& targets) {
  Targets out = targets;
  if (memory_ == nullptr) return out;
  if (!targets.labels.empty()) {
    static_assert(sizeof(int32_t) == sizeof(float), "labels are kept in float cells");
    labels_.Resize({static_cast<int64_t>(targets.labels.size())});
    memory_->CopyToDevice(labels_.data(), targets.labels.data(),
                          targets.labels.size() * sizeof(int32_t));
    out.device_labels = reinterpret_cast<const int32_t*>(labels_.data());
  }
  if (targets.values != nullptr) out.values = &InBackendMemory(*targets.values, &target_values_);
  return out;
}

absl::StatusOr<const Tensor*> Model::Forward(const Tensor& x) {
  RETURN_IF_ERROR(CheckInput(x));
  return ForwardPass(InBackendMemory(x, &input_), false);
}

const Tensor* Model::ForwardPass(const Tensor& x, bool training) {
  const Tensor* in = &x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->SetTraining(training);
    if (pool_first_[i]) {  // relu i, pool i + 1: pool into activations_[i], then the relu
      layers_[i + 1]->SetTraining(training);
      layers_[i + 1]->Forward(*backend_, *in, &activations_[i]);
      layers_[i]->Forward(*backend_, activations_[i], &activations_[i + 1]);
      in = &activations_[++i];
      continue;
    }
    layers_[i]->Forward(*backend_, *in, &activations_[i]);
    in = &activations_[i];
  }
  return in;
}

absl::StatusOr<LossResult> Model::Evaluate(const Tensor& x, const Targets& targets) {
  ASSIGN_OR_RETURN(const Tensor* out, Forward(x));
  return loss_->Compute(*backend_, *out, TargetsInBackendMemory(targets), nullptr);
}

absl::StatusOr<LossResult> Model::ComputeGradients(
    const Tensor& host_x, const Targets& targets, const std::function<void(int64_t)>& on_ready) {
  RETURN_IF_ERROR(CheckInput(host_x));
  const Tensor& x = InBackendMemory(host_x, &input_);
  const Tensor* out = ForwardPass(x, /*training=*/true);
  ASSIGN_OR_RETURN(LossResult result, loss_->Compute(*backend_, *out,
                                                     TargetsInBackendMemory(targets), &loss_grad_));
  const Tensor* dy = &loss_grad_;
  const auto other = [this](const Tensor* t) { return t == &grad_a_ ? &grad_b_ : &grad_a_; };
  for (size_t i = layers_.size(); i-- > 0;) {
    if (i > 0 && pool_first_[i - 1]) {
      // Layers i − 1 (relu) and i (pool) ran as pool, then relu: back through the relu onto
      // the pooled values, then through the pool.
      const Tensor& in = i == 1 ? x : activations_[i - 2];
      Tensor* pooled_grad = other(dy);
      layers_[i - 1]->Backward(*backend_, activations_[i - 1], activations_[i], *dy, pooled_grad);
      dy = pooled_grad;
      --i;
      Tensor* dx = i == 0 ? nullptr : other(dy);
      layers_[i + 1]->Backward(*backend_, in, activations_[i], *dy, dx);
      dy = dx;
      continue;
    }
    const Tensor& in = i == 0 ? x : activations_[i - 1];
    // The first layer's input gradient is never needed: skip computing it.
    Tensor* dx = i == 0 ? nullptr : other(dy);
    layers_[i]->Backward(*backend_, in, activations_[i], *dy, dx);
    if (on_ready && first_param_[i] >= 0) on_ready(params_.infos()[first_param_[i]].offset);
    dy = dx;
  }
  return result;
}

}  // namespace psgrid
