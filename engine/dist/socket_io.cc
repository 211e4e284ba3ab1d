#include "engine/dist/socket_io.h"

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

namespace sy {
namespace {

std::string ErrnoText(int error) { return std::strerror(error); }

// Milliseconds left until `deadline` for poll(): -1 means forever, 0 means it has passed.
int PollTimeoutMs(SteadyClock::time_point deadline) {
  if (deadline == SteadyClock::time_point::max()) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
}

// Waits until `fd` is ready for `events`; false on timeout. Retries on EINTR.
StatusOr<bool> PollFor(int fd, short events, SteadyClock::time_point deadline) {
  while (true) {
    pollfd entry{.fd = fd, .events = events, .revents = 0};
    const int ready = poll(&entry, 1, PollTimeoutMs(deadline));
    if (ready > 0) return true;
    if (ready == 0) return false;
    if (errno != EINTR) return Status::Unavailable("poll: " + ErrnoText(errno));
  }
}

struct AddrInfoList {
  addrinfo* head = nullptr;
  ~AddrInfoList() {
    if (head != nullptr) freeaddrinfo(head);
  }
};

Status Resolve(const std::string& host, int port, bool passive, AddrInfoList& out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  const std::string service = std::to_string(port);
  const int rc =
      getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &out.head);
  if (rc != 0) {
    return Status::Unavailable("cannot resolve " + JoinHostPort(host, port) + ": " +
                               gai_strerror(rc));
  }
  return Status::Ok();
}

// Non-blocking connect to one resolved address, bounded by `deadline`.
Status ConnectOne(const addrinfo& addr, SteadyClock::time_point deadline, UniqueFd& out) {
  UniqueFd fd(
      socket(addr.ai_family, addr.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, addr.ai_protocol));
  if (fd.get() < 0) return Status::Unavailable("socket: " + ErrnoText(errno));
  if (connect(fd.get(), addr.ai_addr, addr.ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return Status::Unavailable(ErrnoText(errno));
    SY_ASSIGN_OR_RETURN(const bool writable, PollFor(fd.get(), POLLOUT, deadline));
    if (!writable) return Status::Unavailable("connect timed out");
    int error = 0;
    socklen_t length = sizeof(error);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) return Status::Unavailable(ErrnoText(error));
  }
  const int flags = fcntl(fd.get(), F_GETFL);
  fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  const int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  out = std::move(fd);
  return Status::Ok();
}

Status ReadFull(int fd, char* data, size_t bytes, SteadyClock::time_point deadline) {
  while (bytes > 0) {
    SY_ASSIGN_OR_RETURN(const bool readable, PollFor(fd, POLLIN, deadline));
    if (!readable) return Status::Unavailable("timed out waiting for the peer to reply");
    const ssize_t got = recv(fd, data, bytes, 0);
    if (got == 0) return Status::Unavailable("connection closed by the peer");
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Status::Unavailable("recv: " + ErrnoText(errno));
    }
    data += got;
    bytes -= static_cast<size_t>(got);
  }
  return Status::Ok();
}

void PutU32(uint32_t value, std::string& out) {
  const uint32_t big_endian = htonl(value);
  out.append(reinterpret_cast<const char*>(&big_endian), 4);
}

uint32_t GetU32(const char* data) {
  uint32_t big_endian;
  std::memcpy(&big_endian, data, 4);
  return ntohl(big_endian);
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int UniqueFd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

std::string JoinHostPort(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

StatusOr<UniqueFd> ConnectTcp(const std::string& host, int port, SteadyClock::time_point deadline) {
  AddrInfoList addresses;
  SY_RETURN_IF_ERROR(Resolve(host, port, /*passive=*/false, addresses));
  Status last = Status::Unavailable("no address");
  for (const addrinfo* addr = addresses.head; addr != nullptr; addr = addr->ai_next) {
    UniqueFd fd;
    last = ConnectOne(*addr, deadline, fd);
    if (last.ok()) return fd;
  }
  return Status::Unavailable("cannot connect to " + JoinHostPort(host, port) + ": " +
                             last.message());
}

StatusOr<UniqueFd> ListenTcp(const std::string& host, int port) {
  AddrInfoList addresses;
  SY_RETURN_IF_ERROR(Resolve(host, port, /*passive=*/true, addresses));
  std::string last = "no address";
  for (const addrinfo* addr = addresses.head; addr != nullptr; addr = addr->ai_next) {
    UniqueFd fd(socket(addr->ai_family, addr->ai_socktype | SOCK_CLOEXEC, addr->ai_protocol));
    if (fd.get() < 0) {
      last = "socket: " + ErrnoText(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd.get(), addr->ai_addr, addr->ai_addrlen) != 0 || listen(fd.get(), 128) != 0) {
      last = ErrnoText(errno);
      continue;
    }
    return fd;
  }
  return Status::Unavailable("cannot listen on " + JoinHostPort(host, port) + ": " + last);
}

int LocalPort(int fd) {
  sockaddr_storage addr{};
  socklen_t length = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) return -1;
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

std::string LocalAddress(int fd) {
  sockaddr_storage addr{};
  socklen_t length = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) return "";
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw =
      addr.ss_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr)
          : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&addr)->sin_addr);
  if (inet_ntop(addr.ss_family, raw, text, sizeof(text)) == nullptr) return "";
  return text;
}

Status SendFrame(int fd, std::string_view payload) {
  if (payload.size() > kMaxFrameBytes) return Status::InvalidArgument("frame too large");
  std::string frame;
  frame.reserve(4 + payload.size());
  PutU32(static_cast<uint32_t>(payload.size()), frame);
  frame.append(payload);
  size_t sent = 0;
  while (sent < frame.size()) {
    const ssize_t n = send(fd, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Unavailable("send: " + ErrnoText(errno));
    }
    sent += static_cast<size_t>(n);
  }
  return Status::Ok();
}

StatusOr<std::string> RecvFrame(int fd, SteadyClock::time_point deadline) {
  char header[4];
  SY_RETURN_IF_ERROR(ReadFull(fd, header, 4, deadline));
  const uint32_t length = GetU32(header);
  if (length > kMaxFrameBytes) {
    return Status::DataLoss("frame of " + std::to_string(length) + " bytes exceeds the limit");
  }
  std::string payload(length, '\0');
  SY_RETURN_IF_ERROR(ReadFull(fd, payload.data(), length, deadline));
  return payload;
}

std::string EncodeStrings(const std::vector<std::string>& strings) {
  std::string out;
  for (const std::string& s : strings) {
    PutU32(static_cast<uint32_t>(s.size()), out);
    out.append(s);
  }
  return out;
}

StatusOr<std::vector<std::string>> DecodeStrings(std::string_view payload) {
  std::vector<std::string> strings;
  while (!payload.empty()) {
    if (payload.size() < 4) return Status::DataLoss("truncated string length");
    const uint32_t length = GetU32(payload.data());
    payload.remove_prefix(4);
    if (payload.size() < length) return Status::DataLoss("truncated string");
    strings.emplace_back(payload.substr(0, length));
    payload.remove_prefix(length);
  }
  return strings;
}

}  // namespace sy
