// The NCCL communicator: the same collective checks as the CPU transports, on one GPU (world
// size 1) and, with several GPUs, one rank per GPU as threads of this process. Skips where no
// GPU is present. The checks use host memory, so a staging wrapper moves each collective's
// buffers to and from the GPU around the real NCCL call.
#include "engine/dist/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <numeric>
#include <thread>

#include "engine/dist/socket_io.h"
#include "engine/dist/tcp_store.h"
#include "tests/unit/dist_collective_checks.h"

namespace sy {
namespace {

using std::chrono::milliseconds;

int GpuCount() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

// A device buffer holding a copy of host bytes (or room for them); freed on destruction.
class DeviceBytes {
 public:
  explicit DeviceBytes(size_t bytes) : bytes_(bytes) {
    EXPECT_EQ(cudaMalloc(&data_, std::max<size_t>(bytes, 1)), cudaSuccess);
  }
  DeviceBytes(const void* host, size_t bytes) : DeviceBytes(bytes) {
    if (bytes > 0) {
      EXPECT_EQ(cudaMemcpy(data_, host, bytes, cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  ~DeviceBytes() { cudaFree(data_); }
  void* get() { return data_; }
  void CopyTo(void* host) const {
    if (bytes_ > 0) {
      EXPECT_EQ(cudaMemcpy(host, data_, bytes_, cudaMemcpyDeviceToHost), cudaSuccess);
    }
  }

 private:
  void* data_ = nullptr;
  size_t bytes_;
};

size_t ElementBytes(ReduceType type) { return type == ReduceType::kF32 ? 4 : 8; }

// Host-memory view of a device-memory communicator: copies in, runs the collective, copies out.
class HostStaging final : public Communicator {
 public:
  HostStaging(std::unique_ptr<Communicator> nccl, int device)
      : nccl_(std::move(nccl)), device_(device) {}

  int rank() const override { return nccl_->rank(); }
  int size() const override { return nccl_->size(); }
  std::string_view transport() const override { return nccl_->transport(); }

  Status AllToAllV(const void* send, std::span<const size_t> send_bytes, void* recv,
                   std::span<const size_t> recv_bytes) override {
    cudaSetDevice(device_);
    DeviceBytes device_send(send, std::accumulate(send_bytes.begin(), send_bytes.end(), 0ul));
    DeviceBytes device_recv(std::accumulate(recv_bytes.begin(), recv_bytes.end(), 0ul));
    Status status = nccl_->AllToAllV(device_send.get(), send_bytes, device_recv.get(), recv_bytes);
    if (status.ok()) device_recv.CopyTo(recv);
    return status;
  }
  Status AllReduceSum(void* data, size_t count, ReduceType type) override {
    cudaSetDevice(device_);
    DeviceBytes device_data(data, count * ElementBytes(type));
    Status status = nccl_->AllReduceSum(device_data.get(), count, type);
    if (status.ok()) device_data.CopyTo(data);
    return status;
  }
  Status AllGather(const void* send, size_t bytes, void* recv) override {
    cudaSetDevice(device_);
    DeviceBytes device_send(send, bytes);
    DeviceBytes device_recv(bytes * size());
    Status status = nccl_->AllGather(device_send.get(), bytes, device_recv.get());
    if (status.ok()) device_recv.CopyTo(recv);
    return status;
  }
  Status Broadcast(void* data, size_t bytes, int root) override {
    cudaSetDevice(device_);
    DeviceBytes device_data(data, bytes);
    Status status = nccl_->Broadcast(device_data.get(), bytes, root);
    if (status.ok()) device_data.CopyTo(data);
    return status;
  }
  Status Barrier() override { return nccl_->Barrier(); }

 private:
  std::unique_ptr<Communicator> nccl_;
  const int device_;
};

// One rank per GPU, as threads sharing one store server.
std::vector<std::unique_ptr<Communicator>> ConnectRanks(int n) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  EXPECT_TRUE(server.ok());
  std::shared_ptr<TcpStoreServer> shared_server = std::move(server).value();
  std::vector<std::unique_ptr<Communicator>> comms(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      auto client =
          TcpStoreClient::Connect("127.0.0.1", shared_server->port(), milliseconds(10000));
      ASSERT_TRUE(client.ok());
      auto comm = ConnectNcclWithStore(r, n, GroupStore{nullptr, std::move(client).value()}, r,
                                       nullptr, milliseconds(60000));
      ASSERT_TRUE(comm.ok()) << comm.status().ToString();
      comms[r] = std::make_unique<HostStaging>(std::move(comm).value(), r);
    });
  }
  for (auto& thread : threads) thread.join();
  return comms;
}

TEST(NcclCommunicator, OneGpuAllCollectives) {
  if (GpuCount() == 0) GTEST_SKIP() << "no CUDA GPU (cudaGetDeviceCount failed or found none)";
  auto listener = ListenTcp("127.0.0.1", 0);  // a free port for rank 0's store
  ASSERT_TRUE(listener.ok());
  const int port = LocalPort(listener->get());
  listener->reset();
  auto comm = ConnectNccl(DistEnv{.leader_port = port}, 0, nullptr, milliseconds(60000));
  ASSERT_TRUE(comm.ok()) << comm.status().ToString();
  EXPECT_EQ((*comm)->transport(), "nccl");
  HostStaging staged(std::move(comm).value(), 0);
  EXPECT_EQ(dist_test::CheckAllCollectives(staged), "");
}

TEST(NcclCommunicator, OneRankPerGpuAllCollectives) {
  const int gpus = GpuCount();
  if (gpus < 2) GTEST_SKIP() << "needs 2 or more CUDA GPUs, found " << gpus;
  auto comms = ConnectRanks(gpus);
  for (const auto& comm : comms) ASSERT_NE(comm, nullptr);
  for (const std::string& error : dist_test::RunOnThreads(comms, dist_test::CheckAllCollectives)) {
    EXPECT_EQ(error, "");
  }
}

}  // namespace
}  // namespace sy
