// What the HTTP and gRPC frontends share about security: the serve flags (API keys, TLS files),
// the API-key check on an Authorization value, and loading the TLS files at startup.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sy {

struct SecurityOptions {
  // Bearer keys accepted on the user API (/v1/*, /tokenize, /detokenize, gRPC switchyard.v1);
  // none: the API is open.
  std::vector<std::string> api_keys;
  // Bearer key of /admin/* (HTTP); empty: the admin endpoints are disabled (403).
  std::string admin_api_key;
  // /metrics needs a user API key too.
  bool protect_metrics = false;
  // PEM files. certfile and keyfile turn TLS on; ca_certs also requires and verifies client
  // certificates signed by one of its CAs.
  std::string ssl_certfile;
  std::string ssl_keyfile;
  std::string ssl_ca_certs;
};

// The keys of repeated --api-key flags followed by those of SWITCHYARD_API_KEY (`env_value`,
// comma-separated); blanks around each key are trimmed and empty entries dropped.
std::vector<std::string> MergeApiKeys(const std::vector<std::string>& flag_keys,
                                      std::string_view env_value);

// Flag combinations that cannot work: --protect-metrics without any API key.
Status CheckSecurityOptions(const SecurityOptions& options);

// Checks `Authorization: Bearer <key>` values against a set of keys without leaking, through
// timing, which key or how much of one matched: every key's HMAC-SHA-256 digest (under a random
// per-instance secret) is compared with the candidate's, all of them, with CRYPTO_memcmp.
class ApiKeys {
 public:
  explicit ApiKeys(const std::vector<std::string>& keys);

  // False when there are no keys: every request is accepted.
  bool enabled() const { return !digests_.empty(); }
  // True when `header_value` is "Bearer <key>" (scheme case-insensitive, blanks around the key
  // ignored) with one of the keys; false for anything else, including an empty value.
  bool AcceptsAuthorization(std::string_view header_value) const;

 private:
  using Digest = std::array<unsigned char, 32>;
  Digest DigestOf(std::string_view key) const;

  std::array<unsigned char, 32> secret_;
  std::vector<Digest> digests_;
};

// PEM contents of the TLS files, read once at startup.
struct TlsFiles {
  std::string cert_chain;   // --ssl-certfile
  std::string private_key;  // --ssl-keyfile
  std::string ca_certs;     // --ssl-ca-certs; empty: client certificates are not asked for
  bool enabled() const { return !cert_chain.empty(); }
};

// Reads and checks the TLS files of `options` so that a bad path fails the server at startup:
// InvalidArgument when only one of certfile/keyfile is given or ca_certs comes without them,
// when a file cannot be read (with the reason), holds no PEM certificate / private key, or the
// key does not belong to the certificate. No TLS flags: an empty TlsFiles.
StatusOr<TlsFiles> LoadTlsFiles(const SecurityOptions& options);

}  // namespace sy
