#!/usr/bin/env python3
"""Regenerates tests/golden/ — the correctness oracle fixtures — with Hugging Face transformers.

    scripts/golden/setup-venv.sh
    .venv-golden/bin/python scripts/golden/gen_golden.py [--out tests/golden]
        [--tokenizers-only | --only NAME ...]

Writes tokenizers/{bpe_qwen,bpe_gpt2,sp,sp_unigram}/, tokenizers/cases.json, models/<name>/
(checkpoint, tokenizer files, golden.json), models/index.json, rope/cases.json and
routing/cases.json.
Deterministic: fixed seeds, one thread. --tokenizers-only writes just the tokenizers and needs
no torch. --only regenerates just the named models (with the other models of their families),
rope/cases.json and routing/cases.json, reusing the committed tokenizers and keeping every other
entry of index.json.
See tests/golden/README.md for the format."""

import os

# Before tokenizers/torch are imported: single-threaded, so results never depend on scheduling.
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import sentencepiece  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402

import golden_json  # noqa: E402
import golden_tokenizers  # noqa: E402

EXPECTED_TRANSFORMERS = "4.57.6"
REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_SIZE_KIB = 12288  # "under 12 MiB": 12,582,912 bytes


def configure_determinism():
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)


def tokenizer_versions():
    return {"transformers_version": transformers.__version__,
            "tokenizers_version": tokenizers.__version__,
            "sentencepiece_version": sentencepiece.__version__}


def model_versions():
    import torch
    return {"transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "tokenizers_version": tokenizers.__version__}


def generate_tokenizers(out: Path):
    tok_root = out / "tokenizers"
    golden_tokenizers.build_all(tok_root)
    cases, dropped = golden_tokenizers.build_cases(tok_root)
    for d in dropped:
        print(f"  sp: dropped {d['text']!r}: transformers {d['hf_ids']} "
              f"vs sentencepiece {d['sentencepiece_ids']}")
    cases["sp"]["dropped"] = dropped
    golden_json.write_json(tok_root / "cases.json", {**tokenizer_versions(), "tokenizers": cases})
    for name, entry in cases.items():
        print(f"  {name}: {entry['hf_class']}, vocab {entry['vocab_size']}, "
              f"{len(entry['cases'])} cases")
    return tok_root


def generate_models(out: Path, tok_root: Path, only=None):
    """Every model, or (only) the families of the named models, merged into index.json."""
    import golden_models  # needs torch
    models_root = out / "models"
    versions = model_versions()
    index = {}
    if only:
        known = {spec.name for spec in golden_models.SPECS}
        if not set(only) <= known:
            sys.exit(f"unknown models {sorted(set(only) - known)}; known: {sorted(known)}")
        previous = json.loads((models_root / "index.json").read_text())
        if {k: previous[k] for k in versions} != versions:
            sys.exit("index.json was written by other versions: regenerate everything")
        index = {entry["name"]: entry for entry in previous["models"]}
    elif models_root.exists():
        shutil.rmtree(models_root)
    models_root.mkdir(parents=True, exist_ok=True)
    for family in golden_models.families(golden_models.SPECS):
        if only and not any(spec.name in only for spec in family):
            continue
        for entry in golden_models.generate_family(family, tok_root, models_root, versions):
            index[entry["name"]] = entry
    order = [spec.name for spec in golden_models.SPECS]
    models = sorted(index.values(), key=lambda e: order.index(e["name"]))
    golden_json.write_json(models_root / "index.json", {**versions, "models": models})


def generate_rope(out: Path):
    import golden_rope  # needs torch
    rope = golden_rope.build_cases()
    (out / "rope").mkdir(parents=True, exist_ok=True)
    golden_json.write_json(out / "rope" / "cases.json", {**model_versions(), **rope},
                           compact=True)
    print(f"  {len(rope['cases'])} cases")


def generate_routing(out: Path):
    import golden_routing  # needs torch
    routing = golden_routing.build_cases()
    (out / "routing").mkdir(parents=True, exist_ok=True)
    golden_json.write_json(out / "routing" / "cases.json", {**model_versions(), **routing},
                           compact=True)
    print(f"  {len(routing['cases'])} cases")


def check_size(out: Path):
    """tests/golden/ must stay under 12 MiB as du counts it."""
    du = subprocess.run(["du", "-sk", str(out)], capture_output=True, text=True, check=True)
    kib = int(du.stdout.split()[0])
    print(f"size: {kib / 1024:.2f} MiB (du)")
    if kib >= MAX_SIZE_KIB:
        sys.exit(f"{out} is {kib} KiB, over the {MAX_SIZE_KIB} KiB limit")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "golden")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--tokenizers-only", action="store_true",
                       help="regenerate tokenizers/ only (no torch needed)")
    which.add_argument("--only", nargs="+", metavar="NAME",
                       help="regenerate only these models (and the RoPE and router cases); the "
                            "tokenizers are not rewritten")
    args = parser.parse_args()
    if transformers.__version__ != EXPECTED_TRANSFORMERS:
        sys.exit(f"transformers {transformers.__version__} found, {EXPECTED_TRANSFORMERS} "
                 "expected: run scripts/golden/setup-venv.sh and use .venv-golden/bin/python")
    start = time.time()
    if args.only:
        tok_root = args.out / "tokenizers"
    else:
        print("tokenizers:")
        tok_root = generate_tokenizers(args.out)
    if not args.tokenizers_only:
        configure_determinism()
        print("models:")
        generate_models(args.out, tok_root, args.only)
        print("rope tables:")
        generate_rope(args.out)
        print("routers:")
        generate_routing(args.out)
    check_size(args.out)
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
