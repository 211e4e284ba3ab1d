#include "server/grpc/grpc_convert.h"

#include <string>
#include <utility>
#include <vector>

#include "engine/sched/request_limits.h"

namespace sy {

namespace pb = switchyard::v1;

grpc::Status ToGrpcStatus(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return grpc::Status::OK;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return {grpc::StatusCode::INVALID_ARGUMENT, status.message()};
    case StatusCode::kNotFound:
      return {grpc::StatusCode::NOT_FOUND, status.message()};
    case StatusCode::kResourceExhausted:
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, status.message()};
    case StatusCode::kUnavailable:
      return {grpc::StatusCode::UNAVAILABLE, status.message()};
    case StatusCode::kDeadlineExceeded:
      return {grpc::StatusCode::DEADLINE_EXCEEDED, status.message()};
    default:
      return {grpc::StatusCode::INTERNAL, status.message()};
  }
}

namespace {

Status FillPrompt(const pb::GenerateRequest& request, const Tokenizer& tokenizer,
                  int64_t vocab_size, std::vector<int32_t>* prompt) {
  switch (request.prompt_case()) {
    case pb::GenerateRequest::kText:
      if (request.text().empty()) return Status::InvalidArgument("text must not be empty");
      *prompt = tokenizer.Encode(request.text(), /*add_special_tokens=*/true);
      break;
    case pb::GenerateRequest::kTokenIds:
      prompt->assign(request.token_ids().ids().begin(), request.token_ids().ids().end());
      SY_RETURN_IF_ERROR(CheckTokenIds(*prompt, vocab_size, "token_ids"));
      break;
    default:
      return Status::InvalidArgument("prompt: one of text or token_ids is required");
  }
  if (prompt->empty()) return Status::InvalidArgument("the prompt has no tokens");
  return Status::Ok();
}

void FillSampling(const pb::SamplingParameters& s, SamplingParams* out) {
  if (s.has_temperature()) out->temperature = s.temperature();
  if (s.has_top_p()) out->top_p = s.top_p();
  if (s.has_top_k()) out->top_k = s.top_k();
  if (s.has_min_p()) out->min_p = s.min_p();
  if (s.has_repetition_penalty()) out->repetition_penalty = s.repetition_penalty();
  if (s.has_presence_penalty()) out->presence_penalty = s.presence_penalty();
  if (s.has_frequency_penalty()) out->frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) out->seed = s.seed();
}

}  // namespace

StatusOr<RequestSpec> ToRequestSpec(const pb::GenerateRequest& request, const Tokenizer& tokenizer,
                                    int64_t vocab_size) {
  RequestSpec spec;
  spec.arrival = Clock::now();
  SY_RETURN_IF_ERROR(FillPrompt(request, tokenizer, vocab_size, &spec.prompt));
  FillSampling(request.sampling(), &spec.sampling);
  if (request.has_logprobs()) {
    if (request.logprobs() < 0) return Status::InvalidArgument("logprobs must be >= 0");
    spec.sampling.logprobs = request.logprobs();
  }
  SY_RETURN_IF_ERROR(spec.sampling.Validate());

  const pb::StoppingCriteria& stop = request.stopping();
  if (stop.has_max_tokens()) {
    if (stop.max_tokens() < 1) return Status::InvalidArgument("max_tokens must be >= 1");
    spec.stop.max_tokens = stop.max_tokens();
  }
  if (stop.min_tokens() < 0) return Status::InvalidArgument("min_tokens must be >= 0");
  spec.stop.min_tokens = stop.min_tokens();
  spec.stop.stop_strings.assign(stop.stop().begin(), stop.stop().end());
  spec.stop.stop_token_ids.assign(stop.stop_token_ids().begin(), stop.stop_token_ids().end());
  spec.stop.ignore_eos = stop.ignore_eos();

  if (request.n() < 0) return Status::InvalidArgument("n must be >= 1");
  spec.n = request.n() == 0 ? 1 : request.n();
  spec.skip_special_tokens = !request.include_special_tokens();
  SY_RETURN_IF_ERROR(CheckRequestLimits(spec, vocab_size));
  return spec;
}

pb::GenerateResponse ToResponse(const RequestUpdate& update, const std::string& request_id,
                                bool with_logprobs) {
  pb::GenerateResponse response;
  response.set_request_id(request_id);
  for (const CompletionDelta& delta : update.deltas) {
    pb::ChoiceDelta* choice = response.add_choices();
    choice->set_index(delta.index);
    choice->mutable_token_ids()->Add(delta.token_ids.begin(), delta.token_ids.end());
    choice->set_text(delta.text);
    if (with_logprobs) {
      for (const SampledToken& sample : delta.samples) {
        pb::TokenLogprobs* lp = choice->add_logprobs();
        lp->set_token_id(sample.token);
        lp->set_logprob(sample.logprob);
        for (const TokenLogprob& top : sample.top) {
          pb::TopLogprob* t = lp->add_top();
          t->set_token_id(top.token);
          t->set_logprob(top.logprob);
        }
      }
    }
    if (delta.finish_reason) choice->set_finish_reason(FinishReasonName(*delta.finish_reason));
    if (delta.stop_string) {
      choice->set_stop_reason(*delta.stop_string);
    } else if (delta.stop_token) {
      choice->set_stop_reason(std::to_string(*delta.stop_token));
    }
  }
  pb::Usage* usage = response.mutable_usage();
  usage->set_prompt_tokens(update.prompt_tokens);
  usage->set_completion_tokens(update.completion_tokens);
  usage->set_total_tokens(update.prompt_tokens + update.completion_tokens);
  usage->set_cached_prompt_tokens(update.cached_prompt_tokens);
  response.set_finished(update.finished);
  return response;
}

}  // namespace sy
