// What the load tester measured for one request: the client produces it, the statistics consume
// it. A plain value type; times are seconds on one steady clock shared by the whole run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sy::bench {

struct RequestRecord {
  bool success = false;
  int http_status = 0;  // 0 when no response arrived (connection refused, timeout)
  std::string error;    // why it failed; empty on success

  double arrival_s = 0;  // when the arrival process released it (open loop)
  double start_s = 0;    // when it was sent; arrival_s + time waiting for a client slot
  double ttft_s = 0;     // first token-bearing chunk minus start_s
  double latency_s = 0;  // last token-bearing chunk minus start_s (vLLM's E2EL)
  // Gaps between consecutive token-bearing chunks; a chunk may carry several tokens.
  std::vector<double> itl_s;

  int64_t prompt_len = 0;     // usage.prompt_tokens when reported, else the dataset's count
  int64_t output_tokens = 0;  // usage.completion_tokens; 0 when the server did not report it
  int64_t chunks = 0;         // token-bearing chunks received
  std::string generated_text;
};

}  // namespace sy::bench
