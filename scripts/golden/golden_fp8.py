"""FP8 block-scaled checkpoints in the layout transformers' FineGrainedFP8 reads (and
DeepSeek-V3 and Qwen3-FP8 publish): each quantized nn.Linear weight is stored as
float8_e4m3fn beside a float32 `weight_scale_inv` of one value per block (value = fp8 * scale),
and config.json gains a quantization_config (quant_method "fp8", weight_block_size,
modules_to_not_convert).

The weights are quantized with torch's own float8_e4m3fn cast (after clamping to +-448) with a
scale of max|w| / 448 per block. transformers 4.57.6's FP8 layers need a GPU, so the reference
is the model's own class running on the dequantized weights: exactly the values the checkpoint
stands for, which is also what the engine computes with."""

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

FP8_MAX = 448.0
# Modules transformers would convert (nn.Linear) that the checkpoint keeps unquantized, as
# published FP8 models do: the routers, the shared-expert gates and the LM head.
NOT_CONVERTED = re.compile(r"(\.gate|\.shared_expert_gate|^lm_head)$")


def _scale_shape(shape, block):
    return math.ceil(shape[0] / block[0]), math.ceil(shape[1] / block[1])


def _expand(scales, shape, block):
    """The per-block scales repeated over each block's elements, cut to `shape`."""
    full = scales.repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)
    return full[:shape[0], :shape[1]]


def quantize(weight, block):
    """(float8_e4m3fn values, float32 scales [ceil(rows/br), ceil(cols/bc)])."""
    w = weight.detach().float()
    scales = torch.zeros(_scale_shape(w.shape, block), dtype=torch.float32)
    for i in range(scales.shape[0]):
        for j in range(scales.shape[1]):
            tile = w[i * block[0]:(i + 1) * block[0], j * block[1]:(j + 1) * block[1]]
            scales[i, j] = tile.abs().max() / FP8_MAX
    expanded = _expand(scales, w.shape, block)
    safe = torch.where(expanded > 0, expanded, torch.ones_like(expanded))
    q = (w / safe).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, scales


def dequantize(q, scales, block):
    return q.float() * _expand(scales, q.shape, block)


def quantized_modules(model):
    """Names of the nn.Linear modules the checkpoint stores in FP8."""
    return [name for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not NOT_CONVERTED.search(name)]


def not_converted_modules(model):
    return [name for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and NOT_CONVERTED.search(name)]


@torch.no_grad()
def quantize_model(model, block):
    """Replaces each quantized weight by its dequantized value, in place. Returns
    {weight name: (fp8 values, scales)} for write_checkpoint."""
    stored = {}
    for module in quantized_modules(model):
        param = model.get_parameter(module + ".weight")
        q, scales = quantize(param, block)
        param.copy_(dequantize(q, scales, block))
        stored[module + ".weight"] = (q, scales)
    return stored


def quantization_config(model, block):
    return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
            "weight_block_size": list(block), "modules_to_not_convert": not_converted_modules(model)}


def write_checkpoint(model_dir: Path, model, stored, block):
    """Rewrites the saved (dequantized, float) checkpoint in the published FP8 layout."""
    index_path = model_dir / "model.safetensors.index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else None
    for path in sorted(model_dir.glob("*.safetensors")):
        tensors = load_file(str(path))
        for name in [n for n in tensors if n in stored]:
            q, scales = stored[name]
            tensors[name] = q.contiguous()
            tensors[name + "_scale_inv"] = scales.contiguous()
            if index is not None:
                index["weight_map"][name + "_scale_inv"] = path.name
        save_file(tensors, str(path), metadata={"format": "pt"})
    if index is not None:
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["quantization_config"] = quantization_config(model, block)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def is_fp8_checkpoint(model_dir: Path):
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return config.get("quantization_config", {}).get("quant_method") == "fp8"


@torch.no_grad()
def load_dequantized(model_dir: Path, dtype):
    """The checkpoint's model class on its dequantized weights (CPU; no FP8 kernels)."""
    config = AutoConfig.from_pretrained(model_dir, attn_implementation="eager")
    block = config.quantization_config["weight_block_size"]
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    state = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        state.update(load_file(str(path)))
    for name in [n for n in state if n.endswith("_scale_inv")]:
        weight = name[:-len("_scale_inv")]
        state[weight] = dequantize(state[weight], state.pop(name), block)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"{model_dir}: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model.to(dtype).eval()
