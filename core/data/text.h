// Character-level text data from any UTF-8 file, for next-character prediction.
//
//   ASSIGN_OR_RETURN(TextData text, LoadTextData("/usr/share/common-licenses/GPL-3", 64));
//   // text.data.train.features [N, 64]: character ids (exact integers as float32)
//   // text.data.train.labels   [N]: the id of the character after each window
//
// The vocabulary is every distinct Unicode code point of the file, in code point order (ids
// 0..V−1). The text is split by characters: the first 90% trains, the last 10% (the held-out
// tail) validates. Sample i of a part is the window of sequence_length characters starting at
// its character i, labelled with the character that follows the window; a part of n characters
// gives n − sequence_length samples.
#ifndef PSGRID_CORE_DATA_TEXT_H_
#define PSGRID_CORE_DATA_TEXT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"

namespace psgrid {

struct TextData {
  TrainTestData data;
  std::vector<char32_t> vocabulary;  // id → code point
  // The cross-entropy (nats per character) on the validation labels of predicting every
  // character with its frequency in the training part (add-one smoothed): the baseline a
  // character model must beat.
  double unigram_cross_entropy = 0;
};

// INVALID_ARGUMENT naming the file for bytes that are not UTF-8 (with their offset), a
// sequence_length < 1, or a text too short to give both parts a sample; NOT_FOUND when the
// file cannot be opened.
absl::StatusOr<TextData> LoadTextData(const std::string& path, int sequence_length);

// The code points of UTF-8 `bytes`; INVALID_ARGUMENT naming the offset of the first bad
// sequence (stray continuation bytes, truncated or overlong sequences, surrogates, > U+10FFFF).
absl::StatusOr<std::u32string> DecodeUtf8(const std::string& bytes);

}  // namespace psgrid

#endif  // PSGRID_CORE_DATA_TEXT_H_
