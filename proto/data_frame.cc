#include "proto/data_frame.h"

#include <sys/uio.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/socket_io.h"

namespace psgrid {
namespace {

void PutLe(uint64_t value, int bytes, unsigned char* out) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<unsigned char>(value >> (8 * i));
}

uint64_t GetLe(const unsigned char* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= static_cast<uint64_t>(in[i]) << (8 * i);
  return value;
}

}  // namespace

void EncodeDataFramePrefix(const DataFramePrefix& prefix,
                           unsigned char out[kDataFramePrefixBytes]) {
  PutLe(kDataFrameMagic, 4, out);
  PutLe(prefix.header_bytes, 4, out + 4);
  PutLe(prefix.payload_bytes, 8, out + 8);
}

absl::StatusOr<DataFramePrefix> DecodeDataFramePrefix(
    const unsigned char in[kDataFramePrefixBytes]) {
  const uint32_t magic = static_cast<uint32_t>(GetLe(in, 4));
  if (magic != kDataFrameMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a psgrid data-plane frame (magic 0x", absl::Hex(magic, absl::kZeroPad8),
                     ", expected \"PSGD\")"));
  }
  DataFramePrefix prefix;
  prefix.header_bytes = static_cast<uint32_t>(GetLe(in + 4, 4));
  prefix.payload_bytes = GetLe(in + 8, 8);
  if (prefix.header_bytes > kMaxDataHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a data-plane frame header of ",
                                                   prefix.header_bytes, " bytes (at most ",
                                                   kMaxDataHeaderBytes, ")"));
  }
  return prefix;
}

absl::Status WriteDataFrame(int fd, const google::protobuf::MessageLite& header,
                            const void* payload, uint64_t payload_bytes, absl::Time deadline) {
  std::string bytes;
  if (!header.SerializeToString(&bytes)) {
    return absl::InternalError("cannot serialize a data-plane header");
  }
  if (bytes.size() > kMaxDataHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a data-plane header of ", bytes.size(), " bytes is too large"));
  }
  unsigned char prefix[kDataFramePrefixBytes];
  EncodeDataFramePrefix({static_cast<uint32_t>(bytes.size()), payload_bytes}, prefix);
  struct iovec iov[3] = {{prefix, sizeof(prefix)},
                         {bytes.data(), bytes.size()},
                         {const_cast<void*>(payload), static_cast<size_t>(payload_bytes)}};
  return SendAll(fd, iov, payload_bytes == 0 ? 2 : 3, deadline);
}

absl::StatusOr<uint64_t> ReadDataFrameHeader(int fd, google::protobuf::MessageLite* header,
                                             absl::Time first_byte_deadline,
                                             absl::Duration frame_timeout) {
  unsigned char raw[kDataFramePrefixBytes];
  if (!WaitReadable(fd, first_byte_deadline)) {
    return absl::DeadlineExceededError("no data-plane frame before the deadline");
  }
  const absl::Time deadline = absl::Now() + frame_timeout;
  if (absl::Status s = RecvAll(fd, raw, sizeof(raw), deadline); !s.ok()) return s;
  absl::StatusOr<DataFramePrefix> prefix = DecodeDataFramePrefix(raw);
  if (!prefix.ok()) return prefix.status();
  std::string bytes(prefix->header_bytes, '\0');  // at most kMaxDataHeaderBytes
  if (absl::Status s = RecvAll(fd, bytes.data(), bytes.size(), deadline); !s.ok()) return s;
  if (!header->ParseFromString(bytes)) {
    return absl::InvalidArgumentError("a data-plane frame header that does not parse");
  }
  return prefix->payload_bytes;
}

absl::Status DiscardBytes(int fd, uint64_t bytes, absl::Time deadline) {
  std::vector<char> sink(std::min<uint64_t>(bytes, 64 << 10));
  while (bytes > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes, sink.size()));
    if (absl::Status s = RecvAll(fd, sink.data(), n, deadline); !s.ok()) return s;
    bytes -= n;
  }
  return absl::OkStatus();
}

}  // namespace psgrid
