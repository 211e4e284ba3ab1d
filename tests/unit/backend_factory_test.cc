#include "engine/backend/backend_factory.h"

#include <gtest/gtest.h>

namespace sy {
namespace {

TEST(ParseDevice, AcceptsCpuCudaAndCudaN) {
  EXPECT_EQ(ParseDevice("cpu")->kind, DeviceSpec::Kind::kCpu);
  auto cuda = ParseDevice("cuda");
  ASSERT_TRUE(cuda.ok());
  EXPECT_EQ(cuda->kind, DeviceSpec::Kind::kCuda);
  EXPECT_EQ(cuda->index, 0);
  auto three = ParseDevice("cuda:3");
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(three->index, 3);
  EXPECT_EQ(three->ToString(), "cuda:3");
}

TEST(ParseDevice, RejectsOtherForms) {
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:1x", "CUDA", "cpu:0", "cuda:a"}) {
    auto d = ParseDevice(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find("cpu, cuda or cuda:N"), std::string::npos);
  }
}

TEST(CreateBackend, CpuAlwaysWorks) {
  auto b = CreateBackend(DeviceSpec{}, BackendOptions{2, DType::kBF16});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->name(), "cpu");
  EXPECT_FALSE((*b)->SupportsGraphs());
  EXPECT_EQ((*b)->MemoryInfo().status().code(), StatusCode::kUnimplemented);
}

TEST(CreateBackend, CudaIsACleanErrorWhereItCannotRun) {
  DeviceSpec d;
  d.kind = DeviceSpec::Kind::kCuda;
  d.index = 97;  // no machine has this device
  auto b = CreateBackend(d, BackendOptions{});
  ASSERT_FALSE(b.ok());
  if (CudaBackendBuilt()) {
    // No GPU here: Unavailable; with GPUs, the ordinal does not exist.
    EXPECT_TRUE(b.status().code() == StatusCode::kUnavailable ||
                b.status().code() == StatusCode::kInvalidArgument)
        << b.status().ToString();
  } else {
    EXPECT_EQ(b.status().code(), StatusCode::kUnimplemented);
  }
}

}  // namespace
}  // namespace sy
