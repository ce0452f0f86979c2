#include "proto/socket_io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace psgrid {
namespace {

// poll()'s timeout for `deadline`, in whole milliseconds rounded up (0 when past).
int PollTimeoutMs(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return 1000;  // re-checked by the caller's loop
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
}

// Waits for `events` on fd; OK, DEADLINE_EXCEEDED, or UNAVAILABLE on a poll error.
absl::Status Await(int fd, short events, absl::Time deadline, const char* what) {
  while (true) {
    pollfd p = {fd, events, 0};
    const int timeout = PollTimeoutMs(deadline);
    const int n = poll(&p, 1, timeout);
    if (n > 0) return absl::OkStatus();
    if (n < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat(what, ": poll: ", std::strerror(errno)));
    }
    if (n == 0 && absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(what, ": deadline exceeded"));
    }
  }
}

absl::Status Errno(const std::string& what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::Status SetNonBlockingNoDelay(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return Errno("fcntl");
  const int one = 1;
  // Not a TCP socket (a Unix one in a test) is fine: only TCP has Nagle.
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return absl::OkStatus();
}

// getaddrinfo for host:port (numeric hosts need no resolver).
absl::StatusOr<addrinfo*> Resolve(const std::string& address, bool passive) {
  std::string host;
  int port = 0;
  if (absl::Status s = SplitHostPort(address, &host, &port); !s.ok()) return s;
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* result = nullptr;
  const std::string service = std::to_string(port);
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints,
                             &result);
  if (rc != 0 || result == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", address, ": ", gai_strerror(rc)));
  }
  return result;
}

}  // namespace

absl::Status SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", address, "' is not HOST:PORT"));
  }
  std::string h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  int p = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &p) || p < 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", address, "' has no valid port"));
  }
  *host = h;
  *port = p;
  return absl::OkStatus();
}

absl::StatusOr<int> ConnectTcp(const std::string& address, absl::Time deadline) {
  absl::StatusOr<addrinfo*> resolved = Resolve(address, /*passive=*/false);
  if (!resolved.ok()) return resolved.status();
  absl::Status last = absl::UnavailableError(absl::StrCat("cannot connect to ", address));
  for (addrinfo* ai = *resolved; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = Errno(absl::StrCat("socket for ", address));
      continue;
    }
    absl::Status s = SetNonBlockingNoDelay(fd);
    if (s.ok() && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        s = Errno(absl::StrCat("connect to ", address));
      } else {
        s = Await(fd, POLLOUT, deadline, "connect");
        int error = 0;
        socklen_t len = sizeof(error);
        if (s.ok() && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0)) {
          s = absl::UnavailableError(
              absl::StrCat("connect to ", address, ": ", std::strerror(error)));
        }
      }
    }
    if (s.ok()) {
      freeaddrinfo(*resolved);
      return fd;
    }
    close(fd);
    last = s;
  }
  freeaddrinfo(*resolved);
  return last;
}

absl::StatusOr<int> ListenTcp(const std::string& address, int* port) {
  absl::StatusOr<addrinfo*> resolved = Resolve(address, /*passive=*/true);
  if (!resolved.ok()) return resolved.status();
  absl::Status last = absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  for (addrinfo* ai = *resolved; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0 ||
        !SetNonBlockingNoDelay(fd).ok()) {
      last = Errno(absl::StrCat("cannot listen on ", address));
      close(fd);
      continue;
    }
    sockaddr_storage bound = {};
    socklen_t len = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    *port = bound.ss_family == AF_INET6
                ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    freeaddrinfo(*resolved);
    return fd;
  }
  freeaddrinfo(*resolved);
  return last;
}

absl::Status PrepareSocket(int fd) { return SetNonBlockingNoDelay(fd); }

absl::Status SendAll(int fd, struct iovec* iov, int count, absl::Time deadline) {
  while (count > 0) {
    if (iov->iov_len == 0) {
      ++iov;
      --count;
      continue;
    }
    msghdr message = {};
    message.msg_iov = iov;
    message.msg_iovlen = static_cast<size_t>(std::min(count, IOV_MAX));
    const ssize_t sent = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return Errno("send");
      if (absl::Status s = Await(fd, POLLOUT, deadline, "send"); !s.ok()) return s;
      continue;
    }
    size_t left = static_cast<size_t>(sent);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return absl::OkStatus();
}

absl::Status RecvAll(int fd, void* data, size_t bytes, absl::Time deadline) {
  char* out = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t got = recv(fd, out, bytes, 0);
    if (got > 0) {
      out += got;
      bytes -= static_cast<size_t>(got);
      continue;
    }
    if (got == 0) return absl::UnavailableError("the peer closed the connection");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Errno("recv");
    if (absl::Status s = Await(fd, POLLIN, deadline, "recv"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

bool WaitReadable(int fd, absl::Time deadline) { return Await(fd, POLLIN, deadline, "").ok(); }

}  // namespace psgrid
