// The security options shared by the frontends: API-key merging and matching, flag checks, and
// loading the TLS files (against certificates made by the openssl CLI).
#include "server/security.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/common/test_certs.h"

namespace sy {
namespace {

using Keys = std::vector<std::string>;

TEST(MergeApiKeysTest, FlagsThenTheVariableTrimmedWithoutEmptyEntries) {
  EXPECT_EQ(MergeApiKeys({"a", " b "}, " c,, d ,\tone two ,"),
            (Keys{"a", "b", "c", "d", "one two"}));
  EXPECT_EQ(MergeApiKeys({"", "  "}, ""), Keys{});
  EXPECT_EQ(MergeApiKeys({}, ","), Keys{});
  EXPECT_EQ(MergeApiKeys({}, "only"), Keys{"only"});
}

TEST(CheckSecurityOptionsTest, ProtectMetricsNeedsAKey) {
  SecurityOptions options;
  EXPECT_TRUE(CheckSecurityOptions(options).ok());
  options.protect_metrics = true;
  const Status st = CheckSecurityOptions(options);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("--protect-metrics needs an API key"), std::string::npos);
  options.api_keys = {"k"};
  EXPECT_TRUE(CheckSecurityOptions(options).ok());
}

TEST(ApiKeysTest, NoKeysIsDisabled) {
  const ApiKeys keys({});
  EXPECT_FALSE(keys.enabled());
  EXPECT_FALSE(keys.AcceptsAuthorization("Bearer anything"));
}

TEST(ApiKeysTest, AcceptsBearerWithAnyKey) {
  const ApiKeys keys({"sk-first", "sk-second"});
  EXPECT_TRUE(keys.enabled());
  EXPECT_TRUE(keys.AcceptsAuthorization("Bearer sk-first"));
  EXPECT_TRUE(keys.AcceptsAuthorization("Bearer sk-second"));
  EXPECT_TRUE(keys.AcceptsAuthorization("bearer sk-first"));  // the scheme is case-insensitive
  EXPECT_TRUE(keys.AcceptsAuthorization("BEARER\tsk-second"));
  EXPECT_TRUE(keys.AcceptsAuthorization("  Bearer   sk-first  "));
}

TEST(ApiKeysTest, RefusesAnythingElse) {
  const ApiKeys keys({"sk-first", "sk-second"});
  for (const char* value :
       {"", "Bearer", "Bearer ", "Bearer  ", "sk-first", "Bearersk-first", "Basic sk-first",
        "Bearer sk-firs", "Bearer sk-first2", "Bearer SK-FIRST", "Bearer sk-first sk-second",
        "Token sk-first", "Bearer: sk-first"}) {
    EXPECT_FALSE(keys.AcceptsAuthorization(value)) << "'" << value << "'";
  }
}

class LoadTlsFilesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = new std::string(sy::testing::MakeTestCerts()); }
  static void TearDownTestSuite() {
    if (!certs_->empty()) std::filesystem::remove_all(*certs_);
    delete certs_;
  }
  void SetUp() override { ASSERT_FALSE(certs_->empty()) << "openssl could not make certificates"; }

  static std::string Path(const std::string& name) { return *certs_ + "/" + name; }
  static std::string Contents(const std::string& name) {
    std::ifstream in(Path(name));
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  static SecurityOptions ServerTls() {
    SecurityOptions options;
    options.ssl_certfile = Path("server.crt");
    options.ssl_keyfile = Path("server.key");
    return options;
  }
  // The error message of loading `options`; "" if it loaded.
  static std::string ErrorOf(const SecurityOptions& options) {
    StatusOr<TlsFiles> tls = LoadTlsFiles(options);
    if (tls.ok()) return "";
    EXPECT_EQ(tls.status().code(), StatusCode::kInvalidArgument);
    return tls.status().message();
  }

  static std::string* certs_;
};
std::string* LoadTlsFilesTest::certs_ = nullptr;

TEST_F(LoadTlsFilesTest, NoFlagsNoTls) {
  StatusOr<TlsFiles> tls = LoadTlsFiles(SecurityOptions{});
  ASSERT_TRUE(tls.ok());
  EXPECT_FALSE(tls->enabled());
}

TEST_F(LoadTlsFilesTest, ReadsTheFiles) {
  SecurityOptions options = ServerTls();
  StatusOr<TlsFiles> tls = LoadTlsFiles(options);
  ASSERT_TRUE(tls.ok()) << tls.status().ToString();
  EXPECT_TRUE(tls->enabled());
  EXPECT_EQ(tls->cert_chain, Contents("server.crt"));
  EXPECT_EQ(tls->private_key, Contents("server.key"));
  EXPECT_TRUE(tls->ca_certs.empty());
  options.ssl_ca_certs = Path("ca.crt");
  tls = LoadTlsFiles(options);
  ASSERT_TRUE(tls.ok()) << tls.status().ToString();
  EXPECT_EQ(tls->ca_certs, Contents("ca.crt"));
}

TEST_F(LoadTlsFilesTest, FlagsThatNeedEachOther) {
  SecurityOptions cert_only;
  cert_only.ssl_certfile = Path("server.crt");
  EXPECT_EQ(ErrorOf(cert_only), "TLS needs both --ssl-certfile and --ssl-keyfile");
  SecurityOptions key_only;
  key_only.ssl_keyfile = Path("server.key");
  EXPECT_EQ(ErrorOf(key_only), "TLS needs both --ssl-certfile and --ssl-keyfile");
  SecurityOptions ca_only;
  ca_only.ssl_ca_certs = Path("ca.crt");
  EXPECT_EQ(ErrorOf(ca_only), "--ssl-ca-certs needs --ssl-certfile and --ssl-keyfile");
}

TEST_F(LoadTlsFilesTest, MissingOrUnreadableFilesNameFlagPathAndReason) {
  SecurityOptions options = ServerTls();
  options.ssl_certfile = Path("absent.crt");
  EXPECT_EQ(ErrorOf(options),
            "--ssl-certfile " + Path("absent.crt") + ": No such file or directory");
  options = ServerTls();
  options.ssl_keyfile = *certs_;  // a directory opens but cannot be read
  EXPECT_EQ(ErrorOf(options), "--ssl-keyfile " + *certs_ + ": Is a directory");
  options = ServerTls();
  options.ssl_ca_certs = Path("absent-ca.crt");
  EXPECT_EQ(ErrorOf(options),
            "--ssl-ca-certs " + Path("absent-ca.crt") + ": No such file or directory");
}

TEST_F(LoadTlsFilesTest, FilesWithTheWrongContents) {
  SecurityOptions options = ServerTls();
  options.ssl_certfile = Path("server.key");
  EXPECT_EQ(ErrorOf(options),
            "--ssl-certfile " + Path("server.key") + ": no PEM certificate in the file");
  options = ServerTls();
  options.ssl_keyfile = Path("server.crt");
  EXPECT_EQ(ErrorOf(options),
            "--ssl-keyfile " + Path("server.crt") + ": no unencrypted PEM private key in the file");
  options = ServerTls();
  options.ssl_keyfile = Path("stranger.key");
  EXPECT_EQ(ErrorOf(options), "--ssl-keyfile " + Path("stranger.key") +
                                  " is not the key of the certificate in --ssl-certfile " +
                                  Path("server.crt"));
  options = ServerTls();
  options.ssl_ca_certs = Path("ca.key");
  EXPECT_EQ(ErrorOf(options),
            "--ssl-ca-certs " + Path("ca.key") + ": no PEM certificate in the file");
}

}  // namespace
}  // namespace sy
