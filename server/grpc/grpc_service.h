// GrpcServer: serves the switchyard.v1 gRPC API and the standard grpc.health.v1 Health service
// over the engine in a ServingContext (borrowed; must outlive the server). Start, SetServing and
// Shutdown are called from one controlling thread; RPCs run on gRPC's own threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
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

class GrpcServer {
 public:
  // `address` is host:port; port 0 picks a free port (see port()).
  GrpcServer(ServingContext* ctx, std::string address);
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
  std::string address_;
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
