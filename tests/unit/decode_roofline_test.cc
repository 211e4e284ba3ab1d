// decode_bench's bytes per decoded token: counted at the dtype the weights were loaded in.
#include "tests/bench/decode_roofline.h"

#include <gtest/gtest.h>

#include "engine/backend/cpu_backend.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

// An f16 checkpoint whose config.json says float32 (the golden Mixtral's does) must be counted
// at 2 bytes per matrix element; the bench once took 4 from the config and overstated the
// roofline's bytes.
TEST(DecodeRoofline, CountsTheLoadedDtypeNotTheConfigs) {
  auto config = LoadModelConfig(testing::GoldenDir() + "/models/mixtral");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_EQ(config->torch_dtype, "float32");
  CpuBackend backend(1);
  auto weights = RandomModelWeights(*config, &backend, 1, DType::kF16);
  ASSERT_TRUE(weights.ok()) << weights.status().ToString();

  // By hand from config.json: hidden 64, 4 query heads and 2 KV heads of 16, 8 experts of
  // intermediate 16 with top-2, vocab 400, 2 layers, no biases, untied embeddings.
  const int64_t context = 10;
  const double f16 = 2, f32 = 4;
  const double matrices = (64 * 64 + 32 * 64 + 32 * 64 + 64 * 64)  // q, k, v, o
                          + 8 * 64                                 // router
                          + 2 * 3 * 16 * 64;              // gate, up and down of the top 2 experts
  const double per_layer = f16 * matrices + f32 * 2 * 64  // and the two norms
                           + f32 * 2 * 32 * context;      // K and V of the context
  const double want = f16 * 64                            // one embedding row
                      + 2 * per_layer + f32 * 64          // the final norm
                      + f16 * 400 * 64;                   // lm_head
  EXPECT_DOUBLE_EQ(DecodeBytesPerToken(*config, *weights, context), want);
}

}  // namespace
}  // namespace sy
