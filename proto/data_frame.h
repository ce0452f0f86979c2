// Frames of the raw-TCP tensor data plane (the format is in proto/psgrid/v1/data_plane.proto):
//
//   [u32 magic "PSGD"][u32 header_bytes][u64 payload_bytes]   16 bytes, little-endian
//   [header: a serialized DataRequest or DataResponse, at most kMaxDataHeaderBytes]
//   [payload: payload_bytes of float32 little-endian arena values]
//
// WriteDataFrame sends the three parts with one gathering send, straight from the caller's
// memory; ReadDataFrameHeader reads and checks the prefix and the header and leaves the
// payload in the socket for the caller to read where it belongs (RecvAll) after checking its
// size. Every call has a deadline (proto/socket_io.h).
#ifndef PSGRID_PROTO_DATA_FRAME_H_
#define PSGRID_PROTO_DATA_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/message_lite.h"

namespace psgrid {

constexpr uint32_t kDataFrameMagic = 0x44475350;  // "PSGD" as little-endian bytes
constexpr size_t kDataFramePrefixBytes = 16;
constexpr uint32_t kMaxDataHeaderBytes = 64 << 10;

struct DataFramePrefix {
  uint32_t header_bytes = 0;
  uint64_t payload_bytes = 0;
};

// The 16-byte prefix, little-endian whatever the host.
void EncodeDataFramePrefix(const DataFramePrefix& prefix, unsigned char out[kDataFramePrefixBytes]);
// INVALID_ARGUMENT for a bad magic or a header over kMaxDataHeaderBytes.
absl::StatusOr<DataFramePrefix> DecodeDataFramePrefix(
    const unsigned char in[kDataFramePrefixBytes]);

// Sends prefix, `header` serialized and `payload_bytes` from `payload` (may be null when 0).
absl::Status WriteDataFrame(int fd, const google::protobuf::MessageLite& header,
                            const void* payload, uint64_t payload_bytes, absl::Time deadline);

// Reads a prefix and its header into *header; returns the payload size still to be read.
// INVALID_ARGUMENT for a bad prefix or a header that does not parse; the socket errors of
// RecvAll otherwise. `first_byte_deadline` bounds the wait for the frame to begin (an idle
// connection), `frame_timeout` from then on the rest of the prefix and the header.
absl::StatusOr<uint64_t> ReadDataFrameHeader(int fd, google::protobuf::MessageLite* header,
                                             absl::Time first_byte_deadline,
                                             absl::Duration frame_timeout);

// Reads and drops `bytes` (a payload nobody wants), in small pieces.
absl::Status DiscardBytes(int fd, uint64_t bytes, absl::Time deadline);

}  // namespace psgrid

#endif  // PSGRID_PROTO_DATA_FRAME_H_
