// MappedFile: a whole file mapped read-only into memory, unmapped when the object dies.
// Owns the mapping; immutable after Open, so any number of threads may read it concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engine/core/status.h"

namespace sy {

class MappedFile {
 public:
  // Maps `path` read-only. NotFound if it does not exist, InvalidArgument if it is not a
  // regular file or cannot be opened, Internal if mmap fails. An empty file maps to no bytes.
  static StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view bytes() const { return {reinterpret_cast<const char*>(data_), size_}; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const std::byte* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const std::byte* data_;  // nullptr when size_ == 0
  size_t size_;
};

}  // namespace sy
