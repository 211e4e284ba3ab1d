// Small file helpers shared by the loaders (checkpoint index, config.json, tokenizer files) and
// the writers of placement and trace files.
#pragma once

#include <string>

#include "engine/core/status.h"

namespace sy {

// The whole file as bytes: NotFound "cannot read <path>" if it cannot be opened, DataLoss on a
// read error.
StatusOr<std::string> ReadFileToString(const std::string& path);
// Writes `text` to `path` (replacing it); NotFound if it cannot be opened, DataLoss on error.
Status WriteStringToFile(const std::string& path, const std::string& text);

}  // namespace sy
