// Conversions between the switchyard.v1 protobuf messages and the engine's request types, and
// from our Status to gRPC status codes. Pure functions; thread-safe.
#pragma once

#include <grpcpp/support/status.h>

#include <cstdint>
#include <string>

#include "engine/core/status.h"
#include "engine/sched/request.h"
#include "engine/tokenizer/tokenizer.h"
#include "switchyard/v1/switchyard.pb.h"

namespace sy {

// InvalidArgument/OutOfRange -> INVALID_ARGUMENT, NotFound -> NOT_FOUND, ResourceExhausted ->
// RESOURCE_EXHAUSTED, Unavailable -> UNAVAILABLE, anything else -> INTERNAL; the message is kept.
grpc::Status ToGrpcStatus(const Status& status);

// Builds the engine request for `request`: text is tokenized with the model's special tokens
// (e.g. BOS), token ids are checked against `vocab_size`; unset fields take the proto's
// documented defaults; n and the stop lists are held to engine/sched/request_limits.h, as on
// HTTP. InvalidArgument names the offending field.
StatusOr<RequestSpec> ToRequestSpec(const switchyard::v1::GenerateRequest& request,
                                    const Tokenizer& tokenizer, int64_t vocab_size);

// One streamed response for `update` of request `request_id`; logprobs are copied when the
// request asked for them.
switchyard::v1::GenerateResponse ToResponse(const RequestUpdate& update,
                                            const std::string& request_id, bool with_logprobs);

}  // namespace sy
