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

Status WriteStringToFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::NotFound("cannot write " + path);
  out << text;
  out.flush();
  if (!out) return Status::DataLoss("error writing " + path);
  return Status::Ok();
}

}  // namespace sy
