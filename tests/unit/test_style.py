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


def _project_imports() -> dict[str, set[str]]:
    """Module name -> the project modules it imports (at any depth of the file: lazy imports count)."""
    names = {p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__"): p
             for p in SOURCES if "bench" not in p.parts}
    graph = {}
    for name, path in names.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    module = f"{base}.{module}" if module else base
                # "from package import submodule" imports the submodule, not the package's names.
                submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in names]
                candidates = submodules or [module]
            else:
                continue
            imported |= {c for c in candidates if c in names and c != name}
        graph[name] = imported
    return graph


def test_no_import_cycle_among_the_project_modules():
    graph = _project_imports()
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                cycles.append(stack[stack.index(child):] + [child])
            elif child not in state:
                visit(child, stack + [child])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles}"


def test_no_library_module_imports_a_script():
    scripts = {p.stem for p in SCRIPTS}
    library = [name for name in _project_imports() if name.split(".")[0] not in scripts]
    graph = _project_imports()
    offenders = {name: sorted(graph[name] & scripts) for name in library if graph[name] & scripts}
    assert not offenders, f"library modules importing command-line scripts: {offenders}"
