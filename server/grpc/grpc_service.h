// GrpcServer: serves the switchyard.v1 gRPC API and the standard grpc.health.v1 Health service
// over the engine in a ServingContext (borrowed; must outlive the server), with its API keys and
// TLS files. Start, SetServing and Shutdown are called from one controlling thread; RPCs run on
// gRPC's own threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "engine/core/status.h"
#include "server/serving_context.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace sy {

// Transport limits; the keepalive and idle policy are fixed (grpc_service.cc, docs/serving.md).
struct GrpcServerOptions {
  std::string address;  // host:port; port 0 picks a free port (see GrpcServer::port())
  // Largest request message; a larger one fails with RESOURCE_EXHAUSTED (serve: --max-body-bytes).
  int64_t max_receive_message_bytes = 8 << 20;
  // Calls open at once on one HTTP/2 connection; more wait for a free stream on the client.
  int max_concurrent_streams = 1000;
};

class GrpcServer {
 public:
  // Every switchyard.v1 call needs `authorization: Bearer KEY` metadata with one of
  // ctx->security.api_keys when there are any (else UNAUTHENTICATED); Health stays open. With
  // ctx->tls enabled the port speaks TLS only, and requires client certificates signed by
  // ctx->tls.ca_certs when that is set.
  GrpcServer(ServingContext* ctx, GrpcServerOptions options);
  ~GrpcServer();  // shuts down if still running

  // Listens and starts serving. Unavailable when the address cannot be bound.
  Status Start();
  // The port bound by Start().
  int port() const { return port_; }

  // Health status of both "" and "switchyard.v1.Switchyard": SERVING when `serving` and the
  // engine is alive. ctx->ready is the source of truth: a background check re-reads it and
  // engine->Alive() every 100 ms, so health agrees with HTTP readiness; call this right after
  // changing ctx->ready to apply the change at once.
  void SetServing(bool serving);

  // Stops accepting calls; calls still running after `grace` are cancelled (Generate then
  // aborts its request). Health reports NOT_SERVING from here on.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(2));

 private:
  void HealthLoop();

  ServingContext* ctx_;
  GrpcServerOptions options_;
  int port_ = 0;
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;

  std::mutex mu_;  // guards the fields below and health updates
  std::condition_variable cv_;
  bool stopping_ = false;
  int serving_ = -1;  // last status pushed to the health service; -1: none yet
  std::thread health_thread_;
};

}  // namespace sy
