// Status and StatusOr: how recoverable failures travel between layers (no exceptions across
// layers). A Status is a code plus a message meant for the user; Ok carries nothing.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace sy {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // the caller's input is wrong (bad flag, bad request, mis-shaped tensor)
  kNotFound,           // a file, tensor or model that should exist does not
  kDataLoss,           // a file exists but is corrupt or truncated
  kUnimplemented,      // valid input we do not support (e.g. an unknown architecture)
  kOutOfRange,         // a size beyond a limit (context length, KV blocks)
  kResourceExhausted,  // out of memory, queue full
  kInternal,           // a bug: an invariant broke
  kUnavailable,        // not serving now (starting up, shutting down, engine stopped)
  kDeadlineExceeded,   // a request's deadline passed before it finished
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, m}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, m}; }
  static Status DataLoss(std::string m) { return {StatusCode::kDataLoss, m}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, m}; }
  static Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, m}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, m}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, m}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, m}; }
  static Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, m}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: message", or "OK".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

const char* StatusCodeName(StatusCode code);

// Either a value or a non-OK Status.
template <typename T>
class StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design
  StatusOr(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace sy

#define SY_CONCAT_INNER(a, b) a##b
#define SY_CONCAT(a, b) SY_CONCAT_INNER(a, b)

#define SY_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::sy::Status sy_status_ = (expr);        \
    if (!sy_status_.ok()) return sy_status_; \
  } while (0)

#define SY_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

#define SY_ASSIGN_OR_RETURN(lhs, expr) \
  SY_ASSIGN_OR_RETURN_IMPL(SY_CONCAT(sy_statusor_, __LINE__), lhs, expr)
