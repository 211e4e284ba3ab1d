#include "engine/backend/backend.h"

#include <utility>

#include "engine/core/check.h"

namespace sy {

Tensor Tensor::Rows(int64_t begin, int64_t n) const {
  SY_CHECK(begin >= 0 && n >= 0 && begin + n <= rows);
  Tensor t = *this;
  t.data = static_cast<char*>(data) + static_cast<size_t>(begin) * row_bytes();
  t.rows = n;
  return t;
}

Tensor Tensor::Reshaped(int64_t new_rows, int64_t new_cols) const {
  SY_CHECK(new_rows * new_cols == rows * cols && dtype != DType::kI8 && dtype != DType::kF8);
  Tensor t = *this;
  t.rows = new_rows;
  t.cols = new_cols;
  return t;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() { Release(); }

void DeviceBuffer::Release() {
  if (owner_ != nullptr && data_ != nullptr) owner_->Free(data_);
  owner_ = nullptr;
  data_ = nullptr;
  size_ = 0;
}

}  // namespace sy
