#!/usr/bin/env python3
"""Checks the committed fixtures under tests/golden/ against transformers, independently of
the generator: every model directory is loaded with AutoModelForCausalLM / AutoTokenizer, its
logits and greedy continuations are recomputed, every tokenizer case is re-encoded, and every
RoPE table is recomputed from its config.

    .venv-golden/bin/python scripts/golden/verify_golden.py [--golden DIR] [--tokenizers-only]

--tokenizers-only checks tokenizers/cases.json alone (not the models or RoPE tables) and needs
no torch."""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from transformers import AutoTokenizer  # noqa: E402

LOGIT_TOL = 1e-5  # recorded logits carry 7 significant digits


def verify_tokenizers(golden: Path):
    cases = json.loads((golden / "tokenizers" / "cases.json").read_text())["tokenizers"]
    failures = 0
    for name, entry in cases.items():
        tok = AutoTokenizer.from_pretrained(golden / "tokenizers" / entry.get("dir", name),
                                            **entry.get("load_kwargs", {}))
        for case in entry["cases"]:
            got = {"ids": tok(case["text"], add_special_tokens=False)["input_ids"],
                   "ids_with_special": tok(case["text"])["input_ids"]}
            got["decoded"] = tok.decode(got["ids"])
            bad = [k for k, v in got.items() if v != case[k]]
            if bad:
                failures += 1
                print(f"FAIL tokenizer {name} {case['text']!r}: {bad}")
        print(f"tokenizer {name}: {len(entry['cases'])} cases checked")
    return failures


def verify_model(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    import golden_fp8
    torch.set_grad_enabled(False)
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    golden = json.loads((model_dir / "golden.json").read_text())
    if golden_fp8.is_fp8_checkpoint(model_dir):  # FP8 layers need a GPU: run the dequantized
        model = golden_fp8.load_dequantized(model_dir, torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                     attn_implementation="eager").eval()
    native = None
    if golden["dtype"] != "float32":
        native = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtypes[golden["dtype"]],
                                                      attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    failures = 0
    for i, prompt in enumerate(golden["prompts"]):
        ids = tok(prompt["text"])["input_ids"]
        errors = {"ids": ids != prompt["ids"]}
        logits = model(torch.tensor([prompt["ids"]])).logits[0]
        errors["logits"] = (logits - torch.tensor(prompt["logits"])).abs().max().item() > LOGIT_TOL
        out = model.generate(torch.tensor([prompt["ids"]]), do_sample=False,
                             max_new_tokens=golden["new_tokens"],
                             min_new_tokens=golden["new_tokens"],
                             pad_token_id=golden["eos_token_id"])
        errors["greedy"] = out[0, len(prompt["ids"]):].tolist() != prompt["greedy"]
        if native is not None:
            half = native(torch.tensor([prompt["ids"]])).logits[0].float()
            diff = (half - torch.tensor(prompt["logits_native"])).abs().max().item()
            errors["logits_native"] = diff > 1e-5 * max(1.0, half.abs().max().item())
        for key in (k for k, bad in errors.items() if bad):
            failures += 1
            print(f"FAIL {model_dir.name} prompt {i}: {key}")
    print(f"model {model_dir.name}: {len(golden['prompts'])} prompts checked")
    return failures


def verify_rope(golden: Path):
    """Each case's config.json, loaded by transformers, gives the recorded tables through
    ROPE_INIT_FUNCTIONS (the generator read the model's rotary module instead)."""
    import torch
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    data = json.loads((golden / "rope" / "cases.json").read_text())
    failures = 0
    for case in data["cases"]:
        config = AutoConfig.for_model(**{**data["architectures"][case["arch"]], **case["config"]})
        scaling = getattr(config, "rope_scaling", None) or {}
        rope_type = scaling.get("rope_type", scaling.get("type", "default"))
        inv_freq, scale = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu")
        if inv_freq.tolist() != torch.tensor(case["inv_freq"]).tolist() or \
                scale != case["attention_scaling"]:
            failures += 1
            print(f"FAIL rope {case['name']}")
    print(f"rope: {len(data['cases'])} cases checked")
    return failures


def verify_routing(golden: Path):
    """Each case's stored logits and bias, routed again by its transformers router class, give
    the recorded experts (as sets) and weights."""
    import torch
    import golden_routing
    data = json.loads((golden / "routing" / "cases.json").read_text())
    failures = 0
    specs = {spec[0]: spec for spec in golden_routing.CASES}
    for case in data["cases"]:
        name, kind, fields = specs[case["name"]][:3]
        router = golden_routing._router(kind, fields)
        if case["bias"] is not None:
            router.e_score_correction_bias.copy_(torch.tensor(case["bias"]))
        ids, weights = golden_routing._route(kind, router, torch.tensor(case["logits"]))
        for t in range(ids.shape[0]):
            got = sorted(zip(ids[t].tolist(), weights[t].tolist()))
            if [i for i, _ in got] != case["ids"][t] or \
                    torch.tensor([w for _, w in got]).tolist() != \
                    torch.tensor(case["weights"][t]).tolist():
                failures += 1
                print(f"FAIL routing {name} token {t}")
    print(f"routing: {len(data['cases'])} cases checked")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=Path,
                        default=Path(__file__).resolve().parents[2] / "tests" / "golden")
    parser.add_argument("--tokenizers-only", action="store_true",
                        help="check tokenizers/cases.json only (no torch needed)")
    args = parser.parse_args()
    failures = verify_tokenizers(args.golden)
    if not args.tokenizers_only:
        import torch
        torch.set_num_threads(1)
        failures += verify_rope(args.golden)
        failures += verify_routing(args.golden)
        index = json.loads((args.golden / "models" / "index.json").read_text())
        for entry in index["models"]:
            failures += verify_model(args.golden / entry["path"])
    print("all fixtures reproduce" if not failures else f"{failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
