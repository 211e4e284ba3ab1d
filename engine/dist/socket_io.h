// Socket helpers for the rendezvous store: an owning file descriptor, TCP connect/listen with
// deadlines, and length-prefixed frames that survive short reads and writes.
// Plain POSIX sockets; every function is thread-compatible (one thread per descriptor).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sy {

using SteadyClock = std::chrono::steady_clock;

// Owns a file descriptor and closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  int release();
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// "host:port" for messages; brackets an IPv6 literal.
std::string JoinHostPort(const std::string& host, int port);

// One connection attempt to host:port (name resolution included) that gives up at `deadline`.
// The socket is returned in blocking mode with TCP_NODELAY set.
StatusOr<UniqueFd> ConnectTcp(const std::string& host, int port, SteadyClock::time_point deadline);

// A listening socket bound to host:port; port 0 picks a free port (see LocalPort).
StatusOr<UniqueFd> ListenTcp(const std::string& host, int port);

// The local port / numeric address of a bound or connected socket.
int LocalPort(int fd);
std::string LocalAddress(int fd);

// A frame is a 4-byte big-endian length and that many bytes. Frames above kMaxFrameBytes are
// refused (a peer speaking another protocol, or garbage).
inline constexpr size_t kMaxFrameBytes = size_t{64} << 20;
Status SendFrame(int fd, std::string_view payload);
// Waits for a whole frame until `deadline` (SteadyClock::time_point::max(): no deadline).
StatusOr<std::string> RecvFrame(int fd, SteadyClock::time_point deadline);

// A list of strings as one payload: each is a 4-byte big-endian length and its bytes.
std::string EncodeStrings(const std::vector<std::string>& strings);
StatusOr<std::vector<std::string>> DecodeStrings(std::string_view payload);

}  // namespace sy
