#include "server/security.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace sy {
namespace {

std::string_view TrimBlanks(std::string_view s) {
  const auto blank = [](char c) { return c == ' ' || c == '\t'; };
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

void AddKey(std::string_view key, std::vector<std::string>* keys) {
  key = TrimBlanks(key);
  if (!key.empty()) keys->emplace_back(key);
}

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// The file's bytes; InvalidArgument naming the flag, the path and the system's reason.
StatusOr<std::string> ReadPemFile(const char* flag, const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (file == nullptr) {
    return Status::InvalidArgument(std::string(flag) + " " + path + ": " + std::strerror(errno));
  }
  std::string bytes;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) bytes.append(buffer, n);
  if (std::ferror(file.get())) {
    return Status::InvalidArgument(std::string(flag) + " " + path + ": " + std::strerror(errno));
  }
  return bytes;
}

using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
}

// Refuses to ask for a passphrase: OpenSSL's default callback would prompt on the terminal.
int NoPassphrase(char*, int, int, void*) { return 0; }

// The first certificate in `pem` (null if none).
X509Ptr FirstCertificate(const std::string& pem) {
  Bio bio = MemoryBio(pem);
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, &NoPassphrase, nullptr), &X509_free);
}

// Leaves OpenSSL's per-thread error queue empty, whatever the parsers pushed onto it, so that
// a later TLS user on this thread does not report our errors as its own.
struct ClearOpenSslErrors {
  ~ClearOpenSslErrors() { ERR_clear_error(); }
};

}  // namespace

std::vector<std::string> MergeApiKeys(const std::vector<std::string>& flag_keys,
                                      std::string_view env_value) {
  std::vector<std::string> keys;
  for (const std::string& key : flag_keys) AddKey(key, &keys);
  while (!env_value.empty()) {
    const size_t comma = env_value.find(',');
    AddKey(env_value.substr(0, comma), &keys);
    if (comma == std::string_view::npos) break;
    env_value.remove_prefix(comma + 1);
  }
  return keys;
}

Status CheckSecurityOptions(const SecurityOptions& options) {
  if (options.protect_metrics && options.api_keys.empty()) {
    return Status::InvalidArgument(
        "--protect-metrics needs an API key (--api-key or SWITCHYARD_API_KEY)");
  }
  return Status::Ok();
}

ApiKeys::ApiKeys(const std::vector<std::string>& keys) {
  if (RAND_bytes(secret_.data(), static_cast<int>(secret_.size())) != 1) {
    // Without randomness the digests are still exact; only their secrecy is lost.
    secret_.fill(0);
  }
  for (const std::string& key : keys) digests_.push_back(DigestOf(key));
}

ApiKeys::Digest ApiKeys::DigestOf(std::string_view key) const {
  Digest digest{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest.data(), &length);
  return digest;
}

bool ApiKeys::AcceptsAuthorization(std::string_view header_value) const {
  header_value = TrimBlanks(header_value);
  constexpr std::string_view kScheme = "bearer";
  if (header_value.size() <= kScheme.size() ||
      !EqualsIgnoringCase(header_value.substr(0, kScheme.size()), kScheme)) {
    return false;
  }
  const char separator = header_value[kScheme.size()];
  if (separator != ' ' && separator != '\t') return false;
  const std::string_view key = TrimBlanks(header_value.substr(kScheme.size() + 1));
  if (key.empty()) return false;
  const Digest candidate = DigestOf(key);
  bool accepted = false;
  for (const Digest& digest : digests_) {
    // Every key is compared; no early exit tells which one matched.
    accepted |= CRYPTO_memcmp(candidate.data(), digest.data(), digest.size()) == 0;
  }
  return accepted;
}

StatusOr<TlsFiles> LoadTlsFiles(const SecurityOptions& options) {
  const bool cert = !options.ssl_certfile.empty();
  const bool key = !options.ssl_keyfile.empty();
  if (!cert && !key) {
    if (!options.ssl_ca_certs.empty()) {
      return Status::InvalidArgument("--ssl-ca-certs needs --ssl-certfile and --ssl-keyfile");
    }
    return TlsFiles{};
  }
  if (cert != key) {
    return Status::InvalidArgument("TLS needs both --ssl-certfile and --ssl-keyfile");
  }
  const ClearOpenSslErrors clear_errors;
  TlsFiles tls;
  StatusOr<std::string> cert_chain = ReadPemFile("--ssl-certfile", options.ssl_certfile);
  if (!cert_chain.ok()) return cert_chain.status();
  tls.cert_chain = std::move(cert_chain).value();
  X509Ptr leaf = FirstCertificate(tls.cert_chain);
  if (leaf == nullptr) {
    return Status::InvalidArgument("--ssl-certfile " + options.ssl_certfile +
                                   ": no PEM certificate in the file");
  }
  StatusOr<std::string> private_key = ReadPemFile("--ssl-keyfile", options.ssl_keyfile);
  if (!private_key.ok()) return private_key.status();
  tls.private_key = std::move(private_key).value();
  Bio key_bio = MemoryBio(tls.private_key);
  KeyPtr pkey(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, &NoPassphrase, nullptr),
              &EVP_PKEY_free);
  if (pkey == nullptr) {
    return Status::InvalidArgument("--ssl-keyfile " + options.ssl_keyfile +
                                   ": no unencrypted PEM private key in the file");
  }
  if (X509_check_private_key(leaf.get(), pkey.get()) != 1) {
    return Status::InvalidArgument("--ssl-keyfile " + options.ssl_keyfile +
                                   " is not the key of the certificate in --ssl-certfile " +
                                   options.ssl_certfile);
  }
  if (!options.ssl_ca_certs.empty()) {
    StatusOr<std::string> ca = ReadPemFile("--ssl-ca-certs", options.ssl_ca_certs);
    if (!ca.ok()) return ca.status();
    tls.ca_certs = std::move(ca).value();
    if (FirstCertificate(tls.ca_certs) == nullptr) {
      return Status::InvalidArgument("--ssl-ca-certs " + options.ssl_ca_certs +
                                     ": no PEM certificate in the file");
    }
  }
  return tls;
}

}  // namespace sy
