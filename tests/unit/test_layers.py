"""The import graph of the package (docs/architecture.md): no import goes up a floor, no module imports
itself round a cycle, and covidct's own imports are at the top of the file."""

from __future__ import annotations

import ast
from pathlib import Path

import covidct

SRC = Path(covidct.__file__).parent

#: Each part of the package and its floor: an import may only go to a lower floor or stay in its part.
FLOORS = {
    **dict.fromkeys(
        (
            "__init__",
            "errors",
            "config",
            "io",
            "hounsfield",
            "volume",
            "figures",
            "runtime",
            "split",
            "sheet",
            "forked",
        ),
        0,
    ),
    "dicom": 1,
    "modelcard": 1,
    "deid": 2,
    "lungs": 2,
    "severity": 3,
    "infection": 3,
    "evaluation": 4,
    "report": 5,
    "clinical": 5,
    "models": 6,
    "demo": 6,
    **dict.fromkeys(("steps", "cli", "smk", "testing"), 7),
}


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, list[tuple[str, bool]]]:
    """Each module's imports of covidct modules: (module, at the top of the file)."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "covidct":
                names = [f"{node.module}.{a.name}" for a in node.names]
                targets = [n for n in names if (SRC.parent / n.replace(".", "/")).with_suffix(".py").exists()]
                found += [(t, node.col_offset == 0) for t in targets or [node.module]]
            elif isinstance(node, ast.Import):
                found += [(a.name, node.col_offset == 0) for a in node.names if a.name.startswith("covidct")]
        out[_module(path)] = found
    return out


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_goes_up_a_floor():
    upward = [
        (module, target)
        for module, targets in _imports().items()
        for target, _ in targets
        if _part(module) != _part(target) and FLOORS[_part(target)] > FLOORS[_part(module)]
    ]
    assert set(FLOORS) >= {_part(m) for m in _imports()}, "a new part of the package needs its floor"
    assert not upward, upward


def test_no_module_import_cycle():
    graph = {m: {t for t, top in ts if top and t != m} for m, ts in _imports().items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, " -> ".join(path + [node, nxt])
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_own_imports_are_at_the_top():
    inside = [(m, t) for m, ts in _imports().items() for t, top in ts if not top]
    # the infection U-Net's modules are another branch's to move (their import lines only changed here)
    assert [(m, t) for m, t in inside if not m.startswith("covidct.infection")] == []
