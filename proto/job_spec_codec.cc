#include "proto/job_spec_codec.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "yaml-cpp/yaml.h"

namespace psgrid {
namespace {

std::string JsonQuote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// A plain (unquoted) YAML scalar becomes a JSON bool, null or number when it reads as one
// (YAML 1.2 core schema); everything else, and every quoted scalar, stays a string.
std::string ScalarToJson(const YAML::Node& node) {
  const std::string& v = node.Scalar();
  if (node.Tag() == "!") return JsonQuote(v);
  if (v == "true" || v == "True" || v == "TRUE") return "true";
  if (v == "false" || v == "False" || v == "FALSE") return "false";
  if (v == "null" || v == "Null" || v == "NULL" || v == "~" || v.empty()) return "null";
  static const std::regex kInt("[-+]?[0-9]+");
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  if (std::regex_match(v, kInt)) return v[0] == '+' ? v.substr(1) : v;
  if (std::regex_match(v, kFloat)) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.17g", std::strtod(v.c_str(), nullptr));
    return buf;
  }
  return JsonQuote(v);
}

absl::StatusOr<std::string> YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return std::string("null");
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    case YAML::NodeType::Sequence: {
      std::string out = "[";
      bool first = true;
      for (const auto& item : node) {
        absl::StatusOr<std::string> j = YamlToJson(item);
        if (!j.ok()) return j.status();
        absl::StrAppend(&out, first ? "" : ",", *j);
        first = false;
      }
      return out + "]";
    }
    case YAML::NodeType::Map: {
      std::string out = "{";
      bool first = true;
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          return absl::InvalidArgumentError(
              absl::StrCat("line ", kv.first.Mark().line + 1, ": a key must be a plain name"));
        }
        absl::StatusOr<std::string> j = YamlToJson(kv.second);
        if (!j.ok()) return j.status();
        absl::StrAppend(&out, first ? "" : ",", JsonQuote(kv.first.Scalar()), ":", *j);
        first = false;
      }
      return out + "}";
    }
  }
  return std::string("null");
}

absl::Status FieldError(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

absl::Status CheckOneOf(absl::string_view field, const std::string& value,
                        std::initializer_list<absl::string_view> allowed) {
  for (absl::string_view a : allowed) {
    if (value == a) return absl::OkStatus();
  }
  return FieldError(field, absl::StrCat("unknown value '", value, "'; expected one of ",
                                        absl::StrJoin(allowed, ", ")));
}

}  // namespace

void ApplyJobSpecDefaults(v1::JobSpec* spec) {
  if (spec->name().empty()) spec->set_name("job");
  v1::ModelSpec* model = spec->mutable_model();
  if (model->loss().empty()) model->set_loss("softmax_cross_entropy");
  if (model->init().scheme().empty()) model->mutable_init()->set_scheme("he");
  v1::DataSpec* data = spec->mutable_data();
  if (data->dataset().empty()) data->set_dataset("fashion-mnist");
  if (data->path().empty() && data->dataset() != "csv" && data->dataset() != "text") {
    data->set_path("/usr/share/datasets/" + data->dataset());
  }
  if (!data->has_shuffle()) data->set_shuffle(true);
  if (data->dataset() == "text" && data->sequence_length() == 0) data->set_sequence_length(64);
  v1::TrainingSpec* training = spec->mutable_training();
  if (training->workers() == 0) training->set_workers(1);
  if (training->batch_size() == 0) training->set_batch_size(64);
  if (training->epochs() == 0) training->set_epochs(1);
  if (training->consistency().empty()) training->set_consistency("sync");
  if (training->on_bad_gradient().empty()) training->set_on_bad_gradient("fail");
  v1::OptimizerSpec* opt = spec->mutable_optimizer();
  if (opt->type().empty()) opt->set_type("sgd");
  // torch.optim's defaults: 1e-3 for Adam and AdamW, 1e-2 for the others.
  if (opt->learning_rate() == 0) {
    opt->set_learning_rate(opt->type() == "adam" || opt->type() == "adamw" ? 1e-3 : 1e-2);
  }
}

absl::Status ValidateJobSpec(const v1::JobSpec& spec) {
  const v1::ModelSpec& model = spec.model();
  if (model.layers().empty()) return FieldError("model.layers", "the model has no layers");
  if (absl::Status s = CheckOneOf("model.loss", model.loss(), {"softmax_cross_entropy", "mse"});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckOneOf("model.init.scheme", model.init().scheme(), {"he", "xavier"});
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckOneOf("data.dataset", spec.data().dataset(), {"fashion-mnist", "mnist", "csv", "text"});
      !s.ok()) {
    return s;
  }
  if (spec.data().path().empty()) return FieldError("data.path", "a path is required");
  const v1::TrainingSpec& t = spec.training();
  if (t.workers() < 1) return FieldError("training.workers", "must be at least 1");
  if (t.batch_size() < 1) return FieldError("training.batch_size", "must be at least 1");
  if (t.epochs() < 1) return FieldError("training.epochs", "must be at least 1");
  if (t.max_steps() < 0) return FieldError("training.max_steps", "must be 0 (no limit) or more");
  if (absl::Status s = CheckOneOf("training.consistency", t.consistency(), {"sync", "ssp", "async"});
      !s.ok()) {
    return s;
  }
  if (t.staleness() < 0) return FieldError("training.staleness", "must be 0 or more");
  if (t.staleness() > 0 && t.consistency() != "ssp") {
    return FieldError("training.staleness", "applies to consistency ssp only");
  }
  if (t.staleness() > 64) return FieldError("training.staleness", "must be at most 64");
  if (t.backup_workers() < 0) return FieldError("training.backup_workers", "must be 0 or more");
  if (t.backup_workers() > 0 && t.consistency() != "sync") {
    return FieldError("training.backup_workers", "applies to consistency sync only");
  }
  if (t.backup_workers() >= t.workers() && t.backup_workers() > 0) {
    return FieldError("training.backup_workers",
                      absl::StrCat("must be less than training.workers (", t.workers(), ")"));
  }
  if (absl::Status s = CheckOneOf("training.on_bad_gradient", t.on_bad_gradient(), {"fail", "skip"});
      !s.ok()) {
    return s;
  }
  const v1::OptimizerSpec& o = spec.optimizer();
  // The type and learning rate here; every other field is checked, per type, where the
  // optimizer is built (core/optimizer.h), at submit time too.
  if (absl::Status s = CheckOneOf("optimizer.type", o.type(),
                                  {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
                                   "adamw"});
      !s.ok()) {
    return s;
  }
  if (!(o.learning_rate() > 0) || !std::isfinite(o.learning_rate())) {
    return FieldError("optimizer.learning_rate", "must be a positive finite number");
  }
  if (!(o.momentum() >= 0 && o.momentum() < 1)) {
    return FieldError("optimizer.momentum", "must be in [0, 1)");
  }
  const v1::SnapshotSpec& snap = spec.snapshot();
  if (snap.every_steps() < 0) return FieldError("snapshot.every_steps", "must be 0 (off) or more");
  if (!(snap.every_seconds() >= 0) || !std::isfinite(snap.every_seconds())) {
    return FieldError("snapshot.every_seconds", "must be 0 (off) or a positive number");
  }
  if (snap.keep_last() < 0) return FieldError("snapshot.keep_last", "must be 0 (keep all) or more");
  return absl::OkStatus();
}

absl::StatusOr<v1::JobSpec> ParseJobSpec(absl::string_view text, absl::string_view source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML or JSON: line ",
                                                    e.mark.line + 1, ": ", e.msg));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": a job spec must be a mapping (name:, model:, data:, ...)"));
  }
  absl::StatusOr<std::string> json = YamlToJson(root);
  if (!json.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", json.status().message()));
  v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto parsed = google::protobuf::util::JsonStringToMessage(*json, &spec, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", std::string(parsed.message())));
  }
  ApplyJobSpecDefaults(&spec);
  if (absl::Status s = ValidateJobSpec(spec); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", s.message()));
  }
  return spec;
}

absl::StatusOr<v1::JobSpec> LoadJobSpecFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the job spec file"));
  std::stringstream buf;
  buf << in.rdbuf();
  return ParseJobSpec(buf.str(), path);
}

std::string JobSpecToJson(const v1::JobSpec& spec) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(spec, &out, options);
  return out;
}

}  // namespace psgrid
