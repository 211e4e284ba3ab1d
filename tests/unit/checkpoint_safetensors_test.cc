// ParseSafetensorsHeader, SafetensorsFile and MappedFile on hand-built bytes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/core/mapped_file.h"
#include "engine/model/safetensors.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

// A safetensors file: little-endian header length, header text, data.
std::string FileBytes(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

Status ParseStatus(const std::string& header, const std::string& data) {
  return ParseSafetensorsHeader(FileBytes(header, data), "t.safetensors").status();
}

void ExpectError(const Status& s, StatusCode code, const std::string& fragment) {
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_NE(s.message().find(fragment), std::string::npos) << s.ToString();
}

const char kTwoTensors[] = R"({"__metadata__":{"format":"pt"},)"
                           R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                           R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}})";

TEST(SafetensorsHeader, ParsesEntriesAndMetadata) {
  auto header = ParseSafetensorsHeader(FileBytes(kTwoTensors, std::string(22, '\0')));
  ASSERT_TRUE(header.ok()) << header.status().ToString();
  EXPECT_EQ(header->data_start, 8 + std::strlen(kTwoTensors));
  ASSERT_EQ(header->tensors.size(), 2u);
  const SafetensorsEntry& w = header->tensors.at("w");
  EXPECT_EQ(w.dtype, DType::kF32);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(w.begin, 0u);
  EXPECT_EQ(w.end, 16u);
  const SafetensorsEntry& b = header->tensors.at("b");
  EXPECT_EQ(b.dtype, DType::kBF16);
  EXPECT_EQ(b.begin, 16u);
  EXPECT_EQ(header->metadata.at("format"), "pt");
}

TEST(SafetensorsHeader, AcceptsScalarsEmptyTensorsAndPadding) {
  const std::string header = R"({"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
                             R"("e":{"dtype":"I32","shape":[0,5],"data_offsets":[8,8]}})"
                             "     ";
  auto parsed = ParseSafetensorsHeader(FileBytes(header, std::string(8, '\0')));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->tensors.at("s").dtype, DType::kI64);
  EXPECT_TRUE(parsed->tensors.at("s").shape.empty());
  EXPECT_EQ(parsed->tensors.at("e").shape, (std::vector<int64_t>{0, 5}));
}

TEST(SafetensorsHeader, TruncatedFiles) {
  ExpectError(ParseSafetensorsHeader(std::string("\x05\0\0", 3), "t.safetensors").status(),
              StatusCode::kDataLoss, "truncated safetensors file t.safetensors");
  std::string bytes = FileBytes(kTwoTensors, std::string(22, '\0'));
  ExpectError(ParseSafetensorsHeader(bytes.substr(0, 20), "t.safetensors").status(),
              StatusCode::kDataLoss, "truncated safetensors file t.safetensors: header length");
  ExpectError(ParseSafetensorsHeader(bytes.substr(0, bytes.size() - 1), "t.safetensors").status(),
              StatusCode::kDataLoss, "truncated safetensors file t.safetensors: tensor 'b'");
}

TEST(SafetensorsHeader, RejectsHugeHeaderLength) {
  std::string bytes(8, '\0');
  bytes[4] = 1;  // 2^32 bytes
  ExpectError(ParseSafetensorsHeader(bytes, "t.safetensors").status(), StatusCode::kDataLoss,
              "corrupt safetensors file t.safetensors: header length 4294967296 exceeds");
  bytes.assign(8, '\xff');
  ExpectError(ParseSafetensorsHeader(bytes, "t.safetensors").status(), StatusCode::kDataLoss,
              "exceeds the limit");
}

TEST(SafetensorsHeader, RejectsMalformedJson) {
  ExpectError(ParseStatus("", ""), StatusCode::kDataLoss, "does not start with '{'");
  ExpectError(ParseStatus("[1,2]", ""), StatusCode::kDataLoss, "does not start with '{'");
  ExpectError(ParseStatus("{\"a\":", ""), StatusCode::kDataLoss, "not valid JSON");
  ExpectError(ParseStatus("{} trailing", ""), StatusCode::kDataLoss, "not valid JSON");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                          std::string(4, '\0')),
              StatusCode::kDataLoss, "duplicate tensor names");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[[[1]]],"data_offsets":[0,4]}})", ""),
              StatusCode::kDataLoss, "nests deeper");
}

TEST(SafetensorsHeader, RejectsBadEntries) {
  const std::string data(64, '\0');
  ExpectError(ParseStatus(R"({"a":5})", data), StatusCode::kDataLoss,
              "tensor 'a' is not an object");
  ExpectError(ParseStatus(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", data),
              StatusCode::kDataLoss, "tensor 'a' has no dtype");
  ExpectError(ParseStatus(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", data),
              StatusCode::kDataLoss, "unknown dtype 'Q4'");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", data),
              StatusCode::kDataLoss, "no shape of non-negative integers");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", data),
              StatusCode::kDataLoss, "no shape");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", data),
              StatusCode::kDataLoss, "no shape");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],)"
                          R"("data_offsets":[0,4]}})",
                          data),
              StatusCode::kDataLoss, "element count overflows");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[4611686018427387904],)"
                          R"("data_offsets":[0,4]}})",
                          data),
              StatusCode::kDataLoss, "byte size overflows");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", data),
              StatusCode::kDataLoss, "no data_offsets");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", data),
              StatusCode::kDataLoss, "begin > end");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", data),
              StatusCode::kDataLoss, "has 4 bytes of data but its dtype and shape need 8");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[64,68]}})", data),
              StatusCode::kDataLoss, "truncated safetensors file");
  ExpectError(ParseStatus(R"({"__metadata__":{"k":1}})", data), StatusCode::kDataLoss,
              "__metadata__ value of 'k' is not a string");
  ExpectError(ParseStatus(R"({"__metadata__":[]})", data), StatusCode::kDataLoss,
              "__metadata__ is not an object");
}

TEST(SafetensorsHeader, UnsupportedDTypesAreUnimplemented) {
  const std::string data(64, '\0');
  for (const char* dtype : {"F8_E5M2", "I8", "U8", "BOOL", "F64"}) {
    const std::string header = std::string(R"({"model.q":{"dtype":")") + dtype +
                               R"(","shape":[4],"data_offsets":[0,)" +
                               std::to_string(std::string_view(dtype) == "F64" ? 32 : 4) + "]}}";
    ExpectError(ParseStatus(header, data), StatusCode::kUnimplemented,
                std::string("tensor 'model.q' has dtype ") + dtype);
  }
  // A corrupt entry elsewhere wins over an unsupported dtype.
  ExpectError(ParseStatus(R"({"a":{"dtype":"I8","shape":[4],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[4],"data_offsets":[0,4]}})",
                          data),
              StatusCode::kDataLoss, "tensor 'b'");
}

TEST(SafetensorsHeader, DTypeNames) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kI32, DType::kI64, DType::kE4M3}) {
    EXPECT_EQ(ParseSafetensorsDType(SafetensorsDTypeName(t)), t);
  }
  EXPECT_FALSE(ParseSafetensorsDType("U8").has_value());
  EXPECT_FALSE(ParseSafetensorsDType("nonsense").has_value());
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("sy_st_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name, const std::string& bytes) const {
    const std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(SafetensorsFile, ViewsPointIntoTheMapping) {
  TempDir dir;
  std::string data(22, '\0');
  const float w[4] = {1.5f, -2.0f, 3.25f, 0.0f};
  std::memcpy(data.data(), w, sizeof w);
  const uint16_t b[3] = {0x3f80, 0xc000, 0x0000};
  std::memcpy(data.data() + 16, b, sizeof b);
  const std::string path = dir.File("m.safetensors", FileBytes(kTwoTensors, data));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->names(), (std::vector<std::string>{"b", "w"}));
  EXPECT_EQ((*file)->num_tensors(), 2u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_EQ((*file)->path(), path);
  auto wv = (*file)->Get("w");
  ASSERT_TRUE(wv.ok());
  EXPECT_EQ(wv->name, "w");
  EXPECT_EQ(wv->numel(), 4);
  EXPECT_EQ(wv->nbytes, 16u);
  EXPECT_EQ(std::memcmp(wv->data, w, sizeof w), 0);
  const TensorView* bv = (*file)->Find("b");
  ASSERT_NE(bv, nullptr);
  EXPECT_FLOAT_EQ(load_as_f32(bv->data, bv->dtype, 0), 1.0f);
  EXPECT_FLOAT_EQ(load_as_f32(bv->data, bv->dtype, 1), -2.0f);
  EXPECT_TRUE((*file)->Has("w"));
  EXPECT_FALSE((*file)->Has("x"));
  ExpectError((*file)->Get("x").status(), StatusCode::kNotFound, "missing tensor x in " + path);
}

TEST(SafetensorsFile, OpenErrors) {
  TempDir dir;
  ExpectError(SafetensorsFile::Open((dir.path() / "none.safetensors").string()).status(),
              StatusCode::kNotFound, "none.safetensors");
  const std::string empty = dir.File("empty.safetensors", "");
  ExpectError(SafetensorsFile::Open(empty).status(), StatusCode::kDataLoss,
              "truncated safetensors file " + empty);
}

TEST(MappedFile, MapsWholeFile) {
  TempDir dir;
  const std::string path = dir.File("f.bin", std::string("hello\0world", 11));
  auto file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->size(), 11u);
  EXPECT_EQ((*file)->bytes(), std::string_view("hello\0world", 11));
  EXPECT_EQ((*file)->path(), path);

  auto empty = MappedFile::Open(dir.File("e.bin", ""));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ((*empty)->size(), 0u);
  EXPECT_TRUE((*empty)->bytes().empty());

  ExpectError(MappedFile::Open((dir.path() / "missing").string()).status(), StatusCode::kNotFound,
              "file not found");
  ExpectError(MappedFile::Open(dir.path().string()).status(), StatusCode::kInvalidArgument,
              "not a regular file");
}

}  // namespace
}  // namespace sy
