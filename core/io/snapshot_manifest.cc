#include "core/io/snapshot_manifest.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "core/io/file_util.h"
#include "nlohmann/json.hpp"

namespace psgrid {
namespace {

using Json = nlohmann::json;

// The field `key` of object `o` when it is an integer (any sign, or non-negative only).
const Json* IntegerField(const Json& o, const char* key, bool non_negative) {
  const auto it = o.find(key);
  if (it == o.end() || !it->is_number_integer()) return nullptr;
  return non_negative && !it->is_number_unsigned() ? nullptr : &*it;
}

const Json* StringField(const Json& o, const char* key) {
  const auto it = o.find(key);
  return it != o.end() && it->is_string() ? &*it : nullptr;
}

}  // namespace

absl::StatusOr<std::string> SnapshotManifestToJson(const SnapshotManifest& m) {
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const SnapshotManifestTensor& t : m.tensors) {
    tensors.push_back({{"name", t.name},
                       {"dtype", "F32"},
                       {"shape", t.shape},
                       {"offset", t.offset},
                       {"bytes", t.bytes},
                       {"crc32c", t.crc32c}});
  }
  const nlohmann::ordered_json j = {{"format_version", kSnapshotFormatVersion},
                                    {"id", m.id},
                                    {"step", m.step},
                                    {"created", m.created},
                                    {"bytes", m.bytes},
                                    {"metadata", m.metadata},
                                    {"tensors", std::move(tensors)}};
  try {
    return j.dump(1) + "\n";
  } catch (const nlohmann::json::exception& e) {  // invalid UTF-8 in a name or value
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot '", m.id, "': tensor names and metadata must be UTF-8 (", e.what(), ")"));
  }
}

absl::StatusOr<SnapshotManifest> ParseSnapshotManifest(const std::string& where,
                                                       const std::string& id,
                                                       const std::string& text) {
  auto bad = [&](const auto&... parts) {
    return absl::DataLossError(absl::StrCat(where, ": manifest.json ", parts...));
  };
  const Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("is not a JSON object");
  const Json* version = IntegerField(j, "format_version", false);
  if (version == nullptr || *version != kSnapshotFormatVersion) {
    return bad("has no format_version ", kSnapshotFormatVersion);
  }
  const Json* json_id = StringField(j, "id");
  if (json_id == nullptr || *json_id != id) return bad("does not give '", id, "' as its id");
  const Json* step = IntegerField(j, "step", false);
  const Json* created = IntegerField(j, "created", false);
  const Json* bytes = IntegerField(j, "bytes", true);
  if (step == nullptr || created == nullptr || bytes == nullptr) {
    return bad("lacks an integer step, created or bytes");
  }
  SnapshotManifest m;
  m.id = id;
  m.step = step->get<int64_t>();
  m.created = created->get<int64_t>();
  m.bytes = bytes->get<uint64_t>();
  const auto metadata = j.find("metadata");
  if (metadata == j.end() || !metadata->is_object()) return bad("has no metadata object");
  for (const auto& [key, value] : metadata->items()) {
    if (!value.is_string()) return bad("has metadata '", key, "' that is not a string");
    m.metadata[key] = value.get<std::string>();
  }
  const auto tensors = j.find("tensors");
  if (tensors == j.end() || !tensors->is_array()) return bad("has no tensors array");
  std::set<std::string> names;
  uint64_t end = 0;
  for (const Json& t : *tensors) {
    const Json* name = t.is_object() ? StringField(t, "name") : nullptr;
    if (name == nullptr) return bad("has a tensor without a name");
    SnapshotManifestTensor mt;
    mt.name = name->get<std::string>();
    auto bad_tensor = [&](const auto&... parts) {
      return bad("says tensor '", mt.name, "' ", parts...);
    };
    if (!names.insert(mt.name).second) return bad_tensor("appears twice");
    const Json* dtype = StringField(t, "dtype");
    if (dtype == nullptr || *dtype != "F32") return bad_tensor("is not F32");
    const auto shape = t.find("shape");
    if (shape == t.end() || !shape->is_array()) return bad_tensor("has no shape");
    for (const Json& d : *shape) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > INT64_MAX) {
        return bad_tensor("has a bad shape ", shape->dump());
      }
      mt.shape.push_back(d.get<int64_t>());
    }
    const Json* offset = IntegerField(t, "offset", true);
    const Json* size = IntegerField(t, "bytes", true);
    const Json* crc = IntegerField(t, "crc32c", true);
    if (offset == nullptr || size == nullptr || crc == nullptr || *crc > UINT32_MAX) {
      return bad_tensor("lacks an offset, bytes or crc32c");
    }
    mt.offset = offset->get<uint64_t>();
    mt.bytes = size->get<uint64_t>();
    mt.crc32c = crc->get<uint32_t>();
    uint64_t expected = 0;
    if (!Float32Bytes(mt.shape, &expected) || expected != mt.bytes) {
      return bad_tensor("has ", mt.bytes, " bytes, which does not fit shape ",
                        ShapeToString(mt.shape));
    }
    if (mt.offset != end || mt.bytes > m.bytes || mt.offset > m.bytes - mt.bytes) {
      return bad_tensor("at offset ", mt.offset, " (", mt.bytes, " bytes) does not follow ",
                        "the tensor before it (at ", end, ") within the ", m.bytes,
                        " bytes of tensors.bin");
    }
    end = mt.offset + mt.bytes;
    m.tensors.push_back(std::move(mt));
  }
  if (end != m.bytes) {
    return bad("gives tensors.bin ", m.bytes, " bytes but its tensors only ", end);
  }
  return m;
}

}  // namespace psgrid
