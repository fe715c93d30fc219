"""Cheap guards for rules that once spread through the lineage."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

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


# ------------------------------------------------------------------------------ unsafe loaders
# Calls that can run code from a file, by fully qualified name (aliases resolved), each with the
# keyword that makes it safe (None: never safe) and the value that keyword must have.
NEEDS_KEYWORD = {
    "torch.load": ("weights_only", True),
    "torch.serialization.load": ("weights_only", True),
    "torch.hub.load_state_dict_from_url": ("weights_only", True),
    "torch.utils.model_zoo.load_url": ("weights_only", True),
}
NEVER_SAFE = {
    "torch.hub.load": "runs the repository's hubconf.py",
    "pickle.load": "unpickling runs code", "pickle.loads": "unpickling runs code",
    "pickle.Unpickler": "unpickling runs code (subclass it with a restricted find_class)",
    "_pickle.load": "unpickling runs code", "_pickle.loads": "unpickling runs code",
    "cPickle.load": "unpickling runs code", "cPickle.loads": "unpickling runs code",
    "dill.load": "unpickling runs code", "dill.loads": "unpickling runs code",
    "joblib.load": "unpickling runs code", "pandas.read_pickle": "unpickling runs code",
    "marshal.load": "loads code objects", "marshal.loads": "loads code objects",
    "shelve.open": "unpickling runs code", "yaml.unsafe_load": "constructs arbitrary objects",
    "yaml.full_load": "constructs Python objects", "yaml.unsafe_load_all": "constructs arbitrary objects",
    "yaml.full_load_all": "constructs Python objects",
}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader"}


def _import_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> fully qualified name, from every import in the module (any scope)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    aliases[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _qualified_name(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id]] + parts[::-1])


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_loader_calls(source: str) -> list[str]:
    """``line: reason`` for every call in ``source`` that may load a file by running code."""
    tree = ast.parse(source)
    aliases = _import_aliases(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {_qualified_name(b, aliases) for b in node.bases}
            overrides = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if bases & {"pickle.Unpickler", "_pickle.Unpickler"} and "find_class" not in overrides:
                found.append(f"{node.lineno}: {node.name} subclasses pickle.Unpickler without restricting "
                             "find_class")
            continue
        if not isinstance(node, ast.Call):
            continue
        name = _qualified_name(node.func, aliases)
        if name is None:
            continue
        spread = any(k.arg is None for k in node.keywords)
        if name in NEEDS_KEYWORD:
            keyword, wanted = NEEDS_KEYWORD[name]
            value = _keyword(node, keyword)
            if spread or not (isinstance(value, ast.Constant) and value.value is wanted):
                found.append(f"{node.lineno}: {name} without {keyword}={wanted}")
        elif name in NEVER_SAFE:
            found.append(f"{node.lineno}: {name} ({NEVER_SAFE[name]})")
        elif name == "numpy.load":
            value = _keyword(node, "allow_pickle")
            positional = len(node.args) >= 3  # np.load(file, mmap_mode, allow_pickle, ...)
            if spread or positional or (value is not None and not (isinstance(value, ast.Constant)
                                                                    and value.value is False)):
                found.append(f"{node.lineno}: numpy.load with pickles allowed (or not provably refused)")
        elif name in ("yaml.load", "yaml.load_all"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _qualified_name(loader, aliases) not in SAFE_YAML_LOADERS:
                found.append(f"{node.lineno}: {name} without a safe Loader (use yaml.safe_load)")
    return found


@pytest.mark.slow
def test_no_loader_can_run_code_from_a_file():
    offenders = [f"{path.relative_to(REPO)}:{problem}" for path in SOURCES
                 for problem in unsafe_loader_calls(path.read_text())]
    assert not offenders, f"loaders that can run code from a file: {offenders}"


@pytest.mark.parametrize("snippet", [
    "import torch\ntorch.load(path)",
    "import torch\ntorch.load(path, weights_only=False)",
    "import torch\ntorch.load(\n    path,\n    map_location='cpu',\n)",
    "import torch as T\nT.load(path, weights_only=flag)",
    "from torch import load\nload(path)",
    "from torch import load as read_weights\nread_weights(path, **options)",
    "import torch.serialization\ntorch.serialization.load(path)",
    "import torch\ntorch.hub.load_state_dict_from_url(url, map_location='cpu')",
    "from torch.hub import load_state_dict_from_url\nload_state_dict_from_url(url, weights_only=False)",
    "import torch\ntorch.hub.load('owner/repo', 'model')",
    "import numpy as np\nnp.load(path, allow_pickle=True)",
    "import numpy\nnumpy.load(path, None, True)",
    "from numpy import load\nload(path, allow_pickle=allow)",
    "import pickle\npickle.load(f)",
    "import pickle as pkl\npkl.loads(data)",
    "from pickle import Unpickler\nUnpickler(f).load()",
    "import pickle\nclass Loose(pickle.Unpickler):\n    pass",
    "import joblib\njoblib.load(path)",
    "import yaml\nyaml.load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import yaml\nyaml.load(text, yaml.UnsafeLoader)",
    "import yaml\nyaml.load_all(text)",
    "from yaml import full_load\nfull_load(text)",
    "import yaml\nyaml.unsafe_load(text)",
    "import yaml\nyaml.unsafe_load_all(text)",
    "import yaml as y\ny.full_load_all(text)",
    "def f():\n    import torch\n    return torch.load(p)",
])
def test_the_loader_check_catches_every_spelling(snippet):
    assert unsafe_loader_calls(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import torch\ntorch.load(path, map_location='cpu', weights_only=True)",
    "import torch\ntorch.hub.load_state_dict_from_url(url, weights_only=True)",
    "import numpy as np\nnp.load(path)",
    "import numpy as np\nnp.load(path, allow_pickle=False)",
    "import pickle\nclass Strict(pickle.Unpickler):\n    def find_class(self, module, name):\n"
    "        raise pickle.UnpicklingError(name)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "import yaml\nyaml.safe_load(text)",
    "import yaml\nyaml.safe_load_all(text)",
    "import json\njson.load(f)",
    "model.load_state_dict(state)",
])
def test_the_loader_check_accepts_safe_calls(snippet):
    assert not unsafe_loader_calls(snippet), snippet


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
