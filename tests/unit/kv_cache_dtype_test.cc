// --kv-cache-dtype: parsing, the backend each value makes (CPU: f32, bf16 or e4m3 rows; CUDA
// refuses fp8), and the KV cache and memory plan counting its bytes, row scales included, so the
// same memory holds about 2x the f32 blocks in bf16 and about 4x in fp8.
#include <gtest/gtest.h>

#include "engine/backend/backend_factory.h"
#include "engine/backend/cpu_backend.h"
#include "engine/kv/kv_cache.h"
#include "engine/runner/memory_plan.h"

namespace sy {
namespace {

TEST(KvCacheDType, ParsesTheThreeNames) {
  EXPECT_EQ(ParseKvCacheDType("auto").value(), KvCacheDType::kAuto);
  EXPECT_EQ(ParseKvCacheDType("bf16").value(), KvCacheDType::kBF16);
  EXPECT_EQ(ParseKvCacheDType("fp8").value(), KvCacheDType::kFP8);
  for (KvCacheDType t : {KvCacheDType::kAuto, KvCacheDType::kBF16, KvCacheDType::kFP8}) {
    EXPECT_EQ(ParseKvCacheDType(KvCacheDTypeName(t)).value(), t);
  }
  for (const char* bad : {"", "f32", "fp16", "FP8", "e4m3", "fp8_e5m2", "int8"}) {
    auto t = ParseKvCacheDType(bad);
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find("--kv-cache-dtype must be auto, bf16 or fp8"),
              std::string::npos)
        << t.status().message();
  }
}

TEST(KvCacheDType, CpuBackendHoldsTheAskedType) {
  const std::pair<KvCacheDType, DType> cases[] = {{KvCacheDType::kAuto, DType::kF32},
                                                  {KvCacheDType::kBF16, DType::kBF16},
                                                  {KvCacheDType::kFP8, DType::kF8Row}};
  for (auto [asked, held] : cases) {
    BackendOptions o;
    o.cpu_threads = 1;
    o.kv_cache_dtype = asked;
    auto b = CreateBackend(DeviceSpec{}, o);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ((*b)->kv_cache_dtype(), held) << KvCacheDTypeName(asked);
  }
}

TEST(KvCacheDType, CudaRefusesFp8WithAReason) {
  BackendOptions o;
  o.kv_cache_dtype = KvCacheDType::kFP8;
  auto b = CreateBackend(ParseDevice("cuda").value(), o);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(b.status().message().find("CPU backend only"), std::string::npos)
      << b.status().message();
}

TEST(KvCacheDType, BytesCountRowScales) {
  // 32 layers of 8 KV heads x 128 (K and V), and an MLA cache (576-value rows, no V).
  EXPECT_EQ(KvCache::BytesPerToken(32, 1024, 1024, DType::kF32), 32u * 2 * 1024 * 4);
  EXPECT_EQ(KvCache::BytesPerToken(32, 1024, 1024, DType::kBF16), 32u * 2 * 1024 * 2);
  EXPECT_EQ(KvCache::BytesPerToken(32, 1024, 1024, DType::kF8Row), 32u * 2 * (1024 + 4));
  EXPECT_EQ(KvCache::BytesPerToken(61, 576, 0, DType::kF8Row), 61u * (576 + 4));
  EXPECT_EQ(KvCache::BytesPerBlock(32, 16, 1024, 1024, DType::kF8Row),
            16 * KvCache::BytesPerToken(32, 1024, 1024, DType::kF8Row));
}

TEST(KvCacheDType, SameMemoryHoldsMoreBlocks) {
  auto blocks = [](DType dtype) {
    KvMemoryInput in;
    in.total_bytes = size_t{16} << 30;
    in.used_bytes = size_t{4} << 30;
    in.utilization = 0.9;
    in.bytes_per_block = KvCache::BytesPerBlock(32, 16, 1024, 1024, dtype);
    return PlanKvBlocks(in).value();
  };
  const int64_t f32 = blocks(DType::kF32);
  const int64_t bf16 = blocks(DType::kBF16);
  const int64_t fp8 = blocks(DType::kF8Row);
  EXPECT_NEAR(static_cast<double>(bf16) / f32, 2.0, 0.01);
  // Four times f32's, less the 4-byte scale of each 1024-byte row.
  EXPECT_NEAR(static_cast<double>(fp8) / f32, 4.0 * 1024 / 1028, 0.01);
  EXPECT_LT(fp8, 4 * f32);
}

TEST(KvCacheDType, CacheRowsTakeTheirBytes) {
  CpuBackend backend(1);
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF8Row}) {
    auto kv = KvCache::Create(&backend, 2, 3, 4, 40, 24, dtype);
    ASSERT_TRUE(kv.ok()) << kv.status().ToString();
    EXPECT_EQ(kv->dtype(), dtype);
    const Tensor k1 = kv->k(1);
    const Tensor k0 = kv->k(0);
    EXPECT_EQ(k1.rows, 12);
    EXPECT_EQ(k1.cols, 40);
    EXPECT_EQ(k1.row_bytes(), dtype_row_bytes(dtype, 40));
    EXPECT_EQ(static_cast<char*>(k1.data) - static_cast<char*>(k0.data),
              static_cast<std::ptrdiff_t>(12 * dtype_row_bytes(dtype, 40)));
    EXPECT_EQ(kv->v(1).row_bytes(), dtype_row_bytes(dtype, 24));
  }
  auto bad = KvCache::Create(&backend, 2, 3, 4, 40, 24, DType::kI8);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sy
