// Character-level text data: vocabulary, windows and next-character labels, the held-out tail,
// the unigram baseline, and UTF-8 errors.
#include <cmath>
#include <string>

#include "core/data/loader.h"
#include "core/data/text.h"
#include "proto/job_spec_codec.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::WriteTempFile;

TEST(TextData, WindowsAndLabelsFollowTheText) {
  // 40 characters: "abcd" x 10; vocabulary a, b, c, d; the last 4 characters validate.
  std::string text;
  for (int i = 0; i < 10; ++i) text += "abcd";
  auto data = LoadTextData(WriteTempFile("text_abcd.txt", text), 3);
  ASSERT_OK(data);
  EXPECT_EQ(data->vocabulary, (std::vector<char32_t>{U'a', U'b', U'c', U'd'}));
  const Dataset& train = data->data.train;
  ASSERT_EQ(train.size(), 36 - 3);
  EXPECT_EQ(train.sample_shape(), Shape({3}));
  EXPECT_EQ(train.num_classes, 4);
  for (int64_t i = 0; i < train.size(); ++i) {
    for (int t = 0; t < 3; ++t) EXPECT_EQ(train.features[i * 3 + t], static_cast<float>((i + t) % 4));
    EXPECT_EQ(train.labels[i], (i + 3) % 4);
  }
  ASSERT_EQ(data->data.test.size(), 1);  // the tail "abcd": one window "abc" → d
  EXPECT_EQ(data->data.test.labels[0], 3);
  // Uniform frequencies: the baseline is log 4 (add-one smoothing keeps it so).
  EXPECT_NEAR(data->unigram_cross_entropy, std::log(4.0), 1e-12);
}

TEST(TextData, MultiByteCharactersAreOneIdEach) {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "é€😀a";
  auto data = LoadTextData(WriteTempFile("text_utf8.txt", text), 2);
  ASSERT_OK(data);
  EXPECT_EQ(data->vocabulary, (std::vector<char32_t>{U'a', U'é', U'€', U'😀'}));
  EXPECT_EQ(data->data.train.size() + data->data.test.size(), 108 - 2 + 12 - 2);
}

TEST(TextData, BadInputIsRefusedNamingTheProblem) {
  EXPECT_STATUS(LoadTextData(WriteTempFile("text_bad.txt", std::string(50, 'a') + "\xC3("), 4),
                absl::StatusCode::kInvalidArgument, "offset 50");
  EXPECT_STATUS(DecodeUtf8("\xE2\x82"), absl::StatusCode::kInvalidArgument, "cut short");
  EXPECT_STATUS(DecodeUtf8("\xC0\x80"), absl::StatusCode::kInvalidArgument, "invalid code point");
  EXPECT_STATUS(DecodeUtf8("\xED\xA0\x80"), absl::StatusCode::kInvalidArgument, "invalid");
  EXPECT_STATUS(DecodeUtf8("\x80"), absl::StatusCode::kInvalidArgument, "byte 0x80");
  EXPECT_STATUS(LoadTextData(WriteTempFile("text_short.txt", "abcdefghij"), 4),
                absl::StatusCode::kInvalidArgument, "characters");
  EXPECT_STATUS(LoadTextData(WriteTempFile("text_zero.txt", std::string(100, 'a')), 0),
                absl::StatusCode::kInvalidArgument, "data.sequence_length");
  EXPECT_STATUS(LoadTextData("/nonexistent/psgrid.txt", 4), absl::StatusCode::kNotFound,
                "/nonexistent/psgrid.txt");
}

TEST(TextData, AJobSpecNamesATextFile) {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "hello world ";
  const std::string path = WriteTempFile("text_spec.txt", text);
  auto spec = ParseJobSpec("model: {layers: [{type: dense, units: 8}]}\n"
                           "data: {dataset: text, path: " + path + ", sequence_length: 16}\n",
                           "spec");
  ASSERT_OK(spec);
  auto shape = DescribeJobData(spec->data());
  ASSERT_OK(shape);
  EXPECT_EQ(shape->sample_shape, Shape({16}));
  EXPECT_EQ(shape->output_width, 8);  // " dehlorw"
  auto defaults = ParseJobSpec("model: {layers: [{type: dense, units: 8}]}\n"
                               "data: {dataset: text, path: " + path + "}\n", "spec");
  ASSERT_OK(defaults);
  EXPECT_EQ(defaults->data().sequence_length(), 64);
}

TEST(TextData, TheGplTextEveryDebianMachineHas) {
  const std::string gpl = "/usr/share/common-licenses/GPL-3";
  auto data = LoadTextData(gpl, 64);
  if (!data.ok() && data.status().code() == absl::StatusCode::kNotFound) {
    GTEST_SKIP() << gpl << " is not on this machine";
  }
  ASSERT_OK(data);
  EXPECT_GT(data->data.train.size(), 25000);
  EXPECT_GT(data->vocabulary.size(), 60u);
  // English text: a unigram model is worth about 3 nats/char, far from uniform.
  EXPECT_LT(data->unigram_cross_entropy, std::log(static_cast<double>(data->vocabulary.size())));
}

}  // namespace
}  // namespace psgrid
