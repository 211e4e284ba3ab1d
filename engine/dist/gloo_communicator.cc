#include "engine/dist/gloo_communicator.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/alltoallv.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <exception>
#include <string>
#include <vector>

#include "engine/dist/socket_io.h"

namespace sy {
namespace {

constexpr std::string_view kKeyPrefix = "gloo/";

// Gloo's rendezvous interface over our store. Gloo expects failures as exceptions; they are
// caught in ConnectGlooWithStore and come back as a Status.
class StoreForGloo final : public gloo::rendezvous::Store {
 public:
  StoreForGloo(TcpStoreClient& client, std::chrono::milliseconds timeout)
      : client_(client), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    ThrowIfError(client_.Set(Prefixed(key), std::string_view(data.data(), data.size())));
  }

  std::vector<char> get(const std::string& key) override {
    StatusOr<std::string> value = client_.Get(Prefixed(key), timeout_);
    ThrowIfError(value.status());
    return std::vector<char>(value->begin(), value->end());
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }

  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    std::vector<std::string> prefixed;
    for (const std::string& key : keys) prefixed.push_back(Prefixed(key));
    // Gloo passes kNoTimeout (zero) to mean "the default".
    ThrowIfError(client_.Wait(prefixed, timeout.count() > 0 ? timeout : timeout_));
  }

 private:
  static std::string Prefixed(const std::string& key) { return std::string(kKeyPrefix) + key; }
  static void ThrowIfError(const Status& status) {
    if (!status.ok()) throw gloo::IoException(status.message());
  }

  TcpStoreClient& client_;
  const std::chrono::milliseconds timeout_;
};

using ReduceFunction = void (*)(void*, const void*, const void*, size_t);

template <typename T>
void GlooSum(const std::shared_ptr<gloo::Context>& context, void* data, size_t count) {
  gloo::AllreduceOptions options(context);
  options.setOutput(static_cast<T*>(data), count);
  options.setReduceFunction(static_cast<ReduceFunction>(&gloo::sum<T>));
  gloo::allreduce(options);
}

uint8_t* Bytes(const void* data) { return static_cast<uint8_t*>(const_cast<void*>(data)); }

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(GroupStore store, std::shared_ptr<gloo::rendezvous::Context> context)
      : store_(std::move(store)), context_(std::move(context)) {}

  int rank() const override { return context_->rank; }
  int size() const override { return context_->size; }
  std::string_view transport() const override { return "gloo"; }

  Status AllToAllV(const void* send, std::span<const size_t> send_bytes, void* recv,
                   std::span<const size_t> recv_bytes) override {
    const size_t n = static_cast<size_t>(size());
    if (send_bytes.size() != n || recv_bytes.size() != n) {
      return Status::InvalidArgument("AllToAllV: byte counts need one entry per rank");
    }
    if (send_bytes[rank()] != recv_bytes[rank()]) {
      return Status::InvalidArgument("AllToAllV: this rank sends itself " +
                                     std::to_string(send_bytes[rank()]) + " bytes but expects " +
                                     std::to_string(recv_bytes[rank()]));
    }
    const std::vector<int64_t> send_counts(send_bytes.begin(), send_bytes.end());
    const std::vector<int64_t> recv_counts(recv_bytes.begin(), recv_bytes.end());
    return Run("AllToAllV", [&] {
      gloo::AlltoallvOptions options(context_);
      // Gloo wants a buffer even when every segment is empty.
      options.setInput(send != nullptr ? Bytes(send) : &empty_, send_counts);
      options.setOutput(recv != nullptr ? Bytes(recv) : &empty_, recv_counts);
      gloo::alltoallv(options);
    });
  }

  Status AllReduceSum(void* data, size_t count, ReduceType type) override {
    if (count == 0) return Status::Ok();
    return Run("AllReduceSum", [&] {
      switch (type) {
        case ReduceType::kF32:
          return GlooSum<float>(context_, data, count);
        case ReduceType::kF64:
          return GlooSum<double>(context_, data, count);
        case ReduceType::kI64:
          return GlooSum<int64_t>(context_, data, count);
      }
    });
  }

  Status AllGather(const void* send, size_t bytes, void* recv) override {
    if (bytes == 0) return Status::Ok();
    return Run("AllGather", [&] {
      gloo::AllgatherOptions options(context_);
      options.setInput(Bytes(send), bytes);
      options.setOutput(Bytes(recv), bytes * size());
      gloo::allgather(options);
    });
  }

  Status Broadcast(void* data, size_t bytes, int root) override {
    if (root < 0 || root >= size()) {
      return Status::InvalidArgument("Broadcast: root " + std::to_string(root) +
                                     " is not a rank of a group of " + std::to_string(size()));
    }
    if (bytes == 0) return Status::Ok();
    return Run("Broadcast", [&] {
      gloo::BroadcastOptions options(context_);
      options.setOutput(Bytes(data), bytes);
      options.setRoot(root);
      gloo::broadcast(options);
    });
  }

  Status Barrier() override {
    return Run("Barrier", [&] {
      gloo::BarrierOptions options(context_);
      gloo::barrier(options);
    });
  }

 private:
  // Runs one Gloo collective and turns its exceptions into a Status. After any failure the pairs
  // may hold half-finished transfers, so the communicator refuses all further work.
  template <typename Body>
  Status Run(std::string_view what, Body&& body) {
    if (!broken_.empty()) {
      return Status::Unavailable(std::string(what) +
                                 ": gloo communicator unusable after: " + broken_);
    }
    try {
      body();
      return Status::Ok();
    } catch (const gloo::Exception& e) {  // I/O errors and timeouts: a peer is gone or stuck
      broken_ = e.what();
      return Status::Unavailable(std::string(what) + " failed on rank " + std::to_string(rank()) +
                                 ": " + e.what());
    } catch (const std::exception& e) {  // Gloo's own checks (GLOO_ENFORCE): a bug on our side
      broken_ = e.what();
      return Status::Internal(std::string(what) + ": " + e.what());
    }
  }

  GroupStore store_;  // rank 0's server must outlive the rendezvous of every rank
  std::shared_ptr<gloo::rendezvous::Context> context_;
  std::string broken_;  // why the communicator failed; empty while healthy
  uint8_t empty_ = 0;
};

}  // namespace

StatusOr<std::unique_ptr<Communicator>> ConnectGlooWithStore(int rank, int world_size,
                                                             GroupStore store,
                                                             std::chrono::milliseconds timeout) {
  if (world_size < 1 || rank < 0 || rank >= world_size || store.client == nullptr) {
    return Status::InvalidArgument("ConnectGloo: rank " + std::to_string(rank) + " of world size " +
                                   std::to_string(world_size) +
                                   (store.client == nullptr ? " without a store" : ""));
  }
  const std::string address = TransportAddress(*store.client);
  // Gloo binds its pairs to this address. Check it first: Gloo's own failure is cryptic (and
  // leaks its getaddrinfo list).
  if (StatusOr<UniqueFd> probe = ListenTcp(address, 0); !probe.ok()) {
    return Status::Unavailable("gloo cannot listen on " + address +
                               " (SWITCHYARD_HOST_ADDR, else the local address towards the "
                               "leader): " +
                               probe.status().message());
  }
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = address;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, world_size);
    context->setTimeout(timeout);
    StoreForGloo gloo_store(*store.client, timeout);
    context->connectFullMesh(gloo_store, device);
    // Nobody returns before every rank is connected, so rank 0 cannot take the store down while
    // a peer still needs it.
    gloo::BarrierOptions barrier(context);
    gloo::barrier(barrier);
    return std::unique_ptr<Communicator>(new GlooCommunicator(std::move(store), context));
  } catch (const std::exception& e) {
    return Status::Unavailable("gloo rendezvous of rank " + std::to_string(rank) + " of " +
                               std::to_string(world_size) + " (listening on " + address +
                               ", store " + store.client->store_address() +
                               ") failed: " + e.what());
  }
}

StatusOr<std::unique_ptr<Communicator>> ConnectGloo(const DistEnv& env,
                                                    std::chrono::milliseconds timeout) {
  SY_ASSIGN_OR_RETURN(GroupStore store, JoinGroupStore(env, timeout));
  return ConnectGlooWithStore(env.rank, env.world_size, std::move(store), timeout);
}

}  // namespace sy
