#!/usr/bin/env python3
"""Regenerates tests/golden/ — the correctness oracle fixtures — with Hugging Face transformers.

    scripts/golden/setup-venv.sh
    .venv-golden/bin/python scripts/golden/gen_golden.py [--out tests/golden] [--tokenizers-only]

Writes tokenizers/{bpe_qwen,bpe_gpt2,sp,sp_unigram}/, tokenizers/cases.json, models/<name>/
(checkpoint, tokenizer files, golden.json) and models/index.json. --tokenizers-only writes just
the tokenizers and needs no torch. Deterministic: fixed seeds, one thread.
See tests/golden/README.md for the format."""

import os

# Before tokenizers/torch are imported: single-threaded, so results never depend on scheduling.
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse  # noqa: E402
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
MAX_SIZE_KIB = 4882  # "under 5 MB": 5,000,000 bytes


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


def generate_models(out: Path, tok_root: Path):
    import golden_models  # needs torch
    models_root = out / "models"
    if models_root.exists():
        shutil.rmtree(models_root)
    models_root.mkdir(parents=True)
    index = []
    for family in golden_models.families(golden_models.SPECS):
        index += golden_models.generate_family(family, tok_root, models_root, model_versions())
    golden_json.write_json(models_root / "index.json", {**model_versions(), "models": index})


def check_size(out: Path):
    """tests/golden/ must stay under 5 MB as du counts it."""
    du = subprocess.run(["du", "-sk", str(out)], capture_output=True, text=True, check=True)
    kib = int(du.stdout.split()[0])
    print(f"size: {kib / 1024:.2f} MiB (du)")
    if kib >= MAX_SIZE_KIB:
        sys.exit(f"{out} is {kib} KiB, over the {MAX_SIZE_KIB} KiB limit")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "golden")
    parser.add_argument("--tokenizers-only", action="store_true",
                        help="regenerate tokenizers/ only (no torch needed)")
    args = parser.parse_args()
    if transformers.__version__ != EXPECTED_TRANSFORMERS:
        sys.exit(f"transformers {transformers.__version__} found, {EXPECTED_TRANSFORMERS} "
                 "expected: run scripts/golden/setup-venv.sh and use .venv-golden/bin/python")
    start = time.time()
    print("tokenizers:")
    tok_root = generate_tokenizers(args.out)
    if not args.tokenizers_only:
        configure_determinism()
        print("models:")
        generate_models(args.out, tok_root)
    check_size(args.out)
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
