// Tests for core/data: IDX and CSV readers, MNIST-format loading, GatherBatch, BatchSampler.
#include <stdlib.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/data/csv.h"
#include "core/data/dataset.h"
#include "core/data/idx.h"
#include "core/data/sampler.h"
#include "core/rng.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace psgrid {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::FloatEq;
using ::testing::HasSubstr;

using Bytes = std::string;

// An IDX file: magic (0, 0, type, rank), big-endian dims, then the payload.
Bytes MakeIdx(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& payload,
              uint8_t type = 0x08) {
  Bytes out = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(d >> shift));
  }
  out.append(payload.begin(), payload.end());
  return out;
}

std::vector<uint8_t> Iota(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 + 3);
  return v;
}

void WritePlain(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void WriteGz(const std::string& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

Bytes ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Each test gets a fresh directory under the test temp dir, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "/psgrid_data_test_XXXXXX";
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

// Expects `status` to have `code` and a message mentioning `path`.
void ExpectError(const absl::Status& status, absl::StatusCode code, const std::string& path) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(path));
}

// ----------------------------------------------------------------------------- ReadIdxFile

using IdxReader = TempDirTest;

TEST_F(IdxReader, ReadsPlainFileDimsAndValues) {
  const std::vector<uint8_t> payload = Iota(2 * 3 * 4);
  WritePlain(Path("a.idx"), MakeIdx({2, 3, 4}, payload));
  absl::StatusOr<IdxArray> idx = ReadIdxFile(Path("a.idx"));
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_THAT(idx->dims, ElementsAre(2, 3, 4));
  EXPECT_EQ(idx->data, payload);
}

TEST_F(IdxReader, ReadsGzipFileDimsAndValues) {
  const std::vector<uint8_t> payload = Iota(5 * 7);
  WriteGz(Path("a.idx.gz"), MakeIdx({5, 7}, payload));
  absl::StatusOr<IdxArray> idx = ReadIdxFile(Path("a.idx.gz"));
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_THAT(idx->dims, ElementsAre(5, 7));
  EXPECT_EQ(idx->data, payload);
}

TEST_F(IdxReader, ReadsRankOneAndRankFour) {
  WritePlain(Path("r1"), MakeIdx({3}, {9, 8, 7}));
  absl::StatusOr<IdxArray> r1 = ReadIdxFile(Path("r1"));
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_THAT(r1->dims, ElementsAre(3));
  EXPECT_THAT(r1->data, ElementsAre(9, 8, 7));

  WritePlain(Path("r4"), MakeIdx({1, 2, 1, 2}, {1, 2, 3, 4}));
  absl::StatusOr<IdxArray> r4 = ReadIdxFile(Path("r4"));
  ASSERT_TRUE(r4.ok()) << r4.status();
  EXPECT_THAT(r4->dims, ElementsAre(1, 2, 1, 2));
}

TEST_F(IdxReader, ZeroFirstDimensionIsAnEmptyArray) {
  WritePlain(Path("empty"), MakeIdx({0, 28, 28}, {}));
  absl::StatusOr<IdxArray> idx = ReadIdxFile(Path("empty"));
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_THAT(idx->dims, ElementsAre(0, 28, 28));
  EXPECT_TRUE(idx->data.empty());
}

TEST_F(IdxReader, MissingFileIsNotFound) {
  ExpectError(ReadIdxFile(Path("nope.gz")).status(), absl::StatusCode::kNotFound, "nope.gz");
}

TEST_F(IdxReader, DirectoryIsNotFound) {
  ExpectError(ReadIdxFile(dir_).status(), absl::StatusCode::kNotFound, dir_);
}

TEST_F(IdxReader, WrongMagicIsInvalidArgument) {
  const Bytes good = MakeIdx({2}, {1, 2});
  Bytes nonzero_first = good;
  nonzero_first[0] = 1;
  Bytes nonzero_second = good;
  nonzero_second[1] = 0x20;
  Bytes rank0 = good;
  rank0[3] = 0;
  Bytes rank5 = good;
  rank5[3] = 5;
  for (const Bytes& bytes : {nonzero_first, nonzero_second, rank0, rank5}) {
    WritePlain(Path("magic.idx"), bytes);
    ExpectError(ReadIdxFile(Path("magic.idx")).status(), absl::StatusCode::kInvalidArgument,
                "magic.idx");
  }
}

TEST_F(IdxReader, UnsupportedElementTypeIsInvalidArgument) {
  for (uint8_t type : {0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x42}) {
    WritePlain(Path("type.idx"), MakeIdx({1}, {0, 0, 0, 0}, type));
    absl::Status status = ReadIdxFile(Path("type.idx")).status();
    ExpectError(status, absl::StatusCode::kInvalidArgument, "type.idx");
    EXPECT_THAT(std::string(status.message()), HasSubstr("type"));
  }
}

TEST_F(IdxReader, ZeroInnerDimensionIsInvalidArgument) {
  WritePlain(Path("zero.idx"), MakeIdx({3, 0}, {}));
  ExpectError(ReadIdxFile(Path("zero.idx")).status(), absl::StatusCode::kInvalidArgument,
              "zero.idx");
}

TEST_F(IdxReader, DimensionsOverFourGibAreInvalidArgument) {
  // 2^16 * 2^16 * 2 = 8 GiB; the others overflow 64 bits, or hide behind a first dim of 0.
  const std::vector<std::vector<uint32_t>> cases = {
      {65536, 65536, 2},
      {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF},
      {0, 0xFFFFFFFF, 0xFFFFFFFF}};
  for (const auto& dims : cases) {
    WritePlain(Path("huge.idx"), MakeIdx(dims, {1, 2, 3}));
    ExpectError(ReadIdxFile(Path("huge.idx")).status(), absl::StatusCode::kInvalidArgument,
                "huge.idx");
  }
}

TEST_F(IdxReader, HugeClaimedPayloadInATinyFileIsDataLoss) {
  WritePlain(Path("liar.idx"), MakeIdx({65536, 65536}, {1, 2, 3}));  // exactly 4 GiB claimed
  ExpectError(ReadIdxFile(Path("liar.idx")).status(), absl::StatusCode::kDataLoss, "liar.idx");
}

TEST_F(IdxReader, EmptyFileIsDataLoss) {
  WritePlain(Path("empty.idx"), "");
  ExpectError(ReadIdxFile(Path("empty.idx")).status(), absl::StatusCode::kDataLoss, "empty.idx");
}

TEST_F(IdxReader, TruncatedHeaderIsDataLoss) {
  const Bytes full = MakeIdx({2, 3}, Iota(6));
  for (size_t keep : {2, 5, 11}) {  // inside the magic, the first dim, the second dim
    WritePlain(Path("hdr.idx"), full.substr(0, keep));
    absl::Status status = ReadIdxFile(Path("hdr.idx")).status();
    ExpectError(status, absl::StatusCode::kDataLoss, "hdr.idx");
    EXPECT_THAT(std::string(status.message()), HasSubstr("header"));
  }
}

TEST_F(IdxReader, TruncatedPayloadIsDataLoss) {
  const Bytes full = MakeIdx({4, 4}, Iota(16));
  WritePlain(Path("short.idx"), full.substr(0, full.size() - 1));
  absl::Status status = ReadIdxFile(Path("short.idx")).status();
  ExpectError(status, absl::StatusCode::kDataLoss, "short.idx");
  EXPECT_THAT(std::string(status.message()), HasSubstr("payload"));

  WriteGz(Path("short.idx.gz"), full.substr(0, full.size() - 5));
  ExpectError(ReadIdxFile(Path("short.idx.gz")).status(), absl::StatusCode::kDataLoss,
              "short.idx.gz");
}

TEST_F(IdxReader, TrailingBytesAreDataLoss) {
  const Bytes full = MakeIdx({4, 4}, Iota(16)) + "x";
  WritePlain(Path("long.idx"), full);
  absl::Status status = ReadIdxFile(Path("long.idx")).status();
  ExpectError(status, absl::StatusCode::kDataLoss, "long.idx");
  EXPECT_THAT(std::string(status.message()), HasSubstr("trailing"));

  WriteGz(Path("long.idx.gz"), full);
  ExpectError(ReadIdxFile(Path("long.idx.gz")).status(), absl::StatusCode::kDataLoss,
              "long.idx.gz");
}

TEST_F(IdxReader, CorruptGzipBytesAreDataLoss) {
  std::vector<uint8_t> payload(64 * 64);
  Rng rng(7);
  for (uint8_t& b : payload) b = static_cast<uint8_t>(rng.Below(16));  // compressible, not trivial
  WriteGz(Path("good.gz"), MakeIdx({64, 64}, payload));
  const Bytes good = ReadBytes(Path("good.gz"));
  ASSERT_GT(good.size(), 200u);

  // Flip bytes in the middle of the deflate stream, and separately in the CRC trailer.
  Bytes middle = good;
  for (size_t i = middle.size() / 2; i < middle.size() / 2 + 16; ++i) middle[i] ^= 0x5A;
  Bytes crc = good;
  crc[crc.size() - 6] ^= 0xFF;
  for (const Bytes& bytes : {middle, crc}) {
    WritePlain(Path("bad.gz"), bytes);
    ExpectError(ReadIdxFile(Path("bad.gz")).status(), absl::StatusCode::kDataLoss, "bad.gz");
  }
}

TEST_F(IdxReader, TruncatedGzipIsDataLoss) {
  WriteGz(Path("good.gz"), MakeIdx({32, 32}, Iota(32 * 32)));
  const Bytes good = ReadBytes(Path("good.gz"));
  for (size_t keep : {good.size() / 2, good.size() - 4}) {  // mid-stream, and without the length
    WritePlain(Path("cut.gz"), good.substr(0, keep));
    ExpectError(ReadIdxFile(Path("cut.gz")).status(), absl::StatusCode::kDataLoss, "cut.gz");
  }
}

// ------------------------------------------------------------ ReadIdxImagesAndLabels etc.

using IdxDataset = TempDirTest;

TEST_F(IdxDataset, ScalesPixelsToUnitRangeAndCountsClasses) {
  WritePlain(Path("img"), MakeIdx({2, 1, 3}, {0, 255, 51, 102, 204, 1}));
  WritePlain(Path("lbl"), MakeIdx({2}, {4, 1}));
  absl::StatusOr<Dataset> data = ReadIdxImagesAndLabels(Path("img"), Path("lbl"));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->size(), 2);
  EXPECT_THAT(data->features.shape(), ElementsAre(2, 1, 3));
  EXPECT_THAT(data->sample_shape(), ElementsAre(1, 3));
  EXPECT_THAT(data->features.span(), ElementsAre(0.0f, 1.0f, FloatEq(0.2f), FloatEq(0.4f),
                                                 FloatEq(0.8f), FloatEq(1.0f / 255)));
  EXPECT_THAT(data->labels, ElementsAre(4, 1));
  EXPECT_EQ(data->num_classes, 5);
  EXPECT_FALSE(data->is_regression());
}

TEST_F(IdxDataset, LabelCountMismatchIsInvalidArgumentNamingBothFilesAndCounts) {
  WritePlain(Path("images"), MakeIdx({3, 2, 2}, Iota(12)));
  WritePlain(Path("labels"), MakeIdx({2}, {0, 1}));
  absl::Status status = ReadIdxImagesAndLabels(Path("images"), Path("labels")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  const std::string message(status.message());
  EXPECT_THAT(message, HasSubstr(Path("images")));
  EXPECT_THAT(message, HasSubstr(Path("labels")));
  EXPECT_THAT(message, HasSubstr("2"));
  EXPECT_THAT(message, HasSubstr("3"));
}

TEST_F(IdxDataset, WrongRanksAreInvalidArgument) {
  WritePlain(Path("flat_images"), MakeIdx({2, 4}, Iota(8)));
  WritePlain(Path("labels"), MakeIdx({2}, {0, 1}));
  WritePlain(Path("images"), MakeIdx({2, 2, 2}, Iota(8)));
  WritePlain(Path("labels2d"), MakeIdx({2, 1}, {0, 1}));
  ExpectError(ReadIdxImagesAndLabels(Path("flat_images"), Path("labels")).status(),
              absl::StatusCode::kInvalidArgument, "flat_images");
  ExpectError(ReadIdxImagesAndLabels(Path("images"), Path("labels2d")).status(),
              absl::StatusCode::kInvalidArgument, "labels2d");
}

TEST_F(IdxDataset, ReaderErrorsPassThrough) {
  WritePlain(Path("images"), MakeIdx({2, 2, 2}, Iota(8)));
  ExpectError(ReadIdxImagesAndLabels(Path("images"), Path("missing")).status(),
              absl::StatusCode::kNotFound, "missing");
}

// Writes a 4-file MNIST-format directory; train has labels 0..2, test 0..4 unless given.
void WriteMnistDir(const std::string& dir, bool gz, uint8_t test_label_max = 4) {
  std::filesystem::create_directories(dir);
  const std::string suffix = gz ? ".gz" : "";
  auto write = gz ? WriteGz : WritePlain;
  write(dir + "/train-images-idx3-ubyte" + suffix, MakeIdx({6, 2, 3}, Iota(36)));
  write(dir + "/train-labels-idx1-ubyte" + suffix, MakeIdx({6}, {0, 1, 2, 2, 1, 0}));
  write(dir + "/t10k-images-idx3-ubyte" + suffix, MakeIdx({2, 2, 3}, Iota(12)));
  write(dir + "/t10k-labels-idx1-ubyte" + suffix, MakeIdx({2}, {0, test_label_max}));
}

using MnistFormat = TempDirTest;

TEST_F(MnistFormat, LoadsGzipDirectory) {
  WriteMnistDir(Path("gz"), /*gz=*/true);
  absl::StatusOr<TrainTestData> data = LoadMnistFormat(Path("gz"));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->train.features.shape(), ElementsAre(6, 2, 3));
  EXPECT_THAT(data->train.labels, ElementsAre(0, 1, 2, 2, 1, 0));
  EXPECT_THAT(data->test.features.shape(), ElementsAre(2, 2, 3));
  EXPECT_THAT(data->test.labels, ElementsAre(0, 4));
  EXPECT_FLOAT_EQ(data->train.features[1], 10.0f / 255);
}

TEST_F(MnistFormat, LoadsPlainDirectory) {
  WriteMnistDir(Path("plain"), /*gz=*/false);
  absl::StatusOr<TrainTestData> data = LoadMnistFormat(Path("plain"));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->train.size(), 6);
  EXPECT_EQ(data->test.size(), 2);
}

TEST_F(MnistFormat, NumClassesIsTheMaxOverTrainAndTest) {
  WriteMnistDir(Path("d"), /*gz=*/true, /*test_label_max=*/4);
  absl::StatusOr<TrainTestData> data = LoadMnistFormat(Path("d"));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->train.num_classes, 5);
  EXPECT_EQ(data->test.num_classes, 5);
}

TEST_F(MnistFormat, PrefersGzipWhenBothExist) {
  WriteMnistDir(Path("both"), /*gz=*/true);
  // A plain train-labels file that would fail to load: it must not be read.
  WritePlain(Path("both/train-labels-idx1-ubyte"), "garbage");
  absl::StatusOr<TrainTestData> data = LoadMnistFormat(Path("both"));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->train.size(), 6);
}

TEST_F(MnistFormat, MissingFileIsNotFoundNamingDirectoryAndFile) {
  WriteMnistDir(Path("partial"), /*gz=*/true);
  std::filesystem::remove(Path("partial/t10k-labels-idx1-ubyte.gz"));
  absl::Status status = LoadMnistFormat(Path("partial")).status();
  ExpectError(status, absl::StatusCode::kNotFound, Path("partial"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("t10k-labels-idx1-ubyte"));

  ExpectError(LoadMnistFormat(Path("absent")).status(), absl::StatusCode::kNotFound,
              Path("absent"));
}

// Loads the real Fashion-MNIST when the machine has it.
TEST(FashionMnist, LoadsSixtyThousandTrainAndTenThousandTestImages) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    GTEST_SKIP() << dir << " is absent; skipping the real-data test";
  }
  absl::StatusOr<TrainTestData> data = LoadMnistFormat(dir);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->train.features.shape(), ElementsAre(60000, 28, 28));
  EXPECT_THAT(data->test.features.shape(), ElementsAre(10000, 28, 28));
  EXPECT_EQ(data->train.labels.size(), 60000u);
  EXPECT_EQ(data->test.labels.size(), 10000u);
  EXPECT_EQ(data->train.num_classes, 10);
  EXPECT_EQ(data->test.num_classes, 10);
  for (const Dataset* d : {&data->train, &data->test}) {
    const auto [lo, hi] = std::minmax_element(d->features.span().begin(), d->features.span().end());
    EXPECT_EQ(*lo, 0.0f);
    EXPECT_EQ(*hi, 1.0f);
    for (int32_t label : d->labels) ASSERT_TRUE(label >= 0 && label < 10) << label;
  }
}

// ------------------------------------------------------------------------- GatherBatch

TEST(GatherBatch, CopiesTheIndexedRowsAndLabels) {
  Dataset data;
  data.features = Tensor({4, 1, 2}, std::vector<float>{0, 1, 10, 11, 20, 21, 30, 31});
  data.labels = {7, 8, 9, 6};
  data.num_classes = 10;
  Tensor x;
  std::vector<int32_t> labels;
  const std::vector<int64_t> indices = {3, 0, 3};
  GatherBatch(data, indices, &x, &labels, nullptr);
  EXPECT_THAT(x.shape(), ElementsAre(3, 1, 2));
  EXPECT_THAT(x.span(), ElementsAre(30, 31, 0, 1, 30, 31));
  EXPECT_THAT(labels, ElementsAre(6, 7, 6));
}

TEST(GatherBatch, ReusesTheOutputBufferForSmallerBatches) {
  Dataset data;
  data.features = Tensor({4, 2}, std::vector<float>{0, 1, 10, 11, 20, 21, 30, 31});
  data.labels = {0, 1, 2, 3};
  Tensor x;
  std::vector<int32_t> labels;
  GatherBatch(data, std::vector<int64_t>{0, 1, 2}, &x, &labels, nullptr);
  const float* buffer = x.data();
  GatherBatch(data, std::vector<int64_t>{2}, &x, &labels, nullptr);
  EXPECT_EQ(x.data(), buffer);
  EXPECT_THAT(x.shape(), ElementsAre(1, 2));
  EXPECT_THAT(x.span(), ElementsAre(20, 21));
  GatherBatch(data, std::vector<int64_t>{}, &x, &labels, nullptr);
  EXPECT_THAT(x.shape(), ElementsAre(0, 2));
  EXPECT_TRUE(labels.empty());
}

TEST(GatherBatch, CopiesRegressionTargets) {
  Dataset data;
  data.features = Tensor({3, 2}, std::vector<float>{1, 2, 3, 4, 5, 6});
  data.targets = Tensor({3, 1}, std::vector<float>{-1, -2, -3});
  Tensor x, targets;
  const std::vector<int64_t> indices = {2, 1};
  GatherBatch(data, indices, &x, nullptr, &targets);
  EXPECT_THAT(x.span(), ElementsAre(5, 6, 3, 4));
  EXPECT_THAT(targets.shape(), ElementsAre(2, 1));
  EXPECT_THAT(targets.span(), ElementsAre(-3, -2));
}

// ------------------------------------------------------------------------------ ReadCsv

using CsvReader = TempDirTest;

TEST_F(CsvReader, ReadsRowsWithoutHeader) {
  WritePlain(Path("a.csv"), "1,2,3\n4,5.5,-6e-1\n");
  absl::StatusOr<Dataset> data = ReadCsv(Path("a.csv"));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->size(), 2);
  EXPECT_THAT(data->features.shape(), ElementsAre(2, 2));
  EXPECT_THAT(data->features.span(), ElementsAre(1, 2, 4, 5.5f));
  EXPECT_THAT(data->targets.shape(), ElementsAre(2, 1));
  EXPECT_THAT(data->targets.span(), ElementsAre(3, FloatEq(-0.6f)));
  EXPECT_TRUE(data->labels.empty());
  EXPECT_EQ(data->num_classes, 0);
  EXPECT_TRUE(data->is_regression());
}

TEST_F(CsvReader, SkipsHeaderBlankLinesAndCarriageReturns) {
  WritePlain(Path("h.csv"), "\r\nx,y\r\n1, 2\r\n\r\n  \n3 ,4\r\n");
  absl::StatusOr<Dataset> data = ReadCsv(Path("h.csv"));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->features.shape(), ElementsAre(2, 1));
  EXPECT_THAT(data->features.span(), ElementsAre(1, 3));
  EXPECT_THAT(data->targets.span(), ElementsAre(2, 4));
}

TEST_F(CsvReader, AcceptsAFinalLineWithoutNewline) {
  WritePlain(Path("n.csv"), "1,2\n3,4");
  absl::StatusOr<Dataset> data = ReadCsv(Path("n.csv"));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->size(), 2);
}

TEST_F(CsvReader, MissingFileIsNotFound) {
  ExpectError(ReadCsv(Path("missing.csv")).status(), absl::StatusCode::kNotFound, "missing.csv");
}

// Expects INVALID_ARGUMENT naming the file and containing each of `parts`.
void ExpectCsvError(const std::string& path, const std::vector<std::string>& parts) {
  absl::Status status = ReadCsv(path).status();
  ExpectError(status, absl::StatusCode::kInvalidArgument, path);
  for (const std::string& part : parts) EXPECT_THAT(std::string(status.message()), HasSubstr(part));
}

TEST_F(CsvReader, NonNumericFieldNamesLineAndColumn) {
  WritePlain(Path("bad.csv"), "a,b\n1,2\n\n3,oops\n");
  ExpectCsvError(Path("bad.csv"), {"line 4", "column 2", "oops"});
  WritePlain(Path("empty_field.csv"), "1,2,3\n4,,6\n");
  ExpectCsvError(Path("empty_field.csv"), {"line 2", "column 2"});
}

TEST_F(CsvReader, NonFiniteFieldIsInvalidArgument) {
  WritePlain(Path("inf.csv"), "1,2\n3,inf\n");
  ExpectCsvError(Path("inf.csv"), {"line 2", "column 2"});
  WritePlain(Path("nan.csv"), "nan,2\n");
  ExpectCsvError(Path("nan.csv"), {"line 1", "column 1"});
  WritePlain(Path("big.csv"), "1,2\n1e60,2\n");  // finite as a double, not as a float
  ExpectCsvError(Path("big.csv"), {"line 2", "column 1"});
}

TEST_F(CsvReader, ColumnCountMismatchNamesLine) {
  WritePlain(Path("short.csv"), "h1,h2,h3\n1,2,3\n4,5\n");
  ExpectCsvError(Path("short.csv"), {"line 3", "column 3"});
  WritePlain(Path("long.csv"), "1,2\n3,4\n5,6,7\n");
  ExpectCsvError(Path("long.csv"), {"line 3", "column 3"});
}

TEST_F(CsvReader, SingleColumnIsInvalidArgument) {
  WritePlain(Path("one.csv"), "y\n1\n2\n");
  ExpectCsvError(Path("one.csv"), {"line 2", "column 1"});
}

TEST_F(CsvReader, NoDataRowsIsInvalidArgument) {
  WritePlain(Path("empty.csv"), "");
  ExpectCsvError(Path("empty.csv"), {"no data rows"});
  WritePlain(Path("header_only.csv"), "x,y\n\n");
  ExpectCsvError(Path("header_only.csv"), {"no data rows"});
}

// ---------------------------------------------------------------------------- BatchSampler

// All the samples of one epoch, step-major then rank-major; checks each part's size.
std::vector<int64_t> EpochSamples(BatchSampler& sampler, int64_t epoch, int64_t batch, int world) {
  sampler.StartEpoch(epoch);
  std::vector<int64_t> all;
  for (int64_t t = 0; t < sampler.steps_per_epoch(); ++t) {
    for (int r = 0; r < world; ++r) {
      std::span<const int64_t> part = sampler.Batch(t, r);
      EXPECT_LE(static_cast<int64_t>(part.size()), batch);
      all.insert(all.end(), part.begin(), part.end());
    }
  }
  return all;
}

TEST(BatchSampler, StepsPerEpochRoundsUp) {
  EXPECT_EQ(BatchSampler(100, 10, 2, false, 0).steps_per_epoch(), 5);
  EXPECT_EQ(BatchSampler(101, 10, 2, false, 0).steps_per_epoch(), 6);
  EXPECT_EQ(BatchSampler(3, 10, 4, false, 0).steps_per_epoch(), 1);
  EXPECT_EQ(BatchSampler(0, 10, 4, false, 0).steps_per_epoch(), 0);
}

TEST(BatchSampler, RanksArePartsDisjointAndCoverEachEpochExactlyOnce) {
  struct Case {
    int64_t n, b;
    int w;
  };
  for (const Case& c : {Case{10, 3, 2}, Case{100, 7, 4}, Case{5, 10, 3}, Case{12, 2, 3},
                        Case{1, 1, 1}, Case{97, 5, 8}, Case{64, 8, 8}, Case{0, 4, 2}}) {
    for (bool shuffle : {false, true}) {
      SCOPED_TRACE(testing::Message()
                   << "N=" << c.n << " B=" << c.b << " W=" << c.w << " shuffle=" << shuffle);
      BatchSampler sampler(c.n, c.b, c.w, shuffle, /*seed=*/42);
      for (int64_t epoch = 0; epoch < 3; ++epoch) {
        std::vector<int64_t> all = EpochSamples(sampler, epoch, c.b, c.w);
        std::sort(all.begin(), all.end());
        std::vector<int64_t> expected(c.n);
        std::iota(expected.begin(), expected.end(), 0);
        EXPECT_EQ(all, expected);
      }
    }
  }
}

TEST(BatchSampler, TailOfTheEpochGivesShortAndEmptyParts) {
  BatchSampler sampler(10, 3, 3, false, 0);  // step 1 covers positions 9..17 of 10
  sampler.StartEpoch(0);
  ASSERT_EQ(sampler.steps_per_epoch(), 2);
  EXPECT_THAT(sampler.Batch(1, 0), ElementsAre(9));
  EXPECT_TRUE(sampler.Batch(1, 1).empty());
  EXPECT_TRUE(sampler.Batch(1, 2).empty());
}

TEST(BatchSampler, UnshuffledWorkersSeeTheSingleProcessBatches) {
  for (int64_t n : {50, 53}) {
    const int64_t b = 4;
    const int w = 3;
    BatchSampler workers(n, b, w, /*shuffle=*/false, 9);
    BatchSampler single(n, b * w, 1, /*shuffle=*/false, 9);
    workers.StartEpoch(2);
    single.StartEpoch(2);
    ASSERT_EQ(workers.steps_per_epoch(), single.steps_per_epoch());
    for (int64_t t = 0; t < single.steps_per_epoch(); ++t) {
      std::vector<int64_t> joined;
      for (int r = 0; r < w; ++r) {
        std::span<const int64_t> part = workers.Batch(t, r);
        joined.insert(joined.end(), part.begin(), part.end());
      }
      std::vector<int64_t> expected;
      for (int64_t i = t * w * b; i < std::min(n, (t + 1) * w * b); ++i) expected.push_back(i);
      EXPECT_EQ(joined, expected) << "step " << t;
      EXPECT_THAT(joined, ElementsAreArray(single.Batch(t, 0)));
    }
  }
}

TEST(BatchSampler, ShuffleIsTheDocumentedFisherYates) {
  const int64_t n = 37;
  BatchSampler sampler(n, n, 1, /*shuffle=*/true, /*seed=*/1234);
  for (int64_t epoch : {0, 5}) {
    std::vector<int64_t> expected(n);
    std::iota(expected.begin(), expected.end(), 0);
    Rng rng(1234, "epoch/" + std::to_string(epoch));
    for (int64_t i = n - 1; i >= 1; --i) std::swap(expected[i], expected[rng.Below(i + 1)]);
    sampler.StartEpoch(epoch);
    EXPECT_THAT(sampler.Batch(0, 0), ElementsAreArray(expected));
  }
}

TEST(BatchSampler, ShuffleIsDeterministicForASeed) {
  BatchSampler a(500, 16, 4, true, 77);
  BatchSampler b(500, 16, 4, true, 77);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    EXPECT_EQ(EpochSamples(a, epoch, 16, 4), EpochSamples(b, epoch, 16, 4));
  }
}

TEST(BatchSampler, DifferentSeedsAndEpochsGiveDifferentOrders) {
  BatchSampler a(500, 16, 4, true, 1);
  BatchSampler b(500, 16, 4, true, 2);
  const std::vector<int64_t> a0 = EpochSamples(a, 0, 16, 4);
  const std::vector<int64_t> a1 = EpochSamples(a, 1, 16, 4);
  EXPECT_NE(a0, EpochSamples(b, 0, 16, 4));
  EXPECT_NE(a0, a1);
  std::vector<int64_t> identity(500);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(a0, identity);
  // Going back to an epoch reproduces it.
  EXPECT_EQ(EpochSamples(a, 0, 16, 4), a0);
}

}  // namespace
}  // namespace psgrid
