#!/usr/bin/env python3
"""Prints the ten slowest tests found in the JUnit XML files of the given directories (ctest's
--output-junit and pytest's --junitxml), so that CI shows where its time goes.

Usage: slowest-tests.py DIR [DIR...]
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def cases(directory):
    for path in sorted(Path(directory).glob("*.xml")):
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            print(f"slowest-tests: skipping {path}: {e}", file=sys.stderr)
            continue
        for case in root.iter("testcase"):
            name = case.get("name", "?")
            if case.get("classname") and path.name.startswith("pytest"):
                name = f"{case.get('classname')}::{name}"
            yield float(case.get("time", 0) or 0), f"{Path(directory).parent.name}/{path.stem}", name


def main(dirs):
    found = [c for d in dirs if Path(d).is_dir() for c in cases(d)]
    if not found:
        return
    print("=== ten slowest tests ===")
    for seconds, source, name in sorted(found, reverse=True)[:10]:
        print(f"  {seconds:8.1f}s  {source:28}  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
