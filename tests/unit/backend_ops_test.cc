// The Backend ops added for DeepSeek-V2/V3, Kimi K2 and GLM-4.5 on the CPU backend, through
// Tensors as the model calls them: Route with a correction-bias tensor and group limit, Rope
// with either pair layout, and Add. Expected values are worked out by hand in the comments.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numbers>
#include <vector>

#include "engine/backend/backend_factory.h"

namespace sy {
namespace {

class BackendOps : public testing::Test {
 protected:
  void SetUp() override {
    auto b = CreateBackend(DeviceSpec{}, BackendOptions{2, DType::kF32});
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    backend_ = std::move(*b);
  }

  // A device tensor [rows, cols] holding `values` (f32 or i32).
  template <typename T>
  Tensor Upload(const std::vector<T>& values, int64_t rows, int64_t cols, DType dtype) {
    auto buf = backend_->Allocate(values.size() * sizeof(T));
    EXPECT_TRUE(buf.ok());
    backend_->CopyToDevice(buf->data(), values.data(), values.size() * sizeof(T));
    Tensor t{buf->data(), dtype, rows, cols};
    buffers_.push_back(std::move(*buf));
    return t;
  }
  template <typename T>
  std::vector<T> Download(const Tensor& t) {
    std::vector<T> host(t.numel());
    backend_->CopyToHost(host.data(), t.data, host.size() * sizeof(T));
    return host;
  }

  std::unique_ptr<Backend> backend_;
  std::vector<DeviceBuffer> buffers_;
};

float Logit(float p) { return std::log(p / (1.0f - p)); }

TEST_F(BackendOps, RouteWithBiasTensorAndGroups) {
  // Two tokens, 6 experts in 3 groups of 2, sigmoid scores, top-2-sum group scores, 2 groups
  // kept, k 2, renormalised, scaled by 2.
  // Token 0: scores [0.9, 0.5 | 0.6, 0.3 | 0.2, 0.1], bias [0, -0.8, 0, 0, 0, 0.7]
  //   choices [0.9, -0.3 | 0.6, 0.3 | 0.2, 0.8]; group sums [0.6, 0.9, 1.0] -> groups 2, 1;
  //   top 2 of [0, 0, 0.6, 0.3, 0.2, 0.8] = experts 5, 2 with scores 0.1, 0.6:
  //   weights 2 * [0.1, 0.6] / 0.7.
  // Token 1: scores [0.7, 0.8 | 0.1, 0.2 | 0.3, 0.4] + the same bias
  //   = [0.7, 0 | 0.1, 0.2 | 0.3, 1.1]; sums [0.7, 0.3, 1.4] -> groups 2, 0;
  //   top 2 = experts 5 (1.1), 0 (0.7), scores 0.4, 0.7: weights 2 * [0.4, 0.7] / 1.1.
  std::vector<float> logits;
  for (float p : {0.9f, 0.5f, 0.6f, 0.3f, 0.2f, 0.1f, 0.7f, 0.8f, 0.1f, 0.2f, 0.3f, 0.4f}) {
    logits.push_back(Logit(p));
  }
  const Tensor logits_t = Upload(logits, 2, 6, DType::kF32);
  const Tensor bias = Upload(std::vector<float>{0, -0.8f, 0, 0, 0, 0.7f}, 1, 6, DType::kF32);
  const Tensor ids = Upload(std::vector<int32_t>(4, -1), 2, 2, DType::kI32);
  const Tensor weights = Upload(std::vector<float>(4, NAN), 2, 2, DType::kF32);
  RouterParams params;
  params.k = 2;
  params.scoring = cpu::RouterScoring::kSigmoid;
  params.renormalize = true;
  params.scaling = 2.0f;
  params.n_group = 3;
  params.topk_group = 2;
  params.group_scoring = cpu::GroupScoring::kTopTwoSum;
  backend_->Route(logits_t, params, &bias, ids, weights);
  EXPECT_EQ(Download<int32_t>(ids), (std::vector<int32_t>{5, 2, 5, 0}));
  const std::vector<float> want = {0.2f / 0.7f, 1.2f / 0.7f, 0.8f / 1.1f, 1.4f / 1.1f};
  const std::vector<float> got = Download<float>(weights);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6f) << i;
}

TEST_F(BackendOps, RopePairLayouts) {
  // head_dim 4, all rotary, one token at position 1, inv_freq [pi/2, 0]: the first pair turns
  // by 90 degrees, (a, b) -> (-b, a); the second stays.
  // Rotate-half pairs (0, 2), (1, 3): [1, 2, 3, 4] -> [-3, 2, 1, 4].
  // Interleaved pairs (0, 1), (2, 3): [1, 2, 3, 4] -> [-2, 1, 3, 4].
  const Tensor positions = Upload(std::vector<int32_t>{1}, 1, 1, DType::kI32);
  const Tensor inv_freq =
      Upload(std::vector<float>{std::numbers::pi_v<float> / 2, 0.0f}, 1, 2, DType::kF32);
  for (bool interleaved : {false, true}) {
    const Tensor x = Upload(std::vector<float>{1, 2, 3, 4}, 1, 4, DType::kF32);
    backend_->Rope(x, 4, 4, positions, inv_freq, 1.0f, interleaved);
    const std::vector<float> want =
        interleaved ? std::vector<float>{-2, 1, 3, 4} : std::vector<float>{-3, 2, 1, 4};
    const std::vector<float> got = Download<float>(x);
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-6f) << "interleaved " << interleaved << " at " << i;
    }
  }
}

TEST_F(BackendOps, AddAccumulatesIntoY) {
  const Tensor x = Upload(std::vector<float>{1, -2, 0.5f, 4, 5, 6}, 2, 3, DType::kF32);
  const Tensor y = Upload(std::vector<float>{10, 20, 30, 40, 50, 60}, 2, 3, DType::kF32);
  backend_->Add(x, y);
  EXPECT_EQ(Download<float>(y), (std::vector<float>{11, 18, 30.5f, 44, 55, 66}));
  EXPECT_EQ(Download<float>(x), (std::vector<float>{1, -2, 0.5f, 4, 5, 6}));
}

}  // namespace
}  // namespace sy
