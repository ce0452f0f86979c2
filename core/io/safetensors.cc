#include "core/io/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/io/file_util.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace psgrid {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this code copies floats as they are in memory");

constexpr char kMetadataKey[] = "__metadata__";
constexpr uint64_t kHeaderLengthBytes = 8;

// One tensor's header entry, checked against the data section.
struct Entry {
  std::string name;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

bool IsUnsigned(const nlohmann::json& j) { return j.is_number_unsigned(); }

// Parses and checks one tensor's entry on its own.
absl::StatusOr<Entry> ParseEntry(const std::string& path, const std::string& name,
                                 const nlohmann::json& value) {
  auto bad = [&](const auto&... parts) {
    return absl::DataLossError(absl::StrCat(path, ": tensor '", name, "' ", parts...));
  };
  if (!value.is_object()) return bad("is not described by a JSON object");
  const auto dtype = value.find("dtype");
  if (dtype == value.end() || !dtype->is_string()) return bad("has no string \"dtype\"");
  if (dtype->get<std::string>() != "F32") {
    return bad("has dtype ", dtype->get<std::string>(), "; only F32 is supported");
  }
  Entry e;
  e.name = name;
  const auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array()) return bad("has no \"shape\" array");
  for (const nlohmann::json& d : *shape) {
    if (!IsUnsigned(d) || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return bad("has a shape dimension that is not a non-negative integer: ", shape->dump());
    }
    e.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }
  const auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 ||
      !IsUnsigned((*offsets)[0]) || !IsUnsigned((*offsets)[1])) {
    return bad("has no \"data_offsets\" pair of non-negative integers");
  }
  e.begin = (*offsets)[0].get<uint64_t>();
  e.end = (*offsets)[1].get<uint64_t>();
  if (e.end < e.begin) return bad("has data_offsets [", e.begin, ", ", e.end, "] that end first");
  uint64_t bytes = 0;
  if (!Float32Bytes(e.shape, &bytes) || bytes != e.end - e.begin) {
    return bad("of shape ", ShapeToString(e.shape), " does not fit its data_offsets [", e.begin,
               ", ", e.end, "] (", e.end - e.begin, " bytes)");
  }
  return e;
}

absl::Status ParseMetadata(const std::string& path, const nlohmann::json& value,
                           std::map<std::string, std::string>* metadata) {
  const auto bad = absl::DataLossError(
      absl::StrCat(path, ": \"", kMetadataKey, "\" is not an object of string values"));
  if (!value.is_object()) return bad;
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) return bad;
    (*metadata)[key] = v.get<std::string>();
  }
  return absl::OkStatus();
}

// Sorts the entries by offset and checks that they tile the data section exactly.
absl::Status CheckLayout(const std::string& path, std::vector<Entry>& entries, uint64_t data_size) {
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    if (e.begin != expected) {
      const std::string where = absl::StrCat(path, ": tensor '", e.name, "' at data_offsets [",
                                             e.begin, ", ", e.end, "] ");
      if (previous == nullptr) {
        return absl::DataLossError(absl::StrCat(where, "leaves a gap at the start of the data"));
      }
      return absl::DataLossError(
          absl::StrCat(where, e.begin < expected ? "overlaps" : "leaves a gap after", " tensor '",
                       previous->name, "' at [", previous->begin, ", ", previous->end, "]"));
    }
    if (e.end > data_size) {
      return absl::DataLossError(absl::StrCat(path, ": tensor '", e.name, "' has data_offsets [",
                                              e.begin, ", ", e.end, "] past the end of the file (",
                                              data_size, " bytes of data)"));
    }
    expected = e.end;
    previous = &e;
  }
  if (expected != data_size) {
    return absl::DataLossError(absl::StrCat(path, ": ", data_size - expected,
                                            " bytes after the last tensor belong to none"));
  }
  return absl::OkStatus();
}

absl::Status CheckNames(const std::string& path, const std::vector<NamedTensorView>& tensors) {
  std::set<std::string> seen;
  for (const NamedTensorView& t : tensors) {
    const std::string context = absl::StrCat("writing ", path, ": tensor '", t.name, "' ");
    if (t.name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("writing ", path, ": empty tensor name"));
    }
    if (t.name == kMetadataKey) {
      return absl::InvalidArgumentError(absl::StrCat(context, "uses the reserved name"));
    }
    if (!seen.insert(t.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "appears twice"));
    }
    uint64_t bytes = 0;
    if (!Float32Bytes(t.shape, &bytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat(context, "has an invalid shape ", ShapeToString(t.shape)));
    }
    if (bytes > 0 && t.data == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(context, "has no data"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensorView>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  RETURN_IF_ERROR(CheckNames(path, tensors));
  // ordered_json keeps the entries in file order, which is easier to read; readers sort by
  // offset anyway.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::vector<ByteSpan> pieces;
  pieces.reserve(tensors.size() + 2);
  uint64_t offset = 0;
  for (const NamedTensorView& t : tensors) {
    const uint64_t bytes = static_cast<uint64_t>(NumElements(t.shape)) * sizeof(float);
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    if (bytes > 0) pieces.emplace_back(reinterpret_cast<const char*>(t.data), bytes);
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // invalid UTF-8 in a name or value
    return absl::InvalidArgumentError(
        absl::StrCat("writing ", path, ": names and metadata must be UTF-8 (", e.what(), ")"));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // so the data starts 8-byte aligned
  char length[kHeaderLengthBytes];
  const uint64_t n = text.size();
  std::memcpy(length, &n, sizeof(length));
  pieces.insert(pieces.begin(), {ByteSpan(length, sizeof(length)), ByteSpan(text)});

  const std::string tmp = absl::StrCat(path, ".tmp-", ::getpid());
  absl::Status status = WriteFileSynced(tmp, pieces);
  if (status.ok()) status = RenameAndSyncParent(tmp, path);
  if (!status.ok()) ::unlink(tmp.c_str());
  return status;
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFileToString(path));
  if (bytes.size() < kHeaderLengthBytes) {
    return absl::DataLossError(
        absl::StrCat(path, ": ", bytes.size(), " bytes is too short for a safetensors file"));
  }
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), sizeof(header_length));
  if (header_length > bytes.size() - kHeaderLengthBytes) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_length,
                                            " runs past the end of the file (", bytes.size(),
                                            " bytes)"));
  }
  const char* header_begin = bytes.data() + kHeaderLengthBytes;
  const nlohmann::json header =
      nlohmann::json::parse(header_begin, header_begin + header_length, nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": the header is not a JSON object"));
  }
  const uint64_t data_size = bytes.size() - kHeaderLengthBytes - header_length;
  SafetensorsFile file;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      RETURN_IF_ERROR(ParseMetadata(path, value, &file.metadata));
      continue;
    }
    ASSIGN_OR_RETURN(Entry e, ParseEntry(path, key, value));
    entries.push_back(std::move(e));
  }
  RETURN_IF_ERROR(CheckLayout(path, entries, data_size));
  const char* data = header_begin + header_length;
  file.tensors.reserve(entries.size());
  for (Entry& e : entries) {
    Tensor t(std::move(e.shape));
    if (e.end > e.begin) std::memcpy(t.data(), data + e.begin, e.end - e.begin);
    file.tensors.emplace_back(std::move(e.name), std::move(t));
  }
  return file;
}

}  // namespace psgrid
