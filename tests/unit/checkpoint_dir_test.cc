// Checkpoint::Open over model directories: single file, sharded index, and every failure.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/model/checkpoint.h"
#include "engine/model/safetensors_writer.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

class CheckpointDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sy_ckpt_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes tensors "a" [2, 3] and "b" [4] (f32) with the given shard limit.
  void WriteModel(uint64_t max_shard_bytes) {
    ShardedSafetensorsWriter writer(dir_.string(), max_shard_bytes);
    ASSERT_TRUE(writer.Declare("a", DType::kF32, {2, 3}).ok());
    ASSERT_TRUE(writer.Declare("b", DType::kF32, {4}).ok());
    const float a[6] = {1, 2, 3, 4, 5, 6};
    const float b[4] = {7, 8, 9, 10};
    ASSERT_TRUE(writer.Write("a", a).ok());
    ASSERT_TRUE(writer.Write("b", b).ok());
    ASSERT_TRUE(writer.Finish().ok());
  }
  void WriteText(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::string Dir() const { return dir_.string(); }

  fs::path dir_;
};

TEST_F(CheckpointDirTest, SingleFile) {
  WriteModel(1 << 20);
  auto ckpt = Checkpoint::Open(Dir());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ((*ckpt)->dir(), Dir());
  EXPECT_EQ((*ckpt)->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE((*ckpt)->Has("a"));
  EXPECT_FALSE((*ckpt)->Has("c"));
  auto a = (*ckpt)->Get("a", {2, 3});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(static_cast<const float*>(a->data)[5], 6.0f);
  const std::vector<int64_t> b_shape = {4};
  auto b = (*ckpt)->Get("b", b_shape);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(static_cast<const float*>(b->data)[0], 7.0f);
}

TEST_F(CheckpointDirTest, GetErrors) {
  WriteModel(1 << 20);
  auto ckpt = Checkpoint::Open(Dir());
  ASSERT_TRUE(ckpt.ok());
  const Status missing = (*ckpt)->Get("model.norm.weight", {4}).status();
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "missing tensor model.norm.weight in " + Dir());
  const Status shape = (*ckpt)->Get("a", {3, 2}).status();
  EXPECT_EQ(shape.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(shape.message(), "tensor a has shape [2, 3] but the config implies [3, 2]");
  const Status rank = (*ckpt)->Get("b", {4, 1}).status();
  EXPECT_EQ(rank.message(), "tensor b has shape [4] but the config implies [4, 1]");
}

TEST_F(CheckpointDirTest, Sharded) {
  WriteModel(8);
  ASSERT_TRUE(fs::exists(dir_ / "model.safetensors.index.json"));
  auto ckpt = Checkpoint::Open(Dir());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ((*ckpt)->shard_paths().size(), 2u);
  EXPECT_EQ((*ckpt)->names(), (std::vector<std::string>{"a", "b"}));
  auto b = (*ckpt)->Get("b", {4});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(static_cast<const float*>(b->data)[3], 10.0f);
}

TEST_F(CheckpointDirTest, IndexWinsOverSingleFile) {
  WriteModel(8);
  WriteText("model.safetensors", "not even a safetensors file");
  EXPECT_TRUE(Checkpoint::Open(Dir()).ok());
}

TEST_F(CheckpointDirTest, MissingDirectoryAndFiles) {
  const Status no_dir = Checkpoint::Open(Dir() + "/nope").status();
  EXPECT_EQ(no_dir.code(), StatusCode::kNotFound);
  EXPECT_EQ(no_dir.message(), "model directory not found: " + Dir() + "/nope");
  const Status empty = Checkpoint::Open(Dir()).status();
  EXPECT_EQ(empty.code(), StatusCode::kNotFound);
  EXPECT_EQ(empty.message(), "no model.safetensors or model.safetensors.index.json in " + Dir());
}

TEST_F(CheckpointDirTest, MissingShard) {
  WriteModel(8);
  fs::remove(dir_ / "model-00002-of-00002.safetensors");
  const Status s = Checkpoint::Open(Dir()).status();
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find("model-00002-of-00002.safetensors"), std::string::npos) << s.message();
}

TEST_F(CheckpointDirTest, TensorMissingFromItsShard) {
  WriteModel(8);
  WriteText("model.safetensors.index.json",
            R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                               "b": "model-00001-of-00002.safetensors"}})");
  const Status s = Checkpoint::Open(Dir()).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("tensor b is listed in"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("missing from shard model-00001-of-00002.safetensors"),
            std::string::npos);
}

TEST_F(CheckpointDirTest, CorruptIndex) {
  WriteModel(8);
  for (const char* text : {"{not json", "[]", R"({"metadata": {}})", R"({"weight_map": []})",
                           R"({"weight_map": {"a": 3}})",
                           R"({"weight_map": {"a": "../model-00001-of-00002.safetensors"}})",
                           R"({"weight_map": {"a": "/etc/passwd"}})"}) {
    WriteText("model.safetensors.index.json", text);
    const Status s = Checkpoint::Open(Dir()).status();
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << text;
    EXPECT_NE(s.message().find("corrupt checkpoint index"), std::string::npos) << s.message();
  }
}

TEST_F(CheckpointDirTest, CorruptShardIsDataLoss) {
  WriteModel(1 << 20);
  fs::resize_file(dir_ / "model.safetensors", fs::file_size(dir_ / "model.safetensors") - 4);
  const Status s = Checkpoint::Open(Dir()).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("truncated safetensors file"), std::string::npos) << s.message();
}

TEST(ShapeToString, Formats) {
  EXPECT_EQ(ShapeToString(std::vector<int64_t>{}), "[]");
  EXPECT_EQ(ShapeToString(std::vector<int64_t>{7}), "[7]");
  EXPECT_EQ(ShapeToString(std::vector<int64_t>{2, 3, 4}), "[2, 3, 4]");
}

}  // namespace
}  // namespace sy
