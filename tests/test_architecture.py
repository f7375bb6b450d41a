"""The import contract between stages (docs/architecture.md): allowed arrows only, and only public names across them."""

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "earmark"

# Which stages each stage may import (the CLI modules and the demo at the top level may import anything).
ALLOWED = {
    "audio": set(),
    "engine": set(),
    "nn": set(),
    "training": {"audio", "engine", "nn"},
    "students": {"audio", "engine", "nn"},
    "teachers": {"audio", "engine", "nn", "training"},
    "distill": {"audio", "engine", "nn", "students", "teachers", "training"},
    "export": {"audio", "engine", "nn", "students", "teachers"},
    "runtime": {"audio"},
    "evaluation": {"audio", "engine", "runtime", "export"},
    "adapt": {"audio", "runtime", "evaluation", "engine", "students", "training", "export"},
}


def _cross_stage_imports():
    """(file, line, source stage, target module, names) for every ``from earmark.<other stage>... import`` in a stage."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(alias.name, []) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [(node.module, [alias.name for alias in node.names])]
            else:
                continue
            for module, names in targets:
                bits = module.split(".")
                if bits[0] == "earmark" and len(bits) > 1 and bits[1] != parts[0]:
                    yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", parts[0], module, names


def test_every_stage_is_in_the_table():
    stages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert stages == set(ALLOWED), "a new stage needs its row in ALLOWED and a line in docs/architecture.md"


def test_stages_import_only_along_allowed_arrows():
    forbidden = [f"{where}: {source} -> {module}" for where, source, module, _ in _cross_stage_imports()
                 if module.split(".")[1] not in ALLOWED[source]]
    assert not forbidden, "\n".join(forbidden)


def test_imports_across_stages_take_public_names():
    """A name taken from another stage is in that stage's ``__all__`` or in the ``__all__`` of the module it lives in
    (modules the package cannot import eagerly, such as audio's torch modules, declare their own)."""
    private = []
    for where, _, module, names in _cross_stage_imports():
        package = importlib.import_module(".".join(module.split(".")[:2]))
        owner = importlib.import_module(module)
        public = set(package.__all__) | (set(getattr(owner, "__all__", [])) if owner is not package else set())
        private += [f"{where}: {name} from {module}" for name in names if name not in public]
    assert not private, "not public (add to an __all__, or take another name):\n" + "\n".join(private)


def _imports_of(path: Path, modules: set[str], own: str) -> set[str]:
    """The earmark modules a file imports, at its top or inside functions (a parent package's import left out)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found & modules if m != own and not own.startswith(m + ".")}


def test_no_two_modules_import_each_other():
    """Directly or round a longer loop, also through imports deferred into functions."""
    files = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports_of(path, set(files), name) for name, path in files.items()}
    loops = []
    for start in graph:  # a depth-first walk from every module back to itself
        stack = [(start, (start,))]
        while stack:
            name, trail = stack.pop()
            for target in graph[name]:
                if target == start:
                    loops.append(" -> ".join((*trail, start)))
                elif target not in trail and target > start:  # each loop once, from its smallest module
                    stack.append((target, (*trail, target)))
    assert not loops, "\n".join(loops)
