#include "engine/core/file_util.h"

#include <fstream>
#include <sstream>

namespace sy {

StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::DataLoss("error reading " + path);
  return text.str();
}

}  // namespace sy
