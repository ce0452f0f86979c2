#include "core/data/text.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace psgrid {
namespace {

// The samples of text[begin, end): windows of `length` ids and the id after each.
Dataset Windows(const std::vector<int32_t>& ids, int64_t begin, int64_t end, int length,
                int vocabulary) {
  Dataset out;
  const int64_t n = std::max<int64_t>(0, end - begin - length);
  out.features = Tensor({n, length});
  out.labels.resize(n);
  out.num_classes = vocabulary;
  float* x = out.features.data();
  for (int64_t i = 0; i < n; ++i) {
    for (int t = 0; t < length; ++t) x[i * length + t] = static_cast<float>(ids[begin + i + t]);
    out.labels[i] = ids[begin + i + length];
  }
  return out;
}

}  // namespace

absl::StatusOr<std::u32string> DecodeUtf8(const std::string& bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  for (size_t i = 0; i < n;) {
    const unsigned char b = s[i];
    int extra = 0;
    char32_t c = 0, least = 0;
    if (b < 0x80) {
      c = b;
    } else if ((b & 0xE0) == 0xC0) {
      extra = 1, c = b & 0x1F, least = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      extra = 2, c = b & 0x0F, least = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      extra = 3, c = b & 0x07, least = 0x10000;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("not UTF-8: byte 0x", absl::Hex(b), " at offset ", i));
    }
    for (int k = 1; k <= extra; ++k) {
      if (i + k >= n || (s[i + k] & 0xC0) != 0x80) {
        return absl::InvalidArgumentError(
            absl::StrCat("not UTF-8: a sequence cut short at offset ", i));
      }
      c = (c << 6) | (s[i + k] & 0x3F);
    }
    if (c < least || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
      return absl::InvalidArgumentError(
          absl::StrCat("not UTF-8: an invalid code point at offset ", i));
    }
    out.push_back(c);
    i += extra + 1;
  }
  return out;
}

absl::StatusOr<TextData> LoadTextData(const std::string& path, int sequence_length) {
  if (sequence_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.sequence_length: must be at least 1, got ", sequence_length));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("data.path: cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<std::u32string> text = DecodeUtf8(buffer.str());
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("data.path: ", path, ": ", text.status().message()));
  }
  TextData out;
  out.vocabulary.assign(text->begin(), text->end());
  std::sort(out.vocabulary.begin(), out.vocabulary.end());
  out.vocabulary.erase(std::unique(out.vocabulary.begin(), out.vocabulary.end()),
                       out.vocabulary.end());
  std::vector<int32_t> ids(text->size());
  for (size_t i = 0; i < text->size(); ++i) {
    ids[i] = static_cast<int32_t>(
        std::lower_bound(out.vocabulary.begin(), out.vocabulary.end(), (*text)[i]) -
        out.vocabulary.begin());
  }
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t tail = n / 10;
  if (n - tail <= sequence_length || tail <= sequence_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data.path: ", path, " has ", n, " characters; with data.sequence_length ",
        sequence_length, " both its first 90% and its last 10% need more than ", sequence_length));
  }
  const int vocabulary = static_cast<int>(out.vocabulary.size());
  out.data.train = Windows(ids, 0, n - tail, sequence_length, vocabulary);
  out.data.test = Windows(ids, n - tail, n, sequence_length, vocabulary);
  // The unigram baseline: training frequencies (add-one), scored on the validation labels.
  std::vector<double> counts(vocabulary, 1.0);
  for (int64_t i = 0; i < n - tail; ++i) counts[ids[i]] += 1.0;
  const double total = static_cast<double>(n - tail + vocabulary);
  double nats = 0;
  for (int32_t label : out.data.test.labels) nats -= std::log(counts[label] / total);
  out.unigram_cross_entropy = nats / static_cast<double>(out.data.test.labels.size());
  return out;
}

}  // namespace psgrid
