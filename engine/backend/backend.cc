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
  SY_CHECK(new_rows * new_cols == rows * cols && dtype != DType::kI8 && !is_int4(dtype) &&
           dtype != DType::kF8 && dtype != DType::kF8Row);
  Tensor t = *this;
  t.rows = new_rows;
  t.cols = new_cols;
  return t;
}

void CheckRouteShapes(const Tensor& logits, const RouterParams& params,
                      const Tensor* correction_bias, const Tensor& ids, const Tensor& weights) {
  const int64_t experts = logits.cols;
  SY_CHECK(ids.rows == logits.rows && ids.cols == params.k && weights.numel() == ids.numel());
  SY_CHECK(params.k >= 1 && params.k <= experts);
  SY_CHECK(params.n_group >= 1 && params.n_group <= 32 && experts % params.n_group == 0);
  SY_CHECK(params.topk_group >= 1 && params.topk_group <= params.n_group);
  SY_CHECK(params.n_group == 1 || params.group_scoring == cpu::GroupScoring::kMax ||
           experts / params.n_group >= 2);
  SY_CHECK(correction_bias == nullptr || correction_bias->numel() == experts);
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
