#!/usr/bin/env python3
"""Writes tests/golden/int4/: tiny pre-quantized int4 checkpoints (GPTQ v1, AWQ GEMM,
compressed-tensors pack-quantized) and the weights they stand for, dequantized here
independently of the engine's loader.

    .venv-golden/bin/python scripts/golden/gen_int4_checkpoints.py [--out tests/golden/int4]

Each <format>/ directory holds config.json (its quantization_config), model.safetensors (the
packed tensors, named <linear>.qweight/.qzeros/.scales[/.g_idx] or .weight_packed/
.weight_scale[/.weight_zero_point/.weight_g_idx]/.weight_shape) and expected.safetensors
(<linear>.weight: the dequantized [out, in] matrix in f32, and <linear>.scale: the per-group
scales [groups, out] in f32). The packing follows the libraries' writers (GPTQ: AutoGPTQ /
GPTQModel's pack, v1 zero points stored minus one; AWQ: AutoAWQ's WQLinear_GEMM with its column
order [0, 2, 4, 6, 1, 3, 5, 7]; pack-quantized: compressed-tensors' pack_to_int32, signed values
+ 8, zero points packed along the output rows); the expected weights come from their
dequantization code paths (AutoGPTQ's unpack with the +1, AutoAWQ's unpack_awq +
reverse_awq_order, compressed-tensors' unpack_from_int32 then (q - zero) * scale), written here
in torch. Deterministic (fixed seed); a few KiB. See tests/golden/README.md.
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[2]
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]
SHIFTS = torch.arange(0, 32, 4, dtype=torch.int32)

# (name, out features, in features): in 320 leaves a partial last group at group size 128.
LINEARS = [("layer.a", 40, 192), ("layer.b", 16, 320)]


def quantize(w, group):
    """Round-to-nearest asymmetric 4-bit per group of input columns: q, zero [groups, out], scale."""
    out_f, in_f = w.shape
    groups = (in_f + group - 1) // group
    q = torch.empty(out_f, in_f, dtype=torch.int32)
    zeros = torch.empty(groups, out_f, dtype=torch.int32)
    scales = torch.empty(groups, out_f, dtype=torch.float16)
    for g in range(groups):
        cols = w[:, g * group:(g + 1) * group]
        lo = cols.min(dim=1).values.clamp(max=0)
        hi = cols.max(dim=1).values.clamp(min=0)
        scale = ((hi - lo) / 15).clamp(min=1e-8).half()
        zero = torch.round(-lo / scale.float()).clamp(0, 15).int()
        q[:, g * group:(g + 1) * group] = (
            torch.round(cols / scale.float()[:, None]) + zero[:, None]).clamp(0, 15).int()
        zeros[g] = zero
        scales[g] = scale
    return q, zeros, scales


def pack_rows_of_8(values):
    """int32 [n, m] with n % 8 == 0 -> [n / 8, m]: value 8r + k in bits 4k (GPTQ qweight)."""
    n, m = values.shape
    v = values.reshape(n // 8, 8, m).to(torch.int64)
    packed = (v << (4 * torch.arange(8, dtype=torch.int64))[None, :, None]).sum(dim=1)
    return torch.tensor(((packed + 2**31) % 2**32 - 2**31).tolist(), dtype=torch.int32)


def pack_cols_of_8(values, order):
    """int32 [n, m] with m % 8 == 0 -> [n, m / 8]: column 8c + order[k] in bits 4k."""
    n, m = values.shape
    v = values.reshape(n, m // 8, 8)[:, :, order].to(torch.int64)
    packed = (v << (4 * torch.arange(8, dtype=torch.int64))[None, None, :]).sum(dim=2)
    return torch.tensor(((packed + 2**31) % 2**32 - 2**31).tolist(), dtype=torch.int32)


def gptq_dequantize(qweight, qzeros, scales, g_idx):
    """AutoGPTQ's dequantization (v1 zeros: +1), as [out, in] f32."""
    zeros = torch.bitwise_right_shift(qzeros.unsqueeze(2).expand(-1, -1, 8),
                                      SHIFTS[None, None, :]).bitwise_and(15)
    zeros = (zeros + 1).reshape(qzeros.shape[0], -1)
    weight = torch.bitwise_right_shift(qweight.unsqueeze(1).expand(-1, 8, -1),
                                       SHIFTS[None, :, None]).bitwise_and(15)
    weight = weight.reshape(-1, qweight.shape[1])
    g = g_idx.long()
    return (scales.float()[g] * (weight - zeros[g]).float()).t().contiguous()


def awq_dequantize(qweight, qzeros, scales, group):
    """AutoAWQ's unpack_awq + reverse_awq_order + (q - z) * s, as [out, in] f32."""
    def unpack(t):
        v = torch.bitwise_right_shift(t[:, :, None], SHIFTS[None, None, :]).bitwise_and(15)
        v = v.reshape(t.shape[0], -1)
        order = torch.arange(v.shape[1]).reshape(-1, 8)[:, AWQ_REVERSE_ORDER].reshape(-1)
        return v[:, order]
    iweight = unpack(qweight)  # [in, out]
    izeros = unpack(qzeros)    # [groups, out]
    g = torch.arange(iweight.shape[0]) // group
    return ((iweight - izeros[g]).float() * scales.float()[g]).t().contiguous()


def check_close(name, w, dequantized, scales, group):
    """The library's dequantization of our packing is the original within half a step (and the
    clamped edge steps): the packing is what the library reads."""
    step = scales.float().repeat_interleave(group, dim=0)[:w.shape[1]].t()
    err = (dequantized - w).abs()
    assert bool((err <= step * 0.51 + 1e-6).all()), f"{name}: max error {err.max()}"


def pack_signed_along(values, dim):
    """compressed-tensors' layout: int values in [-8, 7] stored + 8, 8 per int32 along `dim`
    (1: rows of [n, m] -> [n, ceil(m / 8)]; 0: columns -> [ceil(n / 8), m]), value 8c + k in
    bits 4k, zero padded."""
    u = (values + 8).to(torch.int64)
    if dim == 0:
        u = u.t()
    n, m = u.shape
    words = (m + 7) // 8
    u = torch.nn.functional.pad(u, (0, words * 8 - m)).reshape(n, words, 8)
    packed = (u << (4 * torch.arange(8, dtype=torch.int64))).sum(dim=2)
    packed = torch.tensor(((packed + 2**31) % 2**32 - 2**31).tolist(), dtype=torch.int32)
    return packed.t().contiguous() if dim == 0 else packed


def unpack_signed_along(packed, dim, size):
    """unpack_from_int32: nibble k of word c is value 8c + k, minus 8; `size` values kept."""
    p = packed.t() if dim == 0 else packed
    v = torch.bitwise_right_shift(p[:, :, None], SHIFTS[None, None, :]).bitwise_and(15)
    v = v.reshape(p.shape[0], -1)[:, :size] - 8
    return v.t() if dim == 0 else v


def pack_quantized(gen, out, name, group, symmetric):
    tensors, expected = {}, {}
    for lin, out_f, in_f in LINEARS:
        w = torch.randn(out_f, in_f, generator=gen) * 0.02
        groups = (in_f + group - 1) // group
        q = torch.empty(out_f, in_f, dtype=torch.int64)
        scales = torch.empty(out_f, groups, dtype=torch.float16)
        zeros = torch.zeros(out_f, groups, dtype=torch.int64)
        for g in range(groups):
            cols = w[:, g * group:(g + 1) * group]
            if symmetric:  # compressed-tensors: scale = max|w| / ((qmax - qmin) / 2)
                scale = (cols.abs().max(dim=1).values / 7.5).half()
                zero = torch.zeros(out_f, dtype=torch.int64)
            else:
                lo = cols.min(dim=1).values.clamp(max=0)
                hi = cols.max(dim=1).values.clamp(min=0)
                scale = ((hi - lo) / 15).half()
                zero = (torch.round(-lo / scale.float()) - 8).clamp(-8, 7).long()
            q[:, g * group:(g + 1) * group] = (
                torch.round(cols / scale.float()[:, None]) + zero[:, None]).clamp(-8, 7).long()
            scales[:, g] = scale
            zeros[:, g] = zero
        tensors[lin + ".weight_packed"] = pack_signed_along(q, 1)
        tensors[lin + ".weight_scale"] = scales
        tensors[lin + ".weight_shape"] = torch.tensor([out_f, in_f], dtype=torch.int64)
        if not symmetric:
            tensors[lin + ".weight_zero_point"] = pack_signed_along(zeros, 0)
        xq = unpack_signed_along(tensors[lin + ".weight_packed"], 1, in_f)
        zp = (unpack_signed_along(tensors[lin + ".weight_zero_point"], 0, out_f)
              if not symmetric else torch.zeros(out_f, groups, dtype=torch.int64))
        g_of = torch.arange(in_f) // group
        expected[lin + ".weight"] = ((xq - zp[:, g_of]).float() *
                                     scales.float()[:, g_of]).contiguous()
        expected[lin + ".scale"] = scales.float().t().contiguous()
        check_close(lin, w, expected[lin + ".weight"], scales.t(), group)
    config = {"quant_method": "compressed-tensors", "format": "pack-quantized",
              "config_groups": {"group_0": {
                  "targets": ["Linear"], "input_activations": None, "output_activations": None,
                  "weights": {"num_bits": 4, "type": "int", "symmetric": symmetric,
                              "strategy": "group", "group_size": group, "actorder": None,
                              "dynamic": False, "observer": "minmax"}}},
              "ignore": ["lm_head"], "quantization_status": "compressed"}
    write(out, name, config, tensors, expected)


def pack_quantized_act_order(gen, out, group):
    """llm-compressor's actorder "group": asymmetric groups of `group` columns taken in a random
    (activation) order perm, weight_packed in the original column order and weight_g_idx the group
    of each column; expected is W[:, i] = (q[:, i] - z[:, g[i]]) * s[:, g[i]] from the unpacked
    tensors. One linear [16, 80]: a partial last group of 16 columns."""
    lin, out_f, in_f = "layer.act_order", 16, 80
    w = torch.randn(out_f, in_f, generator=gen) * 0.02
    perm = torch.randperm(in_f, generator=gen)
    groups = (in_f + group - 1) // group
    q = torch.empty(out_f, in_f, dtype=torch.int64)
    scales = torch.empty(out_f, groups, dtype=torch.float16)
    zeros = torch.empty(out_f, groups, dtype=torch.int64)
    for g in range(groups):
        members = perm[g * group:(g + 1) * group]
        cols = w[:, members]
        lo = cols.min(dim=1).values.clamp(max=0)
        hi = cols.max(dim=1).values.clamp(min=0)
        scale = ((hi - lo) / 15).half()
        zero = (torch.round(-lo / scale.float()) - 8).clamp(-8, 7).long()
        q[:, members] = (torch.round(cols / scale.float()[:, None]) +
                         zero[:, None]).clamp(-8, 7).long()
        scales[:, g] = scale
        zeros[:, g] = zero
    g_idx = (torch.arange(in_f, dtype=torch.int32) // group)[torch.argsort(perm)]
    tensors = {lin + ".weight_packed": pack_signed_along(q, 1), lin + ".weight_scale": scales,
               lin + ".weight_zero_point": pack_signed_along(zeros, 0),
               lin + ".weight_g_idx": g_idx.to(torch.int32),
               lin + ".weight_shape": torch.tensor([out_f, in_f], dtype=torch.int64)}
    xq = unpack_signed_along(tensors[lin + ".weight_packed"], 1, in_f)
    zp = unpack_signed_along(tensors[lin + ".weight_zero_point"], 0, out_f)
    g_of = tensors[lin + ".weight_g_idx"].long()
    weight = ((xq - zp[:, g_of]).float() * scales.float()[:, g_of]).contiguous()
    step = scales.float()[:, g_of]
    assert bool(((weight - w).abs() <= step * 0.51 + 1e-6).all()), "act-order packing"
    expected = {lin + ".weight": weight, lin + ".scale": scales.float().t().contiguous()}
    config = {"quant_method": "compressed-tensors", "format": "pack-quantized",
              "config_groups": {"group_0": {
                  "targets": ["Linear"], "input_activations": None, "output_activations": None,
                  "weights": {"num_bits": 4, "type": "int", "symmetric": False,
                              "strategy": "group", "group_size": group, "actorder": "group",
                              "dynamic": False, "observer": "minmax"}}},
              "ignore": ["lm_head"], "quantization_status": "compressed"}
    write(out, "pack_quantized_act_order", config, tensors, expected)


def write(out, name, quantization_config, tensors, expected):
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(
        json.dumps({"quantization_config": quantization_config}, indent=2) + "\n")
    save_file(tensors, str(d / "model.safetensors"))
    save_file(expected, str(d / "expected.safetensors"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests/golden/int4")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(1234)

    # GPTQ v1, group 128, asymmetric, desc_act false; layer.act_order has a permuted g_idx.
    tensors, expected = {}, {}
    for name, out_f, in_f in LINEARS + [("layer.act_order", 8, 256)]:
        w = torch.randn(out_f, in_f, generator=gen) * 0.02
        q, zeros, scales = quantize(w, 128)
        g_idx = torch.arange(in_f, dtype=torch.int32) // 128
        if name == "layer.act_order":
            g_idx = g_idx[torch.randperm(in_f, generator=gen)]
        tensors[name + ".qweight"] = pack_rows_of_8(q.t().contiguous())
        assert zeros.min() >= 1, "GPTQ v1 cannot store a zero point of 0"
        tensors[name + ".qzeros"] = pack_cols_of_8(zeros - 1, list(range(8)))
        tensors[name + ".scales"] = scales
        tensors[name + ".g_idx"] = g_idx
        expected[name + ".weight"] = gptq_dequantize(tensors[name + ".qweight"],
                                                     tensors[name + ".qzeros"], scales, g_idx)
        expected[name + ".scale"] = scales.float()
        if name != "layer.act_order":
            check_close(name, w, expected[name + ".weight"], scales, 128)
    write(args.out, "gptq", {"quant_method": "gptq", "bits": 4, "group_size": 128,
                             "desc_act": False, "sym": False, "checkpoint_format": "gptq"},
          tensors, expected)

    # AWQ GEMM, group 64.
    tensors, expected = {}, {}
    for name, out_f, in_f in LINEARS:
        w = torch.randn(out_f, in_f, generator=gen) * 0.02
        q, zeros, scales = quantize(w, 64)
        tensors[name + ".qweight"] = pack_cols_of_8(q.t().contiguous(), AWQ_ORDER)
        tensors[name + ".qzeros"] = pack_cols_of_8(zeros, AWQ_ORDER)
        tensors[name + ".scales"] = scales
        expected[name + ".weight"] = awq_dequantize(tensors[name + ".qweight"],
                                                    tensors[name + ".qzeros"], scales, 64)
        expected[name + ".scale"] = scales.float()
        check_close(name, w, expected[name + ".weight"], scales, 64)
    write(args.out, "awq", {"quant_method": "awq", "bits": 4, "group_size": 64,
                            "zero_point": True, "version": "gemm"}, tensors, expected)

    # compressed-tensors pack-quantized: asymmetric in groups of 32, symmetric in groups of 128.
    pack_quantized(gen, args.out, "pack_quantized", 32, symmetric=False)
    pack_quantized(gen, args.out, "pack_quantized_sym", 128, symmetric=True)
    # ... with actorder "group" (weight_g_idx), asymmetric in groups of 32.
    pack_quantized_act_order(gen, args.out, 32)


if __name__ == "__main__":
    main()
