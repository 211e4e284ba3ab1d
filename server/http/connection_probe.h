// ConnectionProbe: tells whether the client of the HTTP request being handled has gone away, so
// its engine request can be aborted while the server is still waiting for output (cpp-httplib
// 0.11 only notices a dead peer when a write fails). Valid only inside the request's handler
// (and its content provider), while the library keeps the connection open; not thread-safe.
#pragma once

#include <string>

namespace sy::http {

class ConnectionProbe {
 public:
  // Finds the server-side socket of the connection local_addr:local_port <-
  // remote_addr:remote_port among this process's file descriptors. When none matches, Closed()
  // is always false.
  ConnectionProbe(const std::string& local_addr, int local_port, const std::string& remote_addr,
                  int remote_port);

  // The peer closed or reset the connection (a half-close counts: clients do not half-close
  // while waiting for a response).
  bool Closed() const;
  bool found() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace sy::http
