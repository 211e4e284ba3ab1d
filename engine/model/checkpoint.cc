#include "engine/model/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/core/file_util.h"

namespace sy {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

// A shard name from the index must stay inside the model directory.
bool IsSafeShardName(const std::string& name) {
  if (name.empty() || name.front() == '/') return false;
  for (const auto& part : fs::path(name)) {
    if (part == "..") return false;
  }
  return true;
}

// Reads weight_map from the index: tensor name -> shard file name.
StatusOr<std::map<std::string, std::string>> ReadWeightMap(const std::string& index_path) {
  SY_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  const std::string corrupt = "corrupt checkpoint index " + index_path + ": ";
  const json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded()) return Status::DataLoss(corrupt + "not valid JSON");
  if (!index.is_object()) return Status::DataLoss(corrupt + "not a JSON object");
  const auto it = index.find("weight_map");
  if (it == index.end() || !it->is_object()) {
    return Status::DataLoss(corrupt + "no weight_map object");
  }
  std::map<std::string, std::string> weight_map;
  for (const auto& [name, shard] : it->items()) {
    if (!shard.is_string() || !IsSafeShardName(shard.get<std::string>())) {
      return Status::DataLoss(corrupt + "weight_map entry for " + name +
                              " is not a shard file name in the model directory");
    }
    weight_map.emplace(name, shard.get<std::string>());
  }
  return weight_map;
}

}  // namespace

std::string ShapeToString(std::span<const int64_t> shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir) {
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) {
    return Status::NotFound("model directory not found: " + model_dir);
  }
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint(model_dir));
  const std::string index_path = (fs::path(model_dir) / kIndexFile).string();
  const std::string single_path = (fs::path(model_dir) / kSingleFile).string();
  if (fs::exists(index_path, ec)) {
    SY_RETURN_IF_ERROR(ckpt->OpenIndexed(index_path));
  } else if (fs::exists(single_path, ec)) {
    SY_RETURN_IF_ERROR(ckpt->OpenSingle(single_path));
  } else {
    return Status::NotFound("no model.safetensors or model.safetensors.index.json in " + model_dir);
  }
  return ckpt;
}

Status Checkpoint::OpenIndexed(const std::string& index_path) {
  using WeightMap = std::map<std::string, std::string>;
  SY_ASSIGN_OR_RETURN(const WeightMap weight_map, ReadWeightMap(index_path));
  std::map<std::string, const SafetensorsFile*> by_shard;
  for (const auto& [name, shard] : weight_map) by_shard.emplace(shard, nullptr);
  for (auto& [shard, file] : by_shard) {
    const std::string path = (fs::path(dir_) / shard).string();
    auto opened = SafetensorsFile::Open(path);
    if (!opened.ok()) {
      if (opened.status().code() == StatusCode::kNotFound) {
        return Status::NotFound("checkpoint shard " + shard + " listed in " + index_path +
                                " not found in " + dir_);
      }
      return opened.status();
    }
    file = opened->get();
    shards_.push_back(std::move(opened).value());
  }
  for (const auto& [name, shard] : weight_map) {
    const TensorView* view = by_shard.at(shard)->Find(name);
    if (view == nullptr) {
      return Status::DataLoss("tensor " + name + " is listed in " + index_path +
                              " but missing from shard " + shard);
    }
    tensors_.emplace(name, view);
  }
  return Status::Ok();
}

Status Checkpoint::OpenSingle(const std::string& path) {
  SY_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  for (const std::string& name : file->names()) tensors_.emplace(name, file->Find(name));
  shards_.push_back(std::move(file));
  return Status::Ok();
}

StatusOr<TensorView> Checkpoint::Get(std::string_view name,
                                     std::span<const int64_t> expected_shape) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return Status::NotFound("missing tensor " + std::string(name) + " in " + dir_);
  }
  const TensorView& view = *it->second;
  if (!std::equal(view.shape.begin(), view.shape.end(), expected_shape.begin(),
                  expected_shape.end())) {
    return Status::InvalidArgument("tensor " + std::string(name) + " has shape " +
                                   ShapeToString(view.shape) + " but the config implies " +
                                   ShapeToString(expected_shape));
  }
  return view;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) out.push_back(name);
  return out;
}

std::vector<std::string> Checkpoint::shard_paths() const {
  std::vector<std::string> out;
  for (const auto& shard : shards_) out.push_back(shard->path());
  return out;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& [name, view] : tensors_) total += view->nbytes;
  return total;
}

}  // namespace sy
