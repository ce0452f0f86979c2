// Parameter arenas as streams of typed tensor slices: round trips, chunk sizes, and every way
// a slice can be wrong.
#include "core/tensor_codec.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

class TensorCodecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    params_.Declare("0.weight", {300, 100}, ParamKind::kWeight, 100, 300);
    params_.Declare("0.bias", {300}, ParamKind::kBias, 100, 300);
    params_.Declare("2.weight", {7, 300}, ParamKind::kWeight, 300, 7);
    params_.Allocate();
    for (int64_t i = 0; i < params_.total_size(); ++i) params_.values()[i] = 0.5f * i;
  }

  std::vector<std::vector<v1::TensorSlice>> Encode(int64_t group_bytes) {
    std::vector<std::vector<v1::TensorSlice>> groups;
    EncodeSlices(params_.infos(), params_.values().data(), group_bytes,
                 [&](std::vector<v1::TensorSlice>&& g) {
                   groups.push_back(std::move(g));
                   return true;
                 });
    return groups;
  }

  v1::TensorSlice Slice(const std::string& name, Shape shape, int64_t offset, int64_t floats) {
    v1::TensorSlice s;
    s.set_name(name);
    s.set_dtype(v1::DTYPE_FLOAT32);
    for (int64_t d : shape) s.add_shape(d);
    s.set_offset(offset);
    s.set_data(std::string(floats * 4, '\0'));
    return s;
  }

  ParameterSet params_;
};

TEST_F(TensorCodecTest, RoundTripsThroughGroupsOfBoundedSize) {
  for (int64_t group_bytes : {int64_t{4}, int64_t{1000}, int64_t{40000}, kDefaultChunkBytes}) {
    SCOPED_TRACE(group_bytes);
    auto groups = Encode(group_bytes);
    Tensor out({params_.total_size()});
    SliceAssembler assembler(params_.infos(), out.data());
    for (const auto& g : groups) {
      int64_t bytes = 0;
      for (const auto& s : g) {
        bytes += static_cast<int64_t>(s.data().size());
        ASSERT_OK(assembler.Add(s));
      }
      EXPECT_LE(bytes, std::max<int64_t>(group_bytes, 4));
    }
    ASSERT_OK(assembler.Finish());
    for (const ParamInfo& info : params_.infos()) {
      for (int64_t i = info.offset; i < info.offset + info.size; ++i) {
        ASSERT_EQ(out[i], params_.values()[i]) << info.name;
      }
    }
  }
}

TEST_F(TensorCodecTest, SmallTensorsShareOneMessage) {
  EXPECT_EQ(Encode(kDefaultChunkBytes).size(), 1u);  // 122,400 + 1,200 + 8,400 bytes
}

TEST_F(TensorCodecTest, EveryWrongSliceIsRejectedNamingTheTensorAndWritesNothing) {
  Tensor out({params_.total_size()});
  SliceAssembler assembler(params_.infos(), out.data());
  EXPECT_STATUS(assembler.Add(Slice("9.weight", {300, 100}, 0, 1)),
                absl::StatusCode::kInvalidArgument, "unknown tensor '9.weight'");
  v1::TensorSlice wrong_dtype = Slice("0.bias", {300}, 0, 1);
  wrong_dtype.set_dtype(v1::DTYPE_UNSPECIFIED);
  EXPECT_STATUS(assembler.Add(wrong_dtype), absl::StatusCode::kInvalidArgument, "0.bias: dtype");
  EXPECT_STATUS(assembler.Add(Slice("0.bias", {301}, 0, 1)), absl::StatusCode::kInvalidArgument,
                "0.bias: shape [301]");
  EXPECT_STATUS(assembler.Add(Slice("0.bias", {300}, 8, 1)), absl::StatusCode::kInvalidArgument,
                "expected byte 0");
  EXPECT_STATUS(assembler.Add(Slice("0.bias", {300}, 0, 301)), absl::StatusCode::kInvalidArgument,
                "do not fit");
  v1::TensorSlice ragged = Slice("0.bias", {300}, 0, 1);
  ragged.mutable_data()->push_back('x');
  EXPECT_STATUS(assembler.Add(ragged), absl::StatusCode::kInvalidArgument, "do not fit");
  EXPECT_STATUS(assembler.Finish(), absl::StatusCode::kInvalidArgument, "0.weight: received 0");
  for (float v : out.span()) ASSERT_EQ(v, 0.0f);
}

TEST_F(TensorCodecTest, AMissingPieceIsReportedByFinish) {
  auto groups = Encode(1000);
  Tensor out({params_.total_size()});
  SliceAssembler assembler(params_.infos(), out.data());
  for (size_t g = 0; g + 1 < groups.size(); ++g) {
    for (const auto& s : groups[g]) ASSERT_OK(assembler.Add(s));
  }
  EXPECT_STATUS(assembler.Finish(), absl::StatusCode::kInvalidArgument, "2.weight: received");
}

}  // namespace
}  // namespace psgrid
