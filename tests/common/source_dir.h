// Where the repository's test data lives, found at run time rather than compiled in, so that a
// test binary built in one clone is byte-identical to one built in another (compiler-cache hits)
// and runs from a copy of the repository elsewhere (the GPU machine).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace sy::testing {

// $SY_SOURCE_DIR when set; else the nearest directory above the running executable that holds
// tests/golden (an in-tree build such as build/tests/unit/x finds the clone it was built from).
inline std::string SourceDir() {
  const char* root = std::getenv("SY_SOURCE_DIR");
  if (root != nullptr && *root != '\0') return root;
  std::error_code ec;
  auto dir = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  for (; !ec && !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
    std::error_code missing;  // a missing candidate sets it; that only means "look higher"
    if (std::filesystem::is_directory(dir / "tests" / "golden", missing)) return dir.string();
  }
  return ".";
}

}  // namespace sy::testing
