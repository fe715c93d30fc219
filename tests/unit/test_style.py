"""Cheap guards for rules that once spread through the lineage."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for p in REPO.rglob("*.py") if ".venv" not in p.parts and "tests" not in p.parts)
SCRIPTS = sorted(p for p in REPO.glob("*.py") if "__main__" in p.read_text())


def test_no_hard_coded_cuda_calls():
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in SOURCES
                 for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\.cuda\(", line)]
    assert not offenders, f"use .to(device) instead of .cuda(): {offenders}"


def test_every_script_has_main_with_argv():
    assert SCRIPTS, "no scripts found"
    for path in SCRIPTS:
        tree = ast.parse(path.read_text())
        mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
        assert mains, f"{path.name} has no main()"
        args = mains[0].args
        assert [a.arg for a in args.args] == ["argv"] and len(args.defaults) == 1, \
            f"{path.name}: main must take argv=None so tests can run it in-process"


def test_checkpoints_are_loaded_weights_only():
    offenders = []
    for path in SOURCES:
        for match in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
            if "weights_only=True" not in match.group(1):
                offenders.append(path.name)
    assert not offenders, f"torch.load without weights_only=True in {offenders}"
