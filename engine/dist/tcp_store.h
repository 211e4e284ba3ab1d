// TcpStoreServer / TcpStoreClient: the key-value rendezvous of a distributed group. The leader
// (rank 0) serves the store; every rank (the leader too) connects as a client, publishes what
// its peers need (Gloo pair addresses, the NCCL unique id) and waits for theirs.
// The server is thread-safe and owns one thread per connection; a client is thread-safe (calls
// are serialised on its one connection).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "engine/core/status.h"
#include "engine/dist/socket_io.h"

namespace sy {

class TcpStoreServer {
 public:
  // Listens on bind_host:port ("0.0.0.0" or "" for every interface; port 0 picks a free port)
  // and serves until destroyed.
  static StatusOr<std::unique_ptr<TcpStoreServer>> Start(const std::string& bind_host, int port);
  // Closes the listener and every connection and joins all threads.
  ~TcpStoreServer();

  int port() const { return port_; }

 private:
  TcpStoreServer(UniqueFd listener, int port);
  void AcceptLoop();
  void Serve(int fd);
  std::string Handle(const std::vector<std::string>& request);

  UniqueFd listener_;
  const int port_;
  std::mutex mu_;
  bool stopping_ = false;
  std::map<std::string, std::string> values_;
  std::unordered_set<int> connections_;  // open client sockets, closed under mu_
  std::vector<std::thread> handlers_;    // touched only by the accept thread and the destructor
  std::thread accept_thread_;
};

class TcpStoreClient {
 public:
  // Connects to the store at host:port, retrying with backoff until `timeout` (the leader may
  // not be up yet); Unavailable naming the address when it never answers.
  static StatusOr<std::unique_ptr<TcpStoreClient>> Connect(const std::string& host, int port,
                                                           std::chrono::milliseconds timeout);

  Status Set(const std::string& key, std::string_view value);
  // The value of `key`, waiting up to `timeout` for some rank to set it.
  StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds timeout);
  // Waits up to `timeout` until every key is set; Unavailable naming the missing keys if not.
  Status Wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);

  // The numeric address of this end of the connection: the local interface that reaches the
  // leader, which is the one peers on other hosts can reach us through too.
  const std::string& local_address() const { return local_address_; }
  // "host:port" of the store, for messages.
  const std::string& store_address() const { return store_address_; }

 private:
  TcpStoreClient(UniqueFd fd, std::string store_address);
  // One request/response round trip; the reply's first string is its status word.
  StatusOr<std::vector<std::string>> Call(const std::vector<std::string>& request,
                                          SteadyClock::time_point deadline);

  std::mutex mu_;
  UniqueFd fd_;
  const std::string store_address_;
  const std::string local_address_;
};

}  // namespace sy
