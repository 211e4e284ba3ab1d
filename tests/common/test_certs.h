// Throwaway TLS certificates for tests: a fresh directory filled by
// tests/common/make_test_certs.sh (CA, server, client and stranger certificates; openssl CLI).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/common/source_dir.h"

namespace sy::testing {

// The directory holding the certificates; empty if they could not be made.
inline std::string MakeTestCerts() {
  std::string dir = (std::filesystem::temp_directory_path() / "sy-certs-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) return "";
  const std::string command =
      "bash '" + SourceDir() + "/tests/common/make_test_certs.sh' '" + dir + "' 2>/dev/null";
  return std::system(command.c_str()) == 0 ? dir : "";
}

}  // namespace sy::testing
