#include "engine/model/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>

#include "engine/model/safetensors.h"

namespace sy {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr size_t kChunkBytes = size_t{4} << 20;
constexpr const char* kPartialSuffix = ".partial";

Status IoError(const std::string& what, const std::string& path, int err) {
  const std::string message = what + " " + path + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Status::ResourceExhausted(message);
  return Status::Internal(message);
}

std::string ShardName(size_t index, size_t count) {
  if (count == 1) return "model.safetensors";
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return name;
}

// Serialises a header, padded with spaces so that the data region starts at a multiple of 8.
std::string PaddedHeader(const json& header) {
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// Writes all of `data` at `file_offset`, retrying short writes.
Status WriteAt(int fd, const std::string& path, uint64_t file_offset, const std::byte* data,
               size_t nbytes) {
  while (nbytes > 0) {
    const ssize_t n = ::pwrite(fd, data, nbytes, static_cast<off_t>(file_offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot write", path, errno);
    }
    data += n;
    nbytes -= static_cast<size_t>(n);
    file_offset += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

// Writes `text` to `path` through a temporary file, so `path` appears only when complete.
Status WriteSmallFile(const std::string& path, const std::string& text) {
  const std::string partial = path + kPartialSuffix;
  const int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("cannot create", partial, errno);
  Status status =
      WriteAt(fd, partial, 0, reinterpret_cast<const std::byte*>(text.data()), text.size());
  if (::close(fd) != 0 && status.ok()) status = IoError("cannot close", partial, errno);
  if (status.ok() && std::rename(partial.c_str(), path.c_str()) != 0) {
    status = IoError("cannot rename", partial, errno);
  }
  if (!status.ok()) std::remove(partial.c_str());
  return status;
}

}  // namespace

ShardedSafetensorsWriter::ShardedSafetensorsWriter(std::string dir, uint64_t max_shard_bytes)
    : dir_(std::move(dir)), max_shard_bytes_(max_shard_bytes) {
  metadata_["format"] = "pt";
}

ShardedSafetensorsWriter::~ShardedSafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (finished_) return;
  std::error_code ec;
  for (const std::string& path : created_) fs::remove(path, ec);
}

Status ShardedSafetensorsWriter::Declare(std::string name, DType dtype,
                                         std::vector<int64_t> shape) {
  if (planned_) return Status::InvalidArgument("cannot declare " + name + " after a Write");
  if (name == "__metadata__")
    return Status::InvalidArgument("tensor name __metadata__ is reserved");
  if (names_.count(name) != 0) return Status::InvalidArgument("tensor " + name + " declared twice");
  uint64_t nbytes = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) return Status::InvalidArgument("tensor " + name + " has a negative dimension");
    if (__builtin_mul_overflow(nbytes, static_cast<uint64_t>(d), &nbytes) ||
        nbytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Status::InvalidArgument("tensor " + name + " is too large");
    }
  }
  names_.insert(name);
  tensors_.push_back(Tensor{std::move(name), dtype, std::move(shape), nbytes, 0, 0});
  return Status::Ok();
}

Status ShardedSafetensorsWriter::SetMetadata(std::string key, std::string value) {
  if (planned_) return Status::InvalidArgument("cannot set metadata " + key + " after a Write");
  metadata_[std::move(key)] = std::move(value);
  return Status::Ok();
}

Status ShardedSafetensorsWriter::Plan() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return Status::InvalidArgument("cannot create directory " + dir_ + ": " + ec.message());
  // Cut shards in declaration order.
  std::vector<std::vector<size_t>> members(1);
  uint64_t shard_bytes = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (!members.back().empty() && shard_bytes + tensors_[i].nbytes > max_shard_bytes_) {
      members.emplace_back();
      shard_bytes = 0;
    }
    members.back().push_back(i);
    shard_bytes += tensors_[i].nbytes;
  }
  shards_.resize(members.size());
  for (size_t s = 0; s < members.size(); ++s) {
    std::vector<size_t> layout = members[s];
    std::stable_sort(layout.begin(), layout.end(), [&](size_t a, size_t b) {
      return dtype_size(tensors_[a].dtype) > dtype_size(tensors_[b].dtype);
    });
    json header = json::object();
    header["__metadata__"] = metadata_;
    uint64_t offset = 0;
    for (size_t i : layout) {
      Tensor& t = tensors_[i];
      t.shard = s;
      t.offset = offset;
      header[t.name] = {{"dtype", SafetensorsDTypeName(t.dtype)},
                        {"shape", t.shape},
                        {"data_offsets", {offset, offset + t.nbytes}}};
      offset += t.nbytes;
    }
    shards_[s].path = (fs::path(dir_) / ShardName(s, members.size())).string();
    try {
      shards_[s].header = PaddedHeader(header);
    } catch (const json::exception& e) {
      return Status::InvalidArgument(std::string("tensor names and metadata must be UTF-8: ") +
                                     e.what());
    }
    shards_[s].last_tensor = members[s].empty() ? 0 : members[s].back();
  }
  planned_ = true;
  return Status::Ok();
}

std::string ShardedSafetensorsWriter::PartialPath(size_t shard) const {
  return shards_[shard].path + kPartialSuffix;
}

Status ShardedSafetensorsWriter::OpenShard(size_t shard) {
  const std::string partial = PartialPath(shard);
  fd_ = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return IoError("cannot create", partial, errno);
  created_.push_back(partial);
  open_shard_ = shard;
  const std::string& header = shards_[shard].header;
  std::byte prefix[8];
  for (int i = 0; i < 8; ++i) {
    prefix[i] = static_cast<std::byte>((uint64_t{header.size()} >> (8 * i)) & 0xff);
  }
  SY_RETURN_IF_ERROR(WriteAt(fd_, partial, 0, prefix, sizeof prefix));
  return WriteAt(fd_, partial, 8, reinterpret_cast<const std::byte*>(header.data()), header.size());
}

Status ShardedSafetensorsWriter::CloseShard(size_t shard) {
  const std::string partial = PartialPath(shard);
  if (fd_ < 0) SY_RETURN_IF_ERROR(OpenShard(shard));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return IoError("cannot close", partial, errno);
  if (std::rename(partial.c_str(), shards_[shard].path.c_str()) != 0) {
    return IoError("cannot rename", partial, errno);
  }
  created_.push_back(shards_[shard].path);
  shards_[shard].done = true;
  return Status::Ok();
}

Status ShardedSafetensorsWriter::BeginTensor(std::string_view name, const Tensor** tensor) {
  if (finished_) return Status::InvalidArgument("Write after Finish");
  if (!planned_) SY_RETURN_IF_ERROR(Plan());
  if (next_ >= tensors_.size()) {
    return Status::InvalidArgument("Write of " + std::string(name) +
                                   " but every declared tensor is written");
  }
  const Tensor& t = tensors_[next_];
  if (t.name != name) {
    return Status::InvalidArgument("Write of " + std::string(name) + " but the next declared " +
                                   "tensor is " + t.name);
  }
  if (fd_ < 0) SY_RETURN_IF_ERROR(OpenShard(t.shard));
  *tensor = &t;
  return Status::Ok();
}

Status ShardedSafetensorsWriter::EndTensor() {
  const Tensor& t = tensors_[next_];
  ++next_;
  if (shards_[t.shard].last_tensor == next_ - 1) return CloseShard(t.shard);
  return Status::Ok();
}

Status ShardedSafetensorsWriter::Write(std::string_view name, const void* data) {
  const Tensor* t = nullptr;
  SY_RETURN_IF_ERROR(BeginTensor(name, &t));
  const uint64_t base = 8 + shards_[t->shard].header.size() + t->offset;
  SY_RETURN_IF_ERROR(
      WriteAt(fd_, PartialPath(t->shard), base, static_cast<const std::byte*>(data), t->nbytes));
  return EndTensor();
}

Status ShardedSafetensorsWriter::Write(std::string_view name, const FillFn& fill) {
  const Tensor* t = nullptr;
  SY_RETURN_IF_ERROR(BeginTensor(name, &t));
  const uint64_t base = 8 + shards_[t->shard].header.size() + t->offset;
  std::vector<std::byte> buffer(std::min<uint64_t>(t->nbytes, kChunkBytes));
  for (uint64_t done = 0; done < t->nbytes;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(t->nbytes - done, buffer.size()));
    fill(done, std::span<std::byte>(buffer.data(), n));
    SY_RETURN_IF_ERROR(WriteAt(fd_, PartialPath(t->shard), base + done, buffer.data(), n));
    done += n;
  }
  return EndTensor();
}

Status ShardedSafetensorsWriter::Finish() {
  if (finished_) return Status::InvalidArgument("Finish called twice");
  if (!planned_) SY_RETURN_IF_ERROR(Plan());
  if (next_ < tensors_.size()) {
    return Status::InvalidArgument("tensor " + tensors_[next_].name +
                                   " was declared but never written");
  }
  // Only a shard without tensors (an empty checkpoint) can still be pending.
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (!shards_[s].done) SY_RETURN_IF_ERROR(CloseShard(s));
  }
  const fs::path index_path = fs::path(dir_) / "model.safetensors.index.json";
  std::error_code ec;
  if (shards_.size() == 1) {
    fs::remove(index_path, ec);
  } else {
    fs::remove(fs::path(dir_) / "model.safetensors", ec);
    json weight_map = json::object();
    for (const Tensor& t : tensors_) {
      weight_map[t.name] = fs::path(shards_[t.shard].path).filename().string();
    }
    const uint64_t total =
        std::accumulate(tensors_.begin(), tensors_.end(), uint64_t{0},
                        [](uint64_t sum, const Tensor& t) { return sum + t.nbytes; });
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    SY_RETURN_IF_ERROR(WriteSmallFile(index_path.string(), index.dump(2) + "\n"));
  }
  finished_ = true;
  return Status::Ok();
}

}  // namespace sy
