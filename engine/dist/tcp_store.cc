#include "engine/dist/tcp_store.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sy {
namespace {

// Replies start with one of these words.
constexpr std::string_view kOk = "ok";
constexpr std::string_view kMissing = "missing";
constexpr std::string_view kError = "error";

constexpr auto kFirstBackoff = std::chrono::milliseconds(2);
constexpr auto kMaxBackoff = std::chrono::milliseconds(100);
// A healthy store answers in microseconds; a set that gets no reply in this long has a dead or
// wedged leader on the other end.
constexpr auto kSetTimeout = std::chrono::seconds(30);

// The deadline of one round trip within an operation bounded by `deadline`: the round trip
// itself gets at least a second, so a tiny timeout does not fail against a healthy store.
SteadyClock::time_point RoundTripDeadline(SteadyClock::time_point deadline) {
  return std::max(deadline, SteadyClock::now() + std::chrono::seconds(1));
}

std::string JoinKeys(const std::vector<std::string>& keys) {
  std::string joined;
  for (const std::string& key : keys) joined += (joined.empty() ? "" : ", ") + key;
  return joined;
}

// Sleeps for the current backoff (never past `deadline`) and doubles it.
void SleepAndBackOff(std::chrono::milliseconds& backoff, SteadyClock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  std::this_thread::sleep_for(std::max(std::chrono::milliseconds(0), std::min(backoff, left)));
  backoff = std::min(backoff * 2, std::chrono::milliseconds(kMaxBackoff));
}

}  // namespace

// --- server ---

StatusOr<std::unique_ptr<TcpStoreServer>> TcpStoreServer::Start(const std::string& bind_host,
                                                                int port) {
  SY_ASSIGN_OR_RETURN(UniqueFd listener, ListenTcp(bind_host == "0.0.0.0" ? "" : bind_host, port));
  const int bound_port = LocalPort(listener.get());
  return std::unique_ptr<TcpStoreServer>(new TcpStoreServer(std::move(listener), bound_port));
}

TcpStoreServer::TcpStoreServer(UniqueFd listener, int port)
    : listener_(std::move(listener)), port_(port) {
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

TcpStoreServer::~TcpStoreServer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    // shutdown() wakes the threads blocked in accept() and recv(); the descriptors stay open
    // (and so cannot be reused under another thread's feet) until their owners close them.
    shutdown(listener_.get(), SHUT_RDWR);
    for (int fd : connections_) shutdown(fd, SHUT_RDWR);
  }
  accept_thread_.join();
  for (std::thread& handler : handlers_) handler.join();
}

void TcpStoreServer::AcceptLoop() {
  while (true) {
    const int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      if (fd >= 0) close(fd);
      return;
    }
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
      return;
    }
    connections_.insert(fd);
    handlers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void TcpStoreServer::Serve(int fd) {
  while (true) {
    StatusOr<std::string> frame = RecvFrame(fd, SteadyClock::time_point::max());
    if (!frame.ok()) break;  // the client left (or the server is stopping)
    StatusOr<std::vector<std::string>> request = DecodeStrings(*frame);
    const std::string reply =
        request.ok() ? Handle(*request) : EncodeStrings({std::string(kError), "malformed request"});
    if (!SendFrame(fd, reply).ok()) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  connections_.erase(fd);
  close(fd);
}

// Requests: {"set", key, value} -> {"ok"}; {"get", key} -> {"ok", value} or {"missing"};
// {"check", keys...} -> {"ok"} when all exist, else {"missing", first missing key}.
std::string TcpStoreServer::Handle(const std::vector<std::string>& request) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string_view op = request.empty() ? std::string_view() : request[0];
  if (op == "set" && request.size() == 3) {
    values_[request[1]] = request[2];
    return EncodeStrings({std::string(kOk)});
  }
  if (op == "get" && request.size() == 2) {
    auto it = values_.find(request[1]);
    if (it == values_.end()) return EncodeStrings({std::string(kMissing)});
    return EncodeStrings({std::string(kOk), it->second});
  }
  if (op == "check") {
    for (size_t i = 1; i < request.size(); ++i) {
      if (!values_.contains(request[i])) return EncodeStrings({std::string(kMissing), request[i]});
    }
    return EncodeStrings({std::string(kOk)});
  }
  return EncodeStrings({std::string(kError), "unknown request"});
}

// --- client ---

StatusOr<std::unique_ptr<TcpStoreClient>> TcpStoreClient::Connect(
    const std::string& host, int port, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  auto backoff = std::chrono::milliseconds(kFirstBackoff);
  while (true) {
    StatusOr<UniqueFd> fd = ConnectTcp(host, port, deadline);
    if (fd.ok()) {
      return std::unique_ptr<TcpStoreClient>(
          new TcpStoreClient(std::move(fd).value(), JoinHostPort(host, port)));
    }
    if (SteadyClock::now() >= deadline) {
      return Status::Unavailable("no rendezvous store answered at " + JoinHostPort(host, port) +
                                 " within " + std::to_string(timeout.count()) +
                                 " ms (is the leader, rank 0, running?): " + fd.status().message());
    }
    SleepAndBackOff(backoff, deadline);
  }
}

TcpStoreClient::TcpStoreClient(UniqueFd fd, std::string store_address)
    : fd_(std::move(fd)),
      store_address_(std::move(store_address)),
      local_address_(LocalAddress(fd_.get())) {}

StatusOr<std::vector<std::string>> TcpStoreClient::Call(const std::vector<std::string>& request,
                                                        SteadyClock::time_point deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_.get() < 0) return Status::Unavailable("store connection to " + store_address_ + " lost");
  Status sent = SendFrame(fd_.get(), EncodeStrings(request));
  StatusOr<std::string> frame =
      sent.ok() ? RecvFrame(fd_.get(), deadline) : StatusOr<std::string>(sent);
  StatusOr<std::vector<std::string>> reply =
      frame.ok() ? DecodeStrings(*frame) : StatusOr<std::vector<std::string>>(frame.status());
  if (reply.ok() && (reply->empty() || (*reply)[0] == kError)) {
    reply = Status::Internal("store at " + store_address_ + " refused a request");
  }
  // A half-read reply would desynchronise the stream: drop the connection on any failure.
  if (!reply.ok()) {
    fd_.reset();
    return Status(reply.status().code(),
                  "store at " + store_address_ + ": " + reply.status().message());
  }
  return reply;
}

Status TcpStoreClient::Set(const std::string& key, std::string_view value) {
  return Call({"set", key, std::string(value)}, SteadyClock::now() + kSetTimeout).status();
}

StatusOr<std::string> TcpStoreClient::Get(const std::string& key,
                                          std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  SY_RETURN_IF_ERROR(Wait({key}, timeout));
  SY_ASSIGN_OR_RETURN(std::vector<std::string> reply,
                      Call({"get", key}, RoundTripDeadline(deadline)));
  if (reply[0] != kOk || reply.size() != 2) {
    return Status::Internal("store at " + store_address_ + " lost key " + key);
  }
  return std::move(reply[1]);
}

// Polls "check" with backoff: the server keeps no waiters, so a client that vanishes mid-wait
// leaves nothing behind.
Status TcpStoreClient::Wait(const std::vector<std::string>& keys,
                            std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  auto backoff = std::chrono::milliseconds(kFirstBackoff);
  std::vector<std::string> request = {"check"};
  request.insert(request.end(), keys.begin(), keys.end());
  while (true) {
    SY_ASSIGN_OR_RETURN(std::vector<std::string> reply, Call(request, RoundTripDeadline(deadline)));
    if (reply[0] == kOk) return Status::Ok();
    if (SteadyClock::now() >= deadline) {
      return Status::Unavailable("timed out after " + std::to_string(timeout.count()) +
                                 " ms waiting for keys [" + JoinKeys(keys) + "] at store " +
                                 store_address_ +
                                 " (missing: " + (reply.size() > 1 ? reply[1] : "?") + ")");
    }
    SleepAndBackOff(backoff, deadline);
  }
}

}  // namespace sy
