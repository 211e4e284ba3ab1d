// ShardedSafetensorsWriter: byte-exact output against a hand-built file, read-back of single and
// sharded checkpoints, streaming fills and misuse.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model/checkpoint.h"
#include "engine/model/safetensors.h"
#include "engine/model/safetensors_writer.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sy_writer_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Read(const std::string& name) const {
    std::ifstream in(dir_ / name, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
};

// The expected bytes, built by hand from the format description: u64 little-endian header
// length, the JSON header padded with spaces to a multiple of 8, then the data region with the
// 4-byte tensor first so both tensors stay aligned.
TEST_F(WriterTest, MatchesHandBuiltFile) {
  ShardedSafetensorsWriter writer(dir_.string(), 1 << 20);
  ASSERT_TRUE(writer.Declare("b", DType::kBF16, {3}).ok());
  ASSERT_TRUE(writer.Declare("a", DType::kF32, {2}).ok());
  const uint16_t b[3] = {0x3f80, 0xc000, 0x4040};
  const float a[2] = {1.0f, 2.0f};
  ASSERT_TRUE(writer.Write("b", b).ok());
  ASSERT_TRUE(writer.Write("a", a).ok());
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(writer.num_shards(), 1);

  std::string expected("\x90\0\0\0\0\0\0\0", 8);  // 144 = 140 header bytes + 4 spaces
  expected += R"({"__metadata__":{"format":"pt"},)"
              R"("a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]},)"
              R"("b":{"data_offsets":[8,14],"dtype":"BF16","shape":[3]}})";
  expected += "    ";
  expected += std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);  // 1.0f, 2.0f
  expected += std::string("\x80\x3f\x00\xc0\x40\x40", 6);          // bf16 1, -2, 3
  EXPECT_EQ(Read("model.safetensors"), expected);
  EXPECT_EQ(Files(), (std::vector<std::string>{"model.safetensors"}));
}

TEST_F(WriterTest, SingleFileRoundTrip) {
  ShardedSafetensorsWriter writer(dir_.string(), uint64_t{1} << 40);
  ASSERT_TRUE(writer.SetMetadata("producer", "test").ok());
  std::vector<float> w(6 * 5);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.5f;
  const std::vector<uint16_t> h = {f32_to_f16(1.0f), f32_to_f16(-0.5f), f32_to_f16(3.0f)};
  const int64_t ids[2] = {-7, int64_t{1} << 40};
  const int32_t small[1] = {42};
  ASSERT_TRUE(writer.Declare("h", DType::kF16, {3}).ok());
  ASSERT_TRUE(writer.Declare("small", DType::kI32, {}).ok());
  ASSERT_TRUE(writer.Declare("w", DType::kF32, {6, 5}).ok());
  ASSERT_TRUE(writer.Declare("ids", DType::kI64, {2}).ok());
  ASSERT_TRUE(writer.Declare("empty", DType::kBF16, {0, 3}).ok());
  ASSERT_TRUE(writer.Write("h", h.data()).ok());
  ASSERT_TRUE(writer.Write("small", small).ok());
  ASSERT_TRUE(writer.Write("w", w.data()).ok());
  ASSERT_TRUE(writer.Write("ids", ids).ok());
  ASSERT_TRUE(writer.Write("empty", nullptr).ok());
  ASSERT_TRUE(writer.Finish().ok());

  auto file = SafetensorsFile::Open((dir_ / "model.safetensors").string());
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->metadata().at("producer"), "test");
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_EQ((*file)->names(), (std::vector<std::string>{"empty", "h", "ids", "small", "w"}));
  for (const std::string& name : (*file)->names()) {
    const TensorView* v = (*file)->Find(name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v->data) % dtype_size(v->dtype), 0u) << name;
  }
  const TensorView* wv = (*file)->Find("w");
  EXPECT_EQ(wv->shape, (std::vector<int64_t>{6, 5}));
  EXPECT_EQ(std::memcmp(wv->data, w.data(), w.size() * 4), 0);
  const TensorView* hv = (*file)->Find("h");
  EXPECT_EQ(hv->dtype, DType::kF16);
  EXPECT_FLOAT_EQ(load_as_f32(hv->data, hv->dtype, 1), -0.5f);
  EXPECT_EQ(std::memcmp((*file)->Find("ids")->data, ids, sizeof ids), 0);
  EXPECT_EQ(*static_cast<const int32_t*>((*file)->Find("small")->data), 42);
  EXPECT_TRUE((*file)->Find("small")->shape.empty());
  EXPECT_EQ((*file)->Find("empty")->nbytes, 0u);
}

TEST_F(WriterTest, ShardedRoundTripWithIndex) {
  // Five 400-byte tensors and one 1200-byte tensor, shards of at most 1000 bytes:
  // [t0 t1] [t2 t3] [big] [t4]: a tensor larger than the limit gets a shard alone.
  ShardedSafetensorsWriter writer(dir_.string(), 1000);
  const std::vector<std::string> names = {"t0", "t1", "t2", "t3", "big", "t4"};
  for (const std::string& n : names) {
    ASSERT_TRUE(writer.Declare(n, DType::kF32, {n == "big" ? 300 : 100}).ok());
  }
  for (size_t k = 0; k < names.size(); ++k) {
    std::vector<float> v(names[k] == "big" ? 300 : 100);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(k * 1000 + i);
    ASSERT_TRUE(writer.Write(names[k], v.data()).ok());
  }
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(writer.num_shards(), 4);
  EXPECT_EQ(Files(), (std::vector<std::string>{
                         "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                         "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
                         "model.safetensors.index.json"}));
  const auto index = nlohmann::json::parse(Read("model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 5 * 400 + 1200);
  EXPECT_EQ(index["weight_map"]["t1"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t2"], "model-00002-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["big"], "model-00003-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t4"], "model-00004-of-00004.safetensors");

  auto ckpt = Checkpoint::Open(dir_.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ((*ckpt)->names().size(), names.size());
  EXPECT_EQ((*ckpt)->shard_paths().size(), 4u);
  EXPECT_EQ((*ckpt)->total_bytes(), 5u * 400 + 1200);
  for (size_t k = 0; k < names.size(); ++k) {
    const int64_t n = names[k] == "big" ? 300 : 100;
    auto v = (*ckpt)->Get(names[k], {n});
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    const float* f = static_cast<const float*>(v->data);
    EXPECT_EQ(f[0], static_cast<float>(k * 1000));
    EXPECT_EQ(f[n - 1], static_cast<float>(k * 1000 + n - 1));
  }
}

TEST_F(WriterTest, FillCallbackStreamsInChunks) {
  // 1.5M floats = 6 MiB: more than one 4 MiB chunk.
  const int64_t n = 1'500'000;
  ShardedSafetensorsWriter writer(dir_.string(), uint64_t{1} << 30);
  ASSERT_TRUE(writer.Declare("x", DType::kF32, {n}).ok());
  std::vector<uint64_t> offsets;
  ASSERT_TRUE(writer
                  .Write("x",
                         [&](uint64_t offset, std::span<std::byte> chunk) {
                           offsets.push_back(offset);
                           EXPECT_EQ(offset % 4, 0u);
                           EXPECT_EQ(chunk.size() % 4, 0u);
                           for (size_t i = 0; i < chunk.size() / 4; ++i) {
                             const float v = static_cast<float>(offset / 4 + i);
                             std::memcpy(chunk.data() + 4 * i, &v, 4);
                           }
                         })
                  .ok());
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(offsets, (std::vector<uint64_t>{0, uint64_t{4} << 20}));
  auto ckpt = Checkpoint::Open(dir_.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  auto x = (*ckpt)->Get("x", {n});
  ASSERT_TRUE(x.ok());
  const float* f = static_cast<const float*>(x->data);
  for (int64_t i : {int64_t{0}, int64_t{1048575}, int64_t{1048576}, n - 1}) {
    EXPECT_EQ(f[i], static_cast<float>(i));
  }
}

TEST_F(WriterTest, EmptyCheckpoint) {
  ShardedSafetensorsWriter writer(dir_.string(), 100);
  ASSERT_TRUE(writer.Finish().ok());
  auto ckpt = Checkpoint::Open(dir_.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_TRUE((*ckpt)->names().empty());
}

TEST_F(WriterTest, RemovesTheOtherLayoutsEntryPoint) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "model.safetensors.index.json") << "{}";
  {
    ShardedSafetensorsWriter writer(dir_.string(), 100);
    ASSERT_TRUE(writer.Declare("a", DType::kF32, {2}).ok());
    const float a[2] = {1, 2};
    ASSERT_TRUE(writer.Write("a", a).ok());
    ASSERT_TRUE(writer.Finish().ok());
  }
  EXPECT_EQ(Files(), (std::vector<std::string>{"model.safetensors"}));
  {
    ShardedSafetensorsWriter writer(dir_.string(), 8);
    ASSERT_TRUE(writer.Declare("a", DType::kF32, {2}).ok());
    ASSERT_TRUE(writer.Declare("b", DType::kF32, {2}).ok());
    const float a[2] = {1, 2};
    ASSERT_TRUE(writer.Write("a", a).ok());
    ASSERT_TRUE(writer.Write("b", a).ok());
    ASSERT_TRUE(writer.Finish().ok());
  }
  EXPECT_EQ(Files(), (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                               "model-00002-of-00002.safetensors",
                                               "model.safetensors.index.json"}));
  EXPECT_TRUE(Checkpoint::Open(dir_.string()).ok());
}

TEST_F(WriterTest, Misuse) {
  ShardedSafetensorsWriter writer(dir_.string(), 100);
  EXPECT_EQ(writer.Declare("__metadata__", DType::kF32, {1}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writer.Declare("neg", DType::kF32, {2, -1}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writer.Declare("huge", DType::kF32, {int64_t{1} << 62}).code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(writer.Declare("a", DType::kF32, {1}).ok());
  EXPECT_EQ(writer.Declare("a", DType::kF32, {1}).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(writer.Declare("b", DType::kF32, {1}).ok());
  const float one = 1;
  const Status wrong = writer.Write("b", &one);
  EXPECT_EQ(wrong.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.message().find("next declared tensor is a"), std::string::npos)
      << wrong.message();
  EXPECT_EQ(writer.Declare("c", DType::kF32, {1}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writer.SetMetadata("k", "v").code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(writer.Write("a", &one).ok());
  const Status unfinished = writer.Finish();
  EXPECT_EQ(unfinished.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unfinished.message().find("tensor b was declared but never written"),
            std::string::npos);
  ASSERT_TRUE(writer.Write("b", &one).ok());
  EXPECT_EQ(writer.Write("b", &one).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(writer.Finish().code(), StatusCode::kInvalidArgument);
}

TEST_F(WriterTest, AbandonedWriterLeavesNoFiles) {
  {
    ShardedSafetensorsWriter writer(dir_.string(), 4);
    ASSERT_TRUE(writer.Declare("a", DType::kF32, {1}).ok());
    ASSERT_TRUE(writer.Declare("b", DType::kF32, {1}).ok());
    const float one = 1;
    ASSERT_TRUE(writer.Write("a", &one).ok());
  }
  EXPECT_TRUE(Files().empty());
  EXPECT_EQ(Checkpoint::Open(dir_.string()).status().code(), StatusCode::kNotFound);
}

TEST_F(WriterTest, InvalidUtf8NameIsRejected) {
  ShardedSafetensorsWriter writer(dir_.string(), 100);
  ASSERT_TRUE(writer.Declare("bad\xff", DType::kF32, {1}).ok());
  const float one = 1;
  EXPECT_EQ(writer.Write("bad\xff", &one).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sy
