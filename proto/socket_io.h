// Blocking-with-a-deadline socket I/O for the raw-TCP data plane (proto/data_frame.h): every
// read, write and connect polls until its deadline, so that nothing waits forever. Sockets are
// non-blocking and TCP_NODELAY; writes use MSG_NOSIGNAL (a closed peer is an error, not a
// SIGPIPE).
//
//   ASSIGN_OR_RETURN(int fd, ConnectTcp("127.0.0.1:7071", absl::Now() + absl::Seconds(5)));
//   RETURN_IF_ERROR(SendAll(fd, iov, 3, deadline));
//
// Errors: DEADLINE_EXCEEDED when the deadline passes, UNAVAILABLE when the peer closed the
// connection or the socket failed (naming errno).
#ifndef PSGRID_PROTO_SOCKET_IO_H_
#define PSGRID_PROTO_SOCKET_IO_H_

#include <sys/uio.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace psgrid {

// Splits "host:port" ("[::1]:7071" too). INVALID_ARGUMENT when it is not that.
absl::Status SplitHostPort(const std::string& address, std::string* host, int* port);

// Connects to `address` (host:port, numeric or a name) by `deadline`; the socket is
// non-blocking, close-on-exec and TCP_NODELAY.
absl::StatusOr<int> ConnectTcp(const std::string& address, absl::Time deadline);

// Listens on `address` (host:port; port 0 picks one, written to *port). Non-blocking.
absl::StatusOr<int> ListenTcp(const std::string& address, int* port);

// Makes an accepted socket non-blocking and TCP_NODELAY.
absl::Status PrepareSocket(int fd);

// Writes every byte of iov[0..count) (the array is modified as it goes).
absl::Status SendAll(int fd, struct iovec* iov, int count, absl::Time deadline);

// Reads exactly `bytes` into `data`. A peer that closes first is UNAVAILABLE ("closed").
absl::Status RecvAll(int fd, void* data, size_t bytes, absl::Time deadline);

// Waits until `fd` is readable (or closed) by `deadline`: true when it is, false at the
// deadline.
bool WaitReadable(int fd, absl::Time deadline);

}  // namespace psgrid

#endif  // PSGRID_PROTO_SOCKET_IO_H_
