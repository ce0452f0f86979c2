// SnapshotStore: round trips, the crash-safe protocol's leftovers, verification naming the
// snapshot and the tensor or file at fault, and pruning.
#include "core/io/snapshot_store.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace psgrid {
namespace {

namespace fs = std::filesystem;
using ::psgrid::testing::ReadBytes;
using ::psgrid::testing::TempPath;
using ::psgrid::testing::WriteBytes;

SnapshotContents MakeContents(const std::string& id, int64_t step, float base = 1.0f) {
  SnapshotContents c;
  c.id = id;
  c.step = step;
  c.created = 1700000000 + step;
  c.metadata = {{"job_id", "j1"}, {"step", std::to_string(step)}};
  Tensor w({3, 4}), b({4}), scalar(Shape{});
  for (int64_t i = 0; i < w.size(); ++i) w[i] = base + 0.25f * static_cast<float>(i);
  for (int64_t i = 0; i < b.size(); ++i) b[i] = -base * static_cast<float>(i);
  scalar[0] = base * 7;
  c.tensors.emplace_back("0.weight", std::move(w));
  c.tensors.emplace_back("0.bias", std::move(b));
  c.tensors.emplace_back("state.velocity.0.weight", Tensor({0, 4}));
  c.tensors.emplace_back("scale", std::move(scalar));
  return c;
}

std::vector<std::string> ListedIds(const SnapshotStore& store) {
  std::vector<std::string> ids;
  auto all = store.List();
  EXPECT_OK(all);
  if (all.ok()) {
    for (const SnapshotInfo& info : *all) ids.push_back(info.id);
  }
  return ids;
}

class SnapshotStoreTest : public ::testing::Test {
 protected:
  SnapshotStoreTest()
      : dir_(TempPath("snapshots_" + std::to_string(++count_)) + "/job/snaps"), store_(dir_) {}

  std::string File(const std::string& id, const std::string& name) const {
    return dir_ + "/" + id + "/" + name;
  }

  static inline int count_ = 0;
  std::string dir_;
  SnapshotStore store_;
};

TEST_F(SnapshotStoreTest, WriteListReadRoundTrip) {
  const SnapshotContents written = MakeContents("s-00010", 10);
  ASSERT_OK(store_.Write(written));
  auto all = store_.List();
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].id, "s-00010");
  EXPECT_EQ((*all)[0].step, 10);
  EXPECT_EQ((*all)[0].created, 1700000010);
  const int64_t on_disk = static_cast<int64_t>(fs::file_size(File("s-00010", "tensors.bin")) +
                                               fs::file_size(File("s-00010", "manifest.json")));
  EXPECT_EQ((*all)[0].bytes, on_disk);
  EXPECT_EQ(fs::file_size(File("s-00010", "tensors.bin")), (12 + 4 + 0 + 1) * sizeof(float));

  EXPECT_OK(store_.Verify("s-00010"));
  auto read = store_.Read("s-00010");
  ASSERT_OK(read);
  EXPECT_EQ(read->id, "s-00010");
  EXPECT_EQ(read->step, 10);
  EXPECT_EQ(read->created, 1700000010);
  EXPECT_EQ(read->metadata, written.metadata);
  ASSERT_EQ(read->tensors.size(), written.tensors.size());
  for (size_t i = 0; i < written.tensors.size(); ++i) {
    EXPECT_EQ(read->tensors[i].first, written.tensors[i].first);
    EXPECT_EQ(read->tensors[i].second.shape(), written.tensors[i].second.shape());
    EXPECT_EQ(0, std::memcmp(read->tensors[i].second.data(), written.tensors[i].second.data(),
                             written.tensors[i].second.size() * sizeof(float)));
  }
}

TEST_F(SnapshotStoreTest, ManifestDescribesTheLayout) {
  ASSERT_OK(store_.Write(MakeContents("a", 1)));
  const nlohmann::json m = nlohmann::json::parse(ReadBytes(File("a", "manifest.json")));
  EXPECT_EQ(m["format_version"], 1);
  EXPECT_EQ(m["id"], "a");
  EXPECT_EQ(m["bytes"], 68);
  ASSERT_EQ(m["tensors"].size(), 4u);
  EXPECT_EQ(m["tensors"][1]["name"], "0.bias");
  EXPECT_EQ(m["tensors"][1]["dtype"], "F32");
  EXPECT_EQ(m["tensors"][1]["offset"], 48);
  EXPECT_EQ(m["tensors"][1]["bytes"], 16);
  EXPECT_TRUE(m["tensors"][1]["crc32c"].is_number_unsigned());
}

TEST_F(SnapshotStoreTest, ListOfAMissingDirectoryIsEmpty) {
  auto all = store_.List();
  ASSERT_OK(all);
  EXPECT_TRUE(all->empty());
  EXPECT_STATUS(store_.Verify("nope"), absl::StatusCode::kNotFound, "nope");
  EXPECT_STATUS(store_.Read("nope"), absl::StatusCode::kNotFound, "nope");
}

TEST_F(SnapshotStoreTest, WritingATakenIdIsAlreadyExists) {
  ASSERT_OK(store_.Write(MakeContents("a", 1)));
  EXPECT_STATUS(store_.Write(MakeContents("a", 2, 5.0f)), absl::StatusCode::kAlreadyExists, "'a'");
  auto read = store_.Read("a");
  ASSERT_OK(read);
  EXPECT_EQ(read->step, 1);
}

TEST_F(SnapshotStoreTest, BadIdsAndTensorNamesAreInvalidArgument) {
  for (const std::string id : {"", ".hidden", "../escape", "a/b", "sp ace", ".tmp-a-1"}) {
    EXPECT_STATUS(store_.Write(MakeContents(id, 1)), absl::StatusCode::kInvalidArgument,
                  "not a valid snapshot id");
  }
  EXPECT_STATUS(store_.Verify("../x"), absl::StatusCode::kInvalidArgument, "../x");
  SnapshotContents twice = MakeContents("t", 1);
  twice.tensors.emplace_back("0.bias", Tensor({1}));
  EXPECT_STATUS(store_.Write(twice), absl::StatusCode::kInvalidArgument, "'0.bias'");
  SnapshotContents unnamed = MakeContents("u", 1);
  unnamed.tensors.emplace_back("", Tensor({1}));
  EXPECT_STATUS(store_.Write(unnamed), absl::StatusCode::kInvalidArgument, "empty");
  EXPECT_TRUE(ListedIds(store_).empty());
}

TEST_F(SnapshotStoreTest, ListSkipsLeftoversAndWriteRemovesThem) {
  ASSERT_OK(store_.Write(MakeContents("done", 5)));
  // A write that crashed before its rename, one whose manifest never landed, and a stray file.
  const std::string tmp = dir_ + "/.tmp-crashed-" + std::to_string(getpid());
  fs::create_directories(tmp);
  WriteBytes(tmp + "/manifest.json", ReadBytes(File("done", "manifest.json")));
  fs::create_directories(dir_ + "/half");
  WriteBytes(dir_ + "/half/tensors.bin", "xxxx");
  WriteBytes(dir_ + "/notes.txt", "hello");
  EXPECT_EQ(ListedIds(store_), std::vector<std::string>{"done"});
  ASSERT_OK(store_.Write(MakeContents("next", 6)));
  EXPECT_FALSE(fs::exists(tmp)) << "this process's leftover is removed by the next Write";
  EXPECT_EQ(ListedIds(store_), (std::vector<std::string>{"done", "next"}));
  for (const auto& entry : fs::directory_iterator(dir_)) {
    EXPECT_FALSE(entry.path().filename().string().starts_with(".tmp-")) << entry.path();
  }
}

TEST_F(SnapshotStoreTest, FlippedBitIsDataLossNamingTheTensor) {
  ASSERT_OK(store_.Write(MakeContents("a", 1)));
  std::string bytes = ReadBytes(File("a", "tensors.bin"));
  bytes[50] ^= 0x04;  // inside 0.bias, bytes [48, 64)
  WriteBytes(File("a", "tensors.bin"), bytes);
  EXPECT_STATUS(store_.Verify("a"), absl::StatusCode::kDataLoss, "snapshot 'a'");
  EXPECT_STATUS(store_.Verify("a"), absl::StatusCode::kDataLoss,
                "tensor '0.bias' in tensors.bin fails its CRC32C check");
  EXPECT_STATUS(store_.Read("a"), absl::StatusCode::kDataLoss, "'0.bias'");
  EXPECT_EQ(ListedIds(store_), std::vector<std::string>{"a"});  // listed; Verify tells
}

TEST_F(SnapshotStoreTest, TruncatedTensorsIsDataLoss) {
  ASSERT_OK(store_.Write(MakeContents("a", 1)));
  const std::string bytes = ReadBytes(File("a", "tensors.bin"));
  WriteBytes(File("a", "tensors.bin"), bytes.substr(0, 40));
  EXPECT_STATUS(store_.Verify("a"), absl::StatusCode::kDataLoss,
                "snapshot 'a' in " + dir_ + ": tensors.bin is truncated (40 of 68 bytes)");
  EXPECT_STATUS(store_.Verify("a"), absl::StatusCode::kDataLoss, "'0.weight' is cut short");
  WriteBytes(File("a", "tensors.bin"), bytes + "extra");
  EXPECT_STATUS(store_.Verify("a"), absl::StatusCode::kDataLoss,
                "tensors.bin has 73 bytes, the manifest says 68");
  fs::remove(File("a", "tensors.bin"));
  EXPECT_STATUS(store_.Verify("a"), absl::StatusCode::kDataLoss, "tensors.bin is missing");
}

TEST_F(SnapshotStoreTest, MissingManifestIsUnlistedAndDataLoss) {
  ASSERT_OK(store_.Write(MakeContents("a", 1)));
  ASSERT_OK(store_.Write(MakeContents("b", 2)));
  fs::remove(File("a", "manifest.json"));
  EXPECT_EQ(ListedIds(store_), std::vector<std::string>{"b"});
  // The directory is there, so the snapshot is not unknown: it lost its manifest.
  EXPECT_STATUS(store_.Verify("a"), absl::StatusCode::kDataLoss,
                "snapshot 'a' in " + dir_ + ": manifest.json is missing");
}

TEST_F(SnapshotStoreTest, GarbageManifestIsDataLoss) {
  ASSERT_OK(store_.Write(MakeContents("a", 1)));
  WriteBytes(File("a", "manifest.json"), "{\"format_version\": 1, \"id\": \"a\", garbage");
  EXPECT_TRUE(ListedIds(store_).empty());
  EXPECT_STATUS(store_.Verify("a"), absl::StatusCode::kDataLoss,
                "snapshot 'a' in " + dir_ + ": manifest.json is not a JSON object");
}

TEST_F(SnapshotStoreTest, ManifestWhoseOffsetsDoNotFitIsDataLoss) {
  ASSERT_OK(store_.Write(MakeContents("a", 1)));
  const nlohmann::json good = nlohmann::json::parse(ReadBytes(File("a", "manifest.json")));
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {[](nlohmann::json& m) { m["tensors"][1]["offset"] = 44; }, "'0.bias' at offset 44"},
      {[](nlohmann::json& m) { m["tensors"][1]["bytes"] = 12; }, "'0.bias' has 12 bytes"},
      {[](nlohmann::json& m) {
         m["tensors"][0]["shape"] = {3, 5};
       },
       "'0.weight' has 48 bytes"},
      {[](nlohmann::json& m) { m["bytes"] = 64; }, "'scale' at offset 64"},
      {[](nlohmann::json& m) { m["bytes"] = 100; }, "gives tensors.bin 100 bytes"},
      {[](nlohmann::json& m) { m["tensors"][0]["dtype"] = "F16"; }, "'0.weight' is not F32"},
      {[](nlohmann::json& m) { m["tensors"][2]["name"] = "0.bias"; }, "'0.bias' appears twice"},
      {[](nlohmann::json& m) { m["tensors"][1].erase("crc32c"); }, "'0.bias' lacks"},
      {[](nlohmann::json& m) { m["format_version"] = 2; }, "format_version"},
      {[](nlohmann::json& m) { m["id"] = "b"; }, "'a' as its id"},
      {[](nlohmann::json& m) { m.erase("step"); }, "step"},
      {[](nlohmann::json& m) { m["metadata"]["x"] = 3; }, "metadata 'x'"},
  };
  for (const Case& c : cases) {
    nlohmann::json m = good;
    c.edit(m);
    WriteBytes(File("a", "manifest.json"), m.dump());
    EXPECT_STATUS(store_.Verify("a"), absl::StatusCode::kDataLoss, c.expected);
    EXPECT_TRUE(ListedIds(store_).empty()) << c.expected;
  }
  WriteBytes(File("a", "manifest.json"), good.dump());
  EXPECT_OK(store_.Verify("a"));
}

TEST_F(SnapshotStoreTest, ListIsOrderedByStepThenCreated) {
  SnapshotContents late = MakeContents("z-first", 3);
  late.created = 100;
  SnapshotContents early = MakeContents("y-second", 3);
  early.created = 200;
  ASSERT_OK(store_.Write(MakeContents("x", 9)));
  ASSERT_OK(store_.Write(early));
  ASSERT_OK(store_.Write(late));
  ASSERT_OK(store_.Write(MakeContents("w", 1)));
  EXPECT_EQ(ListedIds(store_), (std::vector<std::string>{"w", "z-first", "y-second", "x"}));
}

TEST_F(SnapshotStoreTest, PruneKeepsTheNewestByStep) {
  for (int step : {30, 10, 50, 20, 40}) {
    ASSERT_OK(store_.Write(MakeContents(absl::StrCat("s", step), step)));
  }
  ASSERT_OK(store_.Prune(0));
  EXPECT_EQ(ListedIds(store_).size(), 5u);
  ASSERT_OK(store_.Prune(2));
  EXPECT_EQ(ListedIds(store_), (std::vector<std::string>{"s40", "s50"}));
  EXPECT_FALSE(fs::exists(dir_ + "/s10"));
  EXPECT_OK(store_.Verify("s50"));
  ASSERT_OK(store_.Prune(5));
  EXPECT_EQ(ListedIds(store_).size(), 2u);
  EXPECT_STATUS(store_.Prune(-1), absl::StatusCode::kInvalidArgument, "keep_last");
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    ++entries;
    EXPECT_FALSE(entry.path().filename().string().starts_with(".tmp-")) << entry.path();
  }
  EXPECT_EQ(entries, 2);
}

TEST_F(SnapshotStoreTest, PruneRemovesLeftoversOfDeadProcessesOnly) {
  ASSERT_OK(store_.Write(MakeContents("a", 1)));
  // A pid that cannot be running (beyond pid_max), and this process's own (a write in flight).
  const std::string dead = dir_ + "/.tmp-b-2147483646";
  const std::string mine = dir_ + "/.tmp-c-" + std::to_string(getpid());
  fs::create_directories(dead);
  fs::create_directories(mine);
  ASSERT_OK(store_.Prune(1));
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(mine));
  EXPECT_EQ(ListedIds(store_), std::vector<std::string>{"a"});
}

}  // namespace
}  // namespace psgrid
