"""JSON output shared by the fixture generators (no torch, so the tokenizer fixtures can be
regenerated without it)."""

import json
import re
from pathlib import Path


def write_json(path, obj, compact=False):
    """compact: one line. Otherwise indented, with lists of ints kept on one line."""
    if compact:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    else:
        text = re.sub(r"\[[-\d,\s]*\]", lambda m: re.sub(r"\s+", "", m.group(0)),
                      json.dumps(obj, ensure_ascii=False, indent=1))
        if json.loads(text) != obj:
            raise RuntimeError(f"{path}: compacting the JSON changed its content")
    Path(path).write_text(text + "\n", encoding="utf-8")
