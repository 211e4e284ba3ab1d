// The fast row-wise and elementwise ops against the reference (norms, rope, activations,
// softmax, routing, embedding, row moves) at odd sizes, every ISA and thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cpu/thread_pool.h"

namespace sy::cpu {
namespace {

// f32 throughout. Reductions (norms, softmax sums) differ in order and exp differs by a few ulp
// between a vectorised polynomial and libm; elementwise arithmetic may be fused (FMA).
constexpr Tolerance kReduceTolerance{1e-6, 2e-5};
constexpr Tolerance kElementwiseTolerance{1e-7, 1e-5};
constexpr Tolerance kExact{0, 0};

const int64_t kDims[] = {1, 7, 16, 17, 1023, 4096 + 5};

std::string where(Isa isa, ThreadPool* pool) {
  return std::string(" isa=") + std::string(isa_name(isa)) +
         " threads=" + std::to_string(pool != nullptr ? pool->size() : 1);
}

class KernelsOps : public testing::TestWithParam<Isa> {
 protected:
  IsaScope isa_{GetParam()};
  ThreadPool pool2_{2};
  ThreadPool pool3_{3};
  std::vector<ThreadPool*> pools() { return {nullptr, &pool2_, &pool3_}; }
  std::string at(ThreadPool* pool) { return where(GetParam(), pool); }
};

TEST_P(KernelsOps, RmsNorm) {
  for (int64_t rows : {1, 3, 37}) {
    for (int64_t dim : kDims) {
      const auto x = random_floats(rows * dim, -2, 2, 1);
      const auto w = random_floats(dim, 0.5f, 1.5f, 2);
      std::vector<float> want(x.size());
      ref::rms_norm(x.data(), w.data(), want.data(), rows, dim, 1e-6f, nullptr);
      for (ThreadPool* pool : pools()) {
        std::vector<float> got(x.size());
        poison(got);
        rms_norm(x.data(), w.data(), got.data(), rows, dim, 1e-6f, pool);
        ASSERT_EQ(compare_close(got.data(), want.data(), got.size(), kReduceTolerance, dim), "")
            << "rows=" << rows << " dim=" << dim << at(pool);
        got = x;  // in place
        rms_norm(got.data(), w.data(), got.data(), rows, dim, 1e-6f, pool);
        ASSERT_EQ(compare_close(got.data(), want.data(), got.size(), kReduceTolerance, dim), "")
            << "in place rows=" << rows << " dim=" << dim << at(pool);
      }
    }
  }
}

TEST_P(KernelsOps, AddRmsNorm) {
  for (int64_t rows : {1, 3, 37}) {
    for (int64_t dim : kDims) {
      const auto residual = random_floats(rows * dim, -2, 2, 3);
      const auto x = random_floats(rows * dim, -2, 2, 4);
      const auto w = random_floats(dim, 0.5f, 1.5f, 5);
      std::vector<float> want_residual = residual;
      std::vector<float> want(x.size());
      ref::add_rms_norm(want_residual.data(), x.data(), w.data(), want.data(), rows, dim, 1e-5f,
                        nullptr);
      for (ThreadPool* pool : pools()) {
        std::vector<float> got_residual = residual;
        std::vector<float> got(x.size());
        poison(got);
        add_rms_norm(got_residual.data(), x.data(), w.data(), got.data(), rows, dim, 1e-5f, pool);
        ASSERT_EQ(compare_close(got_residual.data(), want_residual.data(), got.size(), kExact), "")
            << "residual rows=" << rows << " dim=" << dim << at(pool);
        ASSERT_EQ(compare_close(got.data(), want.data(), got.size(), kReduceTolerance, dim), "")
            << "rows=" << rows << " dim=" << dim << at(pool);
      }
    }
  }
}

TEST_P(KernelsOps, RopeNeoxAndInterleaved) {
  struct Layout {
    int64_t heads, head_dim, rotary_dim;
  };
  for (const Layout& l : {Layout{4, 64, 64}, Layout{2, 128, 64}, Layout{3, 10, 6},
                          Layout{1, 34, 34}, Layout{2, 6, 0}, Layout{1, 1024, 1024}}) {
    for (int64_t tokens : {1, 5, 33}) {
      std::vector<float> inv_freq(l.rotary_dim / 2);
      for (size_t i = 0; i < inv_freq.size(); ++i) {
        inv_freq[i] = std::pow(10000.0f, -2.0f * i / static_cast<float>(l.rotary_dim));
      }
      std::vector<int32_t> positions(tokens);
      std::mt19937 rng(static_cast<uint32_t>(tokens));
      for (int32_t& p : positions) p = static_cast<int32_t>(rng() % 5000);
      const auto x = random_floats(tokens * l.heads * l.head_dim, -2, 2, 6);
      for (auto [attn_scale, interleaved] : {std::pair{1.0f, false}, std::pair{1.25f, false},
                                             std::pair{1.0f, true}, std::pair{1.25f, true}}) {
        std::vector<float> want = x;
        (interleaved ? ref::rope_interleaved : ref::rope_neox)(
            want.data(), tokens, l.heads, l.head_dim, l.rotary_dim, positions.data(),
            inv_freq.data(), attn_scale, nullptr);
        for (ThreadPool* pool : pools()) {
          std::vector<float> got = x;
          (interleaved ? rope_interleaved : rope_neox)(got.data(), tokens, l.heads, l.head_dim,
                                                       l.rotary_dim, positions.data(),
                                                       inv_freq.data(), attn_scale, pool);
          ASSERT_EQ(
              compare_close(got.data(), want.data(), got.size(), kElementwiseTolerance, l.head_dim),
              "")
              << "interleaved=" << interleaved << " tokens=" << tokens << " heads=" << l.heads
              << " head_dim=" << l.head_dim << " rotary_dim=" << l.rotary_dim << at(pool);
        }
      }
    }
  }
}

TEST_P(KernelsOps, SiluMul) {
  for (int64_t rows : {1, 4, 9}) {
    for (int64_t inter : {1, 15, 16, 1408 + 3}) {
      for (float range : {8.0f, 100.0f}) {  // 100: saturated tails of exp
        const auto gate_up = random_floats(rows * 2 * inter, -range, range, 7);
        std::vector<float> want(rows * inter);
        ref::silu_mul(gate_up.data(), want.data(), rows, inter, nullptr);
        for (ThreadPool* pool : pools()) {
          std::vector<float> got(want.size());
          poison(got);
          silu_mul(gate_up.data(), got.data(), rows, inter, pool);
          ASSERT_EQ(
              compare_close(got.data(), want.data(), got.size(), kElementwiseTolerance, inter), "")
              << "rows=" << rows << " inter=" << inter << " range=" << range << at(pool);
        }
      }
    }
  }
}

TEST_P(KernelsOps, SoftmaxAndSigmoid) {
  for (int64_t rows : {1, 3}) {
    for (int64_t n : {1, 5, 16, 17, 64, 1000}) {
      const auto x = random_floats(rows * n, -30, 30, 8);
      std::vector<float> want = x;
      ref::softmax(want.data(), rows, n);
      std::vector<float> got = x;
      softmax(got.data(), rows, n);
      ASSERT_EQ(compare_close(got.data(), want.data(), got.size(), kReduceTolerance, n), "")
          << "softmax rows=" << rows << " n=" << n << at(nullptr);
    }
  }
  for (int64_t n : {1, 15, 1000}) {
    const auto x = random_floats(n, -100, 100, 9);
    std::vector<float> want = x;
    ref::sigmoid(want.data(), n);
    std::vector<float> got = x;
    sigmoid(got.data(), n);
    ASSERT_EQ(compare_close(got.data(), want.data(), n, kElementwiseTolerance), "")
        << "sigmoid n=" << n << at(nullptr);
  }
}

// A router setting of one architecture (sy::cpu::ref::route).
struct RouterCase {
  const char* name;
  int64_t experts;
  RouterArgs args;
  bool bias;
};

std::vector<RouterCase> router_cases() {
  std::vector<RouterCase> cases;
  for (int64_t experts : {8, 60, 64, 128, 256}) {
    for (int k : {1, 2, 6, 8}) {
      for (bool renormalize : {false, true}) {
        RouterArgs softmax;
        softmax.k = k;
        softmax.renormalize = renormalize;
        cases.push_back({"softmax", experts, softmax, false});
      }
    }
  }
  RouterArgs v2;  // DeepSeek-V2: softmax, group max, scaled
  v2.k = 6;
  v2.scaling = 16.0f;
  v2.n_group = 8;
  v2.topk_group = 3;
  cases.push_back({"deepseek_v2", 160, v2, false});
  RouterArgs v3;  // DeepSeek-V3 / GLM-4.5: sigmoid, bias, group top-2 sum
  v3.k = 8;
  v3.scoring = RouterScoring::kSigmoid;
  v3.renormalize = true;
  v3.scaling = 2.5f;
  v3.n_group = 8;
  v3.topk_group = 4;
  v3.group_scoring = GroupScoring::kTopTwoSum;
  cases.push_back({"deepseek_v3", 256, v3, true});
  RouterArgs v3_tight = v3;  // k > experts in the kept groups: masked experts get picked
  v3_tight.n_group = 4;
  v3_tight.topk_group = 1;
  cases.push_back({"v3_masked_picks", 16, v3_tight, true});
  RouterArgs kimi = v3;  // Kimi K2: no groups
  kimi.n_group = 1;
  kimi.topk_group = 1;
  kimi.scaling = 2.827f;
  cases.push_back({"kimi_k2", 384, kimi, true});
  RouterArgs sigmoid_plain = kimi;
  sigmoid_plain.renormalize = false;
  cases.push_back({"sigmoid_no_bias", 64, sigmoid_plain, false});
  return cases;
}

TEST_P(KernelsOps, Route) {
  for (const RouterCase& c : router_cases()) {
    const int64_t experts = c.experts;
    const int k = c.args.k;
    constexpr int64_t kTokens = 40;
    // Distinct logits 0.05 apart (no near-ties that rounding could reorder), and logits from
    // a handful of integers (exact ties, which must go to the lower id on both sides).
    std::vector<float> distinct(kTokens * experts);
    std::mt19937 rng(static_cast<uint32_t>(experts * 10 + k));
    for (int64_t t = 0; t < kTokens; ++t) {
      std::vector<int> order(experts);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      for (int64_t e = 0; e < experts; ++e) distinct[t * experts + e] = 0.05f * order[e] - 3;
    }
    std::vector<float> tied(kTokens * experts);
    for (float& v : tied) v = static_cast<float>(rng() % 4);
    // Biases on a grid of 1/8 in [-0.5, 0.5].
    std::vector<float> bias(experts);
    for (float& b : bias) b = static_cast<float>(static_cast<int>(rng() % 9) - 4) / 8.0f;
    RouterArgs args = c.args;
    args.correction_bias = c.bias ? bias.data() : nullptr;
    for (const auto* logits : {&distinct, &tied}) {
      std::vector<int32_t> want_ids(kTokens * k), got_ids(kTokens * k, -1);
      std::vector<float> want_w(kTokens * k), got_w(kTokens * k);
      poison(got_w);
      ref::route(logits->data(), kTokens, experts, args, want_ids.data(), want_w.data());
      route(logits->data(), kTokens, experts, args, got_ids.data(), got_w.data());
      ASSERT_EQ(got_ids, want_ids) << c.name << " experts=" << experts << " k=" << k << at(nullptr);
      ASSERT_EQ(compare_close(got_w.data(), want_w.data(), got_w.size(), kReduceTolerance, k), "")
          << c.name << " experts=" << experts << " k=" << k << " renormalize=" << args.renormalize
          << at(nullptr);
    }
  }
}

TEST_P(KernelsOps, EmbeddingEveryDtype) {
  const std::vector<int32_t> ids = {3, 0, 3, 9, 5};
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t dim : kDims) {
      const Weights table = random_weights(dtype, 10 * dim, -4, 4, 10);
      std::vector<float> want(ids.size() * dim);
      ref::embedding(ids.data(), 5, table.data(), dtype, dim, want.data(), nullptr);
      for (ThreadPool* pool : pools()) {
        std::vector<float> got(want.size());
        poison(got);
        embedding(ids.data(), 5, table.data(), dtype, dim, got.data(), pool);
        ASSERT_EQ(compare_close(got.data(), want.data(), got.size(), kExact, dim), "")
            << dtype_name(dtype) << " dim=" << dim << at(pool);
      }
    }
  }
}

TEST_P(KernelsOps, RowMovesAndAdds) {
  for (int64_t dim : kDims) {
    const auto src = random_floats(6 * dim, -1, 1, 11);
    const std::vector<int32_t> idx = {4, 1, 4, 0, 2, 4};  // repeats a source row
    const auto scale = random_floats(6, -2, 2, 12);
    const auto base = random_floats(5 * dim, -1, 1, 13);

    std::vector<float> want(6 * dim), got(6 * dim);
    poison(got);
    ref::gather_rows(src.data(), idx.data(), 6, dim, want.data());
    gather_rows(src.data(), idx.data(), 6, dim, got.data());
    ASSERT_EQ(compare_close(got.data(), want.data(), got.size(), kExact, dim), "")
        << "gather dim=" << dim << at(nullptr);

    want = base;
    got = base;
    ref::add_gated_rows(src.data(), scale.data(), 5, dim, want.data());
    add_gated_rows(src.data(), scale.data(), 5, dim, got.data());
    ASSERT_EQ(compare_close(got.data(), want.data(), 5 * dim, kElementwiseTolerance, dim), "")
        << "add_gated dim=" << dim << at(nullptr);

    want.assign(5 * dim, 0.0f);
    got.assign(5 * dim, 0.0f);
    poison(got);
    ref::add(src.data(), base.data(), want.data(), 5 * dim);
    add(src.data(), base.data(), got.data(), 5 * dim);
    ASSERT_EQ(compare_close(got.data(), want.data(), 5 * dim, kExact), "")
        << "add dim=" << dim << at(nullptr);
  }
}

std::string isa_param_name(const testing::TestParamInfo<Isa>& info) {
  return std::string(isa_name(info.param));
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(KernelsOps);
INSTANTIATE_TEST_SUITE_P(FastIsas, KernelsOps, testing::ValuesIn(vector_isas()), isa_param_name);

}  // namespace
}  // namespace sy::cpu
