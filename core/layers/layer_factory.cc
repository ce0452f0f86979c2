// CreateLayer: the one table of layer types a model description may name.
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/layers/activation.h"
#include "core/layers/conv2d.h"
#include "core/layers/dense.h"
#include "core/layers/dropout.h"
#include "core/layers/embedding.h"
#include "core/layers/flatten.h"
#include "core/layers/layer.h"
#include "core/layers/pooling.h"
#include "core/layers/recurrent.h"
#include "core/rng.h"

namespace psgrid {

absl::StatusOr<std::unique_ptr<Layer>> CreateLayer(const v1::LayerSpec& spec,
                                                   const std::string& field, uint64_t seed) {
  const std::string& type = spec.type();
  if (type == "dense") {
    if (spec.units() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".units: a dense layer needs units >= 1, got ", spec.units()));
    }
    return std::make_unique<DenseLayer>(spec.units());
  }
  // ---- Convolution, pooling, flatten and dropout (conv2d.h, pooling.h, flatten.h, dropout.h) --
  if (type == "conv2d" || type == "maxpool2d" || type == "avgpool2d" || type == "flatten" ||
      type == "dropout") {
    const std::string a_layer = absl::StrCat(type == "avgpool2d" ? "an " : "a ", type, " layer");
    // Every field set in the spec other than type and `allowed` is refused, named.
    const auto refuse_others = [&](const std::set<std::string>& allowed) -> absl::Status {
      std::vector<const google::protobuf::FieldDescriptor*> set_fields;
      spec.GetReflection()->ListFields(spec, &set_fields);
      for (const google::protobuf::FieldDescriptor* f : set_fields) {
        if (f->name() == "type" || allowed.count(f->name()) > 0) continue;
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".", f->name(), ": ", a_layer, " takes no ", f->name()));
      }
      return absl::OkStatus();
    };
    const auto at_least = [&](const char* name, int64_t value, int64_t min) -> absl::Status {
      if (value >= min) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat(field, ".", name, ": ", a_layer, " needs ",
                                                     name, " >= ", min, ", got ", value));
    };
    if (type == "conv2d") {
      if (auto s = refuse_others({"filters", "kernel", "stride", "padding", "bias"}); !s.ok()) {
        return s;
      }
      if (auto s = at_least("filters", spec.filters(), 1); !s.ok()) return s;
      if (auto s = at_least("kernel", spec.kernel(), 1); !s.ok()) return s;
      if (spec.stride() != 0) {  // 0: the default, 1
        if (auto s = at_least("stride", spec.stride(), 1); !s.ok()) return s;
      }
      if (auto s = at_least("padding", spec.padding(), 0); !s.ok()) return s;
      return std::make_unique<Conv2dLayer>(spec.filters(), spec.kernel(),
                                           spec.stride() == 0 ? 1 : spec.stride(),
                                           spec.padding(), spec.has_bias() ? spec.bias() : true,
                                           field);
    }
    if (type == "maxpool2d" || type == "avgpool2d") {
      if (auto s = refuse_others({"size", "stride"}); !s.ok()) return s;
      if (auto s = at_least("size", spec.size(), 1); !s.ok()) return s;
      if (spec.stride() != 0) {  // 0: the default, `size`
        if (auto s = at_least("stride", spec.stride(), 1); !s.ok()) return s;
      }
      return std::make_unique<Pool2dLayer>(
          type == "maxpool2d" ? Pooling::kMax : Pooling::kAverage, spec.size(),
          spec.stride() == 0 ? spec.size() : spec.stride(), field);
    }
    if (type == "flatten") {
      if (auto s = refuse_others({}); !s.ok()) return s;
      return std::make_unique<FlattenLayer>();
    }
    // dropout
    if (auto s = refuse_others({"rate"}); !s.ok()) return s;
    if (!(spec.rate() >= 0.0 && spec.rate() < 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".rate: a dropout layer needs rate in [0, 1), got ", spec.rate()));
    }
    // One stream of masks per (init seed, layer).
    return std::make_unique<DropoutLayer>(static_cast<float>(spec.rate()),
                                          Rng(seed, field + "/dropout").NextU64());
  }
  // ---- end of convolution, pooling, flatten and dropout ----
  // ---- Recurrent layers and embeddings (recurrent.h, embedding.h) ----
  if (type == "rnn" || type == "lstm" || type == "gru" || type == "embedding") {
    const std::string a_type = absl::StrCat(type == "gru" ? "a " : "an ", type, " layer");
    // Every field set in the spec other than type and `allowed` is refused, named.
    const auto refuse_others = [&](const std::set<std::string>& allowed) -> absl::Status {
      std::vector<const google::protobuf::FieldDescriptor*> set_fields;
      spec.GetReflection()->ListFields(spec, &set_fields);
      for (const google::protobuf::FieldDescriptor* f : set_fields) {
        if (f->name() == "type" || allowed.count(f->name()) > 0) continue;
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".", f->name(), ": ", a_type, " takes no ", f->name(),
            f->name() == "activation" ? " (its gate functions are fixed)" : ""));
      }
      return absl::OkStatus();
    };
    if (spec.units() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".units: ", a_type, " needs units >= 1, got ", spec.units()));
    }
    if (type == "embedding") {
      if (auto s = refuse_others({"units", "vocab"}); !s.ok()) return s;
      if (spec.vocab() < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".vocab: ", a_type, " needs vocab >= 1, got ", spec.vocab()));
      }
      return std::make_unique<EmbeddingLayer>(spec.vocab(), spec.units());
    }
    RecurrentOptions options;
    options.units = spec.units();
    if (type == "rnn") {
      options.cell = RecurrentCell::kRnn;
      if (auto s = refuse_others({"units", "activation", "truncation", "return_sequences",
                                  "average_over_time"});
          !s.ok()) {
        return s;
      }
      if (spec.activation().empty() || spec.activation() == "tanh") {
        options.activation = Activation::kTanh;
      } else if (spec.activation() == "relu") {
        options.activation = Activation::kRelu;
      } else if (spec.activation() == "sigmoid") {
        options.activation = Activation::kSigmoid;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".activation: ", a_type, " needs tanh (the default), relu or ",
                         "sigmoid, got '", spec.activation(), "'"));
      }
    } else {
      options.cell = type == "lstm" ? RecurrentCell::kLstm : RecurrentCell::kGru;
      if (auto s = refuse_others({"units", "truncation", "return_sequences", "average_over_time"});
          !s.ok()) {
        return s;
      }
    }
    if (spec.truncation() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".truncation: ", a_type, " needs truncation >= 0 (0: full ",
                       "backpropagation through time), got ", spec.truncation()));
    }
    options.truncation = spec.truncation();
    options.return_sequences = spec.return_sequences();
    options.average_over_time = spec.average_over_time();
    return std::make_unique<RecurrentLayer>(options);
  }
  // ---- end of recurrent layers and embeddings ----
  Activation kind;
  if (type == "relu") {
    kind = Activation::kRelu;
  } else if (type == "sigmoid") {
    kind = Activation::kSigmoid;
  } else if (type == "tanh") {
    kind = Activation::kTanh;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".type: unknown layer type '", type, "'; expected one of dense, relu, sigmoid, tanh, "
        "conv2d, maxpool2d, avgpool2d, flatten, dropout, rnn, lstm, gru, embedding"));
  }
  if (spec.units() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".units: a ", type, " layer takes no units"));
  }
  return std::make_unique<ActivationLayer>(kind);
}

}  // namespace psgrid
