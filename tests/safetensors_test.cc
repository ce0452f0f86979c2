// Safetensors: what we write reads back bit for bit, its bytes follow the format's rules (so
// PyTorch can load it), and every kind of corrupt file is refused with DATA_LOSS naming the
// file and, where one is at fault, the tensor.
#include "core/io/safetensors.h"

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::ReadBytes;
using ::psgrid::testing::TempPath;
using ::psgrid::testing::WriteBytes;

// A file of `header` (its length in the first 8 bytes, `claimed_length` if given) and `data`.
std::string RawFile(const std::string& name, const std::string& header, const std::string& data,
                    uint64_t claimed_length = UINT64_MAX) {
  const uint64_t n = claimed_length == UINT64_MAX ? header.size() : claimed_length;
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &n, 8);
  const std::string path = TempPath(name);
  WriteBytes(path, bytes + header + data);
  return path;
}

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Tensors with awkward values (signed zero, infinities, a NaN payload, a subnormal), a scalar
// and an empty one, deliberately not in alphabetical order.
struct Fixture {
  std::vector<float> w = {1.5f,
                          -0.0f,
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          1e-42f,
                          3.25f};
  std::vector<float> b = {std::bit_cast<float>(0x7FC01234u), 7.0f};
  std::vector<float> s = {-2.5f};
  std::vector<NamedTensorView> views() const {
    return {{"layer.weight", {2, 3}, w.data()},
            {"layer.bias", {2}, b.data()},
            {"scale", {}, s.data()},
            {"empty", {0, 4}, nullptr}};
  }
};

TEST(Safetensors, RoundTripKeepsNamesShapesBitsAndMetadata) {
  const std::string path = TempPath("round_trip.safetensors");
  Fixture f;
  ASSERT_OK(WriteSafetensors(path, f.views(), {{"format", "pt"}, {"psgrid.step", "40"}}));
  auto read = ReadSafetensors(path);
  ASSERT_OK(read);
  ASSERT_EQ(read->tensors.size(), 4u);
  const std::vector<NamedTensorView> views = f.views();
  for (size_t i = 0; i < views.size(); ++i) {
    const auto& [name, tensor] = read->tensors[i];
    EXPECT_EQ(name, views[i].name);
    EXPECT_EQ(tensor.shape(), views[i].shape);
    ASSERT_EQ(tensor.size(), NumElements(views[i].shape));
    for (int64_t k = 0; k < tensor.size(); ++k) {
      EXPECT_EQ(Bits(tensor[k]), Bits(views[i].data[k])) << name << "[" << k << "]";
    }
  }
  EXPECT_EQ(read->metadata,
            (std::map<std::string, std::string>{{"format", "pt"}, {"psgrid.step", "40"}}));
}

TEST(Safetensors, HeaderFollowsTheFormat) {
  const std::string path = TempPath("layout.safetensors");
  Fixture f;
  ASSERT_OK(WriteSafetensors(path, f.views(), {{"format", "pt"}}));
  const std::string bytes = ReadBytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<uint8_t>(bytes[i]);  // little-endian
  EXPECT_EQ(n % 8, 0u);
  ASSERT_LE(8 + n, bytes.size());
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  const size_t close = header.rfind('}');
  EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos) << "padding: spaces";
  const nlohmann::json j = nlohmann::json::parse(header, nullptr, false);
  ASSERT_TRUE(j.is_object()) << header;
  EXPECT_EQ(j["__metadata__"], (nlohmann::json{{"format", "pt"}}));
  EXPECT_EQ(j["layer.weight"],
            (nlohmann::json{{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}));
  EXPECT_EQ(j["layer.bias"]["data_offsets"], (nlohmann::json{24, 32}));
  EXPECT_EQ(j["scale"]["shape"], nlohmann::json::array());
  EXPECT_EQ(j["scale"]["data_offsets"], (nlohmann::json{32, 36}));
  EXPECT_EQ(j["empty"]["data_offsets"], (nlohmann::json{36, 36}));
  EXPECT_EQ(bytes.size(), 8 + n + 36);
  float first;
  std::memcpy(&first, bytes.data() + 8 + n, 4);
  EXPECT_EQ(first, 1.5f);
}

TEST(Safetensors, RejectsBadNamesAndKeepsTheEarlierFile) {
  const std::string path = TempPath("names.safetensors");
  const float x[2] = {1, 2};
  ASSERT_OK(WriteSafetensors(path, {{"x", {2}, x}}));
  const std::string before = ReadBytes(path);
  EXPECT_STATUS(WriteSafetensors(path, {{"", {2}, x}}), absl::StatusCode::kInvalidArgument,
                "empty");
  EXPECT_STATUS(WriteSafetensors(path, {{"a", {2}, x}, {"a", {1}, x}}),
                absl::StatusCode::kInvalidArgument, "'a' appears twice");
  EXPECT_STATUS(WriteSafetensors(path, {{"__metadata__", {2}, x}}),
                absl::StatusCode::kInvalidArgument, "reserved");
  EXPECT_STATUS(WriteSafetensors(path, {{"neg", {-1, 2}, x}}), absl::StatusCode::kInvalidArgument,
                "'neg'");
  EXPECT_STATUS(WriteSafetensors(path, {{"bad\xff", {2}, x}}), absl::StatusCode::kInvalidArgument,
                "UTF-8");
  EXPECT_EQ(ReadBytes(path), before);
}

TEST(Safetensors, WriteReplacesTheFileAndLeavesNoTemporary) {
  const std::string dir = TempPath("replace_dir");
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/w.safetensors";
  const float a[1] = {1}, b[3] = {4, 5, 6};
  ASSERT_OK(WriteSafetensors(path, {{"a", {1}, a}}));
  ASSERT_OK(WriteSafetensors(path, {{"b", {3}, b}}));
  auto read = ReadSafetensors(path);
  ASSERT_OK(read);
  ASSERT_EQ(read->tensors.size(), 1u);
  EXPECT_EQ(read->tensors[0].first, "b");
  EXPECT_EQ(read->tensors[0].second[2], 6.0f);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "w.safetensors");
  }
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, WriteIntoAMissingDirectoryIsAnInternalErrorNamingThePath) {
  const std::string path = TempPath("no_such_dir") + "/w.safetensors";
  const float a[1] = {1};
  EXPECT_STATUS(WriteSafetensors(path, {{"a", {1}, a}}), absl::StatusCode::kInternal, path);
}

TEST(Safetensors, MissingFileIsNotFound) {
  const std::string path = TempPath("missing.safetensors");
  EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kNotFound, path);
}

TEST(Safetensors, ReadsForeignFilesInOffsetOrder) {
  // Unpadded, keys not in offset order, metadata last: as other writers may do.
  std::string data(12, '\0');
  const float second[1] = {9.0f}, first[2] = {1.0f, 2.0f};
  std::memcpy(data.data(), first, 8);
  std::memcpy(data.data() + 8, second, 4);
  const std::string path = RawFile(
      "foreign.safetensors",
      R"({"z":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("a":{"shape":[1,1],"data_offsets":[8,12],"dtype":"F32"},"__metadata__":{"k":"v"}})",
      data);
  auto read = ReadSafetensors(path);
  ASSERT_OK(read);
  ASSERT_EQ(read->tensors.size(), 2u);
  EXPECT_EQ(read->tensors[0].first, "z");
  EXPECT_EQ(read->tensors[0].second[1], 2.0f);
  EXPECT_EQ(read->tensors[1].first, "a");
  EXPECT_EQ(read->tensors[1].second.shape(), (Shape{1, 1}));
  EXPECT_EQ(read->tensors[1].second[0], 9.0f);
  EXPECT_EQ(read->metadata.at("k"), "v");
}

TEST(Safetensors, TruncatedFileIsDataLoss) {
  const std::string path = TempPath("truncated.safetensors");
  Fixture f;
  ASSERT_OK(WriteSafetensors(path, f.views()));
  const std::string bytes = ReadBytes(path);
  WriteBytes(path, bytes.substr(0, bytes.size() - 4));
  EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kDataLoss, "past the end of the file");
  EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kDataLoss, "'scale'");
  WriteBytes(path, bytes.substr(0, 5));
  EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kDataLoss, "too short");
  WriteBytes(path, bytes.substr(0, 20));
  EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kDataLoss, "header length");
}

TEST(Safetensors, HeaderLengthBeyondTheFileIsDataLoss) {
  const std::string header = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  const std::string path =
      RawFile("too_long.safetensors", header, std::string(4, '\0'), 1ull << 40);
  EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kDataLoss, path);
  EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kDataLoss,
                "header length 1099511627776 runs past the end");
}

TEST(Safetensors, HeaderThatIsNotJsonIsDataLoss) {
  const std::string path = RawFile("bad_json.safetensors", "{\"x\": {\"dtype\": ", "");
  EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kDataLoss, "not a JSON object");
  const std::string array = RawFile("array.safetensors", "[1, 2]", "");
  EXPECT_STATUS(ReadSafetensors(array), absl::StatusCode::kDataLoss, "not a JSON object");
}

TEST(Safetensors, HeaderOfTheWrongShapeIsDataLossNamingTheTensor) {
  struct Case {
    std::string header;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {R"({"t":[1]})", "'t' is not described by a JSON object"},
      {R"({"t":{"shape":[1],"data_offsets":[0,4]}})", "'t' has no string \"dtype\""},
      {R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", "'t' has no \"shape\""},
      {R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "'t' has a shape"},
      {R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "'t' has a shape"},
      {R"({"t":{"dtype":"F32","shape":[1]}})", "'t' has no \"data_offsets\""},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "'t' has data_offsets"},
      {R"({"__metadata__":{"k":1}})", "__metadata__"},
      {R"({"__metadata__":"x"})", "__metadata__"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path =
        RawFile("shape" + std::to_string(i) + ".safetensors", cases[i].header, "abcd");
    EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kDataLoss, cases[i].expected);
  }
}

TEST(Safetensors, UnsupportedDtypeIsNamed) {
  const std::string path = RawFile(
      "f16.safetensors", R"({"half":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", "abcd");
  EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kDataLoss,
                "tensor 'half' has dtype F16; only F32 is supported");
}

TEST(Safetensors, ShapeThatDoesNotFitItsOffsetsIsDataLoss) {
  const std::string path =
      RawFile("mismatch.safetensors", R"({"m":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
              std::string(8, '\0'));
  EXPECT_STATUS(ReadSafetensors(path), absl::StatusCode::kDataLoss,
                "tensor 'm' of shape [3] does not fit its data_offsets [0, 8]");
  // A shape whose byte size overflows 64 bits.
  const std::string huge =
      RawFile("huge.safetensors",
              R"({"h":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", "");
  EXPECT_STATUS(ReadSafetensors(huge), absl::StatusCode::kDataLoss, "tensor 'h' of shape");
}

TEST(Safetensors, OverlapsGapsAndTrailingBytesAreDataLoss) {
  const std::string data(16, '\0');
  const std::string overlap = RawFile("overlap.safetensors",
                                      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                                      R"("c":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
                                      data);
  EXPECT_STATUS(ReadSafetensors(overlap), absl::StatusCode::kDataLoss,
                "tensor 'b' at data_offsets [4, 12] overlaps tensor 'a'");
  const std::string gap = RawFile("gap.safetensors",
                                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
                                  data);
  EXPECT_STATUS(ReadSafetensors(gap), absl::StatusCode::kDataLoss,
                "tensor 'b' at data_offsets [12, 16] leaves a gap after tensor 'a'");
  const std::string late = RawFile(
      "late.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", data);
  EXPECT_STATUS(ReadSafetensors(late), absl::StatusCode::kDataLoss, "gap at the start");
  const std::string trailing = RawFile(
      "trailing.safetensors", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data);
  EXPECT_STATUS(ReadSafetensors(trailing), absl::StatusCode::kDataLoss,
                "8 bytes after the last tensor");
  const std::string past = RawFile(
      "past.safetensors", R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}})", data);
  EXPECT_STATUS(ReadSafetensors(past), absl::StatusCode::kDataLoss,
                "tensor 'a' has data_offsets [0, 24] past the end of the file");
}

// Parses the file with struct and json in Python, builds torch tensors, and prints
// {name: {"shape": [...], "bits": [...]}} with each float's bits as an int32.
constexpr char kPythonReader[] = R"PY(
import json, struct, sys
import torch
blob = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", blob[:8])
assert n % 8 == 0
header = json.loads(blob[8:8 + n].decode("utf-8"))
data = blob[8 + n:]
out = {"__metadata__": header.pop("__metadata__", {})}
for name, info in header.items():
    assert info["dtype"] == "F32"
    begin, end = info["data_offsets"]
    if end > begin:
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32)
    else:
        t = torch.zeros(0, dtype=torch.float32)
    t = t.reshape(info["shape"])
    out[name] = {"shape": list(t.shape), "bits": t.view(torch.int32).flatten().tolist()}
print(json.dumps(out))
)PY";

TEST(Safetensors, PythonReadsTheSameShapesAndValues) {
  if (!::psgrid::testing::PythonImports("torch")) {
    GTEST_SKIP() << "python3-torch is not installed: the Python half of the check is skipped";
  }
  const std::string path = TempPath("python.safetensors");
  Fixture f;
  ASSERT_OK(WriteSafetensors(path, f.views(), {{"format", "pt"}}));
  const std::string script = TempPath("read_safetensors.py");
  WriteBytes(script, kPythonReader);
  const std::string out = TempPath("python_out.json");
  const std::string command = "/usr/bin/python3 " + script + " " + path + " > " + out;
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const nlohmann::json j = nlohmann::json::parse(ReadBytes(out), nullptr, false);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["__metadata__"], (nlohmann::json{{"format", "pt"}}));
  for (const NamedTensorView& v : f.views()) {
    ASSERT_TRUE(j.contains(v.name)) << v.name;
    EXPECT_EQ(j[v.name]["shape"].get<Shape>(), v.shape) << v.name;
    std::vector<uint32_t> bits;
    for (int64_t k = 0; k < NumElements(v.shape); ++k) bits.push_back(Bits(v.data[k]));
    std::vector<uint32_t> python;
    for (const auto& b : j[v.name]["bits"])
      python.push_back(static_cast<uint32_t>(b.get<int64_t>()));
    EXPECT_EQ(python, bits) << v.name;
  }
}

}  // namespace
}  // namespace psgrid
