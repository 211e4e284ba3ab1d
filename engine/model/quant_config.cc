#include "engine/model/quant_config.h"

#include <nlohmann/json.hpp>
#include <regex>

#include "engine/core/json_fields.h"

namespace sy {
namespace {

using json = nlohmann::json;
using json_fields::Fields;

constexpr int64_t kMaxBlock = int64_t{1} << 20;

Fields QuantFields(const json& obj, const std::string& path) {
  json_fields::Options options;
  options.context = "config.json: ";
  return Fields(obj, path, std::move(options));
}

// Unimplemented "config.json: field 'quantization_config.x' is <value>, which is not supported
// (<supported>)".
Status Unsupported(const Fields& f, std::string_view key, const json& value,
                   const std::string& supported) {
  return Status::Unimplemented("config.json: field '" + f.PathOf(key) + "' is " + value.dump() +
                               ", which is not supported (" + supported + ")");
}

// A list of strings (null or absent: none), appended to *out.
Status StringList(const Fields& f, std::string_view key, std::vector<std::string>* out) {
  const json* v = f.Find(key);
  if (v == nullptr) return Status::Ok();
  if (!v->is_array()) return f.Bad(key, "a list of strings", *v);
  for (const json& item : *v) {
    if (!item.is_string()) return f.Bad(key, "a list of strings", *v);
    out->push_back(item.get<std::string>());
  }
  return Status::Ok();
}

// [rows, cols] of positive integers (or compressed-tensors' older "RxC" string).
Status BlockShape(const Fields& f, std::string_view key, QuantizationConfig* q) {
  const json* v = f.Find(key);
  if (v == nullptr) return f.Missing(key);
  std::vector<int64_t> dims;
  if (v->is_string()) {
    const std::string s = v->get<std::string>();
    const size_t x = s.find('x');
    if (x != std::string::npos) {
      const json r = json::parse(s.substr(0, x), nullptr, false);
      const json c = json::parse(s.substr(x + 1), nullptr, false);
      if (r.is_number_integer() && c.is_number_integer())
        dims = {r.get<int64_t>(), c.get<int64_t>()};
    }
  } else if (v->is_array() && v->size() == 2 && (*v)[0].is_number_integer() &&
             (*v)[1].is_number_integer()) {
    dims = {(*v)[0].get<int64_t>(), (*v)[1].get<int64_t>()};
  }
  if (dims.size() != 2 || dims[0] < 1 || dims[1] < 1 || dims[0] > kMaxBlock ||
      dims[1] > kMaxBlock) {
    return f.Bad(key, "[rows, cols] of positive integers", *v);
  }
  q->granularity = ScaleGranularity::kBlock;
  q->block_rows = dims[0];
  q->block_cols = dims[1];
  return Status::Ok();
}

// quant_method "fp8" (transformers' FineGrainedFP8Config, DeepSeek-V3, Qwen3-FP8; without
// weight_block_size, vLLM's per-tensor FP8).
Status ParseFp8(const Fields& f, QuantizationConfig* q) {
  q->method = QuantMethod::kFp8;
  std::string fmt, scheme;
  SY_RETURN_IF_ERROR(f.String("fmt", "e4m3", &fmt));
  if (fmt != "e4m3") return Unsupported(f, "fmt", fmt, "supported: e4m3");
  SY_RETURN_IF_ERROR(f.String("activation_scheme", "dynamic", &scheme));
  if (scheme != "dynamic") {
    return Unsupported(f, "activation_scheme", scheme,
                       "supported: dynamic; activations stay f32, so static input scales "
                       "cannot be honoured");
  }
  if (f.Find("weight_block_size") != nullptr) {
    SY_RETURN_IF_ERROR(BlockShape(f, "weight_block_size", q));
    q->scale_name = "weight_scale_inv";
  } else {
    q->granularity = ScaleGranularity::kTensor;
    q->scale_name = "weight_scale";
  }
  SY_RETURN_IF_ERROR(StringList(f, "modules_to_not_convert", &q->not_converted));
  SY_RETURN_IF_ERROR(StringList(f, "ignored_layers", &q->not_converted));
  q->not_converted_as_substring = true;
  return Status::Ok();
}

// One config group's `weights` scheme: 8-bit symmetric float, static, tensor/channel/block.
Status ParseCompressedWeights(const Fields& w, QuantizationConfig* q) {
  int64_t bits = 0;
  std::string type, strategy;
  bool symmetric = true, dynamic = false;
  SY_RETURN_IF_ERROR(w.Int("num_bits", &bits));
  SY_RETURN_IF_ERROR(w.String("type", "int", &type));
  if (type != "float") return Unsupported(w, "type", type, "supported: float");
  if (bits != 8) return Unsupported(w, "num_bits", bits, "supported: 8 with type float");
  SY_RETURN_IF_ERROR(w.Bool("symmetric", true, &symmetric));
  if (!symmetric) return Unsupported(w, "symmetric", false, "supported: true");
  SY_RETURN_IF_ERROR(w.Bool("dynamic", false, &dynamic));
  if (dynamic) return Unsupported(w, "dynamic", true, "supported: false for weights");
  SY_RETURN_IF_ERROR(w.String("strategy", "tensor", &strategy));
  if (strategy == "tensor") {
    q->granularity = ScaleGranularity::kTensor;
  } else if (strategy == "channel") {
    q->granularity = ScaleGranularity::kChannel;
  } else if (strategy == "block") {
    SY_RETURN_IF_ERROR(BlockShape(w, "block_structure", q));
  } else {
    return Unsupported(w, "strategy", strategy, "supported: tensor, channel, block");
  }
  return Status::Ok();
}

// quant_method "compressed-tensors" (llm-compressor) with float 8-bit weights.
Status ParseCompressedTensors(const Fields& f, QuantizationConfig* q) {
  q->method = QuantMethod::kFp8;
  q->scale_name = "weight_scale";
  std::string format;
  SY_RETURN_IF_ERROR(f.String("format", "float-quantized", &format));
  if (format != "float-quantized" && format != "naive-quantized") {
    return Unsupported(f, "format", format, "supported: float-quantized, naive-quantized");
  }
  if (const json* kv = f.Find("kv_cache_scheme"); kv != nullptr) {
    return Unsupported(f, "kv_cache_scheme", *kv, "supported: null");
  }
  const json* groups = f.Find("config_groups");
  if (groups == nullptr || !groups->is_object() || groups->empty()) {
    return f.Bad("config_groups", "an object of quantization groups", groups ? *groups : json());
  }
  bool first = true;
  for (const auto& [name, group] : groups->items()) {
    const Fields g = QuantFields(group, f.PathOf("config_groups") + "." + name);
    const json* weights = g.Find("weights");
    if (weights == nullptr || !weights->is_object()) {
      return g.Bad("weights", "an object", weights ? *weights : json());
    }
    QuantizationConfig scheme = *q;
    SY_RETURN_IF_ERROR(ParseCompressedWeights(QuantFields(*weights, g.PathOf("weights")), &scheme));
    if (!first && (scheme.granularity != q->granularity || scheme.block_rows != q->block_rows ||
                   scheme.block_cols != q->block_cols)) {
      return Unsupported(g, "weights", *weights, "supported: one weight scheme for every group");
    }
    *q = scheme;
    first = false;
    if (const json* in = g.Find("input_activations"); in != nullptr) {
      const Fields a = QuantFields(*in, g.PathOf("input_activations"));
      bool dynamic = false;
      SY_RETURN_IF_ERROR(a.Bool("dynamic", false, &dynamic));
      if (!dynamic) {
        return Unsupported(a, "dynamic", false,
                           "supported: true; activations stay f32, so static input scales "
                           "cannot be honoured");
      }
    }
    if (const json* out = g.Find("output_activations"); out != nullptr) {
      return Unsupported(g, "output_activations", *out, "supported: null");
    }
  }
  SY_RETURN_IF_ERROR(StringList(f, "ignore", &q->not_converted));
  q->not_converted_as_substring = false;
  for (const std::string& entry : q->not_converted) {
    if (!entry.starts_with("re:")) continue;
    try {
      const std::regex pattern(entry.substr(3));
    } catch (const std::regex_error&) {
      return f.Bad("ignore", "module names or \"re:<regular expression>\"", entry);
    }
  }
  return Status::Ok();
}

}  // namespace

bool QuantizationConfig::Quantizes(std::string_view module) const {
  if (method == QuantMethod::kNone) return false;
  for (const std::string& entry : not_converted) {
    if (not_converted_as_substring) {
      if (module.find(entry) != std::string_view::npos) return false;
    } else if (entry.starts_with("re:")) {
      const std::regex pattern(entry.substr(3));
      if (std::regex_search(module.begin(), module.end(), pattern,
                            std::regex_constants::match_continuous)) {
        return false;
      }
    } else if (module == entry) {
      return false;
    }
  }
  return true;
}

StatusOr<QuantizationConfig> ParseQuantizationConfig(const json& config) {
  const Fields f = QuantFields(config, "quantization_config");
  if (!config.is_object()) {
    return Status::InvalidArgument("config.json: field 'quantization_config' must be an object");
  }
  QuantizationConfig q;
  SY_RETURN_IF_ERROR(f.String("quant_method", "", &q.quant_method));
  std::string format;
  SY_RETURN_IF_ERROR(f.String("format", "", &format));
  if (q.quant_method == "gptq" || q.quant_method == "awq" ||
      (q.quant_method == "compressed-tensors" && format == "pack-quantized")) {
    q.method = QuantMethod::kInt4;  // int4_checkpoint.h checks its fields
    q.int4_json = config.dump();
  } else if (q.quant_method == "fp8") {
    SY_RETURN_IF_ERROR(ParseFp8(f, &q));
  } else if (q.quant_method == "compressed-tensors") {
    SY_RETURN_IF_ERROR(ParseCompressedTensors(f, &q));
  } else {
    return Unsupported(f, "quant_method", q.quant_method,
                       "supported: fp8, gptq, awq, compressed-tensors");
  }
  return q;
}

json QuantizationConfigToJson(const QuantizationConfig& q) {
  if (q.method == QuantMethod::kNone) return nullptr;
  if (q.method == QuantMethod::kInt4) return json::parse(q.int4_json);
  if (q.quant_method == "fp8") {
    json j = {{"quant_method", "fp8"},
              {"fmt", "e4m3"},
              {"activation_scheme", "dynamic"},
              {"modules_to_not_convert", q.not_converted}};
    if (q.granularity == ScaleGranularity::kBlock) {
      j["weight_block_size"] = {q.block_rows, q.block_cols};
    }
    return j;
  }
  json weights = {{"num_bits", 8}, {"type", "float"}, {"symmetric", true}, {"dynamic", false}};
  switch (q.granularity) {
    case ScaleGranularity::kTensor:
      weights["strategy"] = "tensor";
      break;
    case ScaleGranularity::kChannel:
      weights["strategy"] = "channel";
      break;
    case ScaleGranularity::kBlock:
      weights["strategy"] = "block";
      weights["block_structure"] = {q.block_rows, q.block_cols};
      break;
  }
  return {{"quant_method", "compressed-tensors"},
          {"format", "float-quantized"},
          {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", weights}}}}},
          {"ignore", q.not_converted}};
}

}  // namespace sy
