"""The layers of docs/DESIGN.md hold: no import runs from a lower layer to a higher one.

Every module under imgflow/ and toy/ is parsed with `ast` (nothing is imported), and every import in
it, at module level, inside a function or under `if TYPE_CHECKING:`, is an edge from its module to
the imported one; `importlib.import_module("imgflow.x")` with a literal name counts too, and
`from imgflow import Name` goes through the package's lazy `_EXPORTS` table to the real module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("imgflow", "toy")

#: layer of each module prefix (the longest matching prefix wins); an import may only go to a layer <= its own
LAYERS = {
    # 0: the shared math, and helpers with no imgflow imports that every layer may use
    "imgflow.core": 0,
    "imgflow.files": 0,
    "imgflow.seeding": 0,
    "imgflow.devices": 0,
    # 1: networks and data sources
    "imgflow.nn": 1,
    "imgflow.data": 1,
    # 2: training; the config knows every registry (core, nn, data, the objectives), the factory builds models for
    # the data, a model record (what a checkpoint says about its model) names a backbone and an objective,
    # checkpoints and run folders hold a config and a data spec
    "imgflow.training": 2,
    "imgflow.config": 2,
    "imgflow.factory": 2,
    "imgflow.model_record": 2,
    "imgflow.checkpoint": 2,
    "imgflow.run_folder": 2,
    # the Sampler draws from a model in hand (the trainer's grids too) and builds one from a checkpoint's record:
    # it sits with training, below evaluation
    "imgflow.sampler": 2,
    # image trajectories as GIFs and strips (Samples.save_gif); the shipped pretrained models (Sampler.from_pretrained)
    "imgflow.animation": 2,
    "imgflow.pretrained": 2,
    # latent datasets read an autoencoder's checkpoint and encode a data source; the trainer and the sampler use them
    "imgflow.latents": 2,
    # 3: judging a trained model
    "imgflow.evaluation": 3,
    # 4: what trains and judges (budget comparisons, parity checks, benchmarks)
    "imgflow.experiments": 4,
    # 5: the command lines
    "imgflow.cli": 5,
}

#: the 2-D lab may import only the shared math (and itself)
TOY_MAY_IMPORT = ("toy", "imgflow.core")

#: edges that break the layers today, each with the issue that removes it: (importer, imported)
ALLOWED: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}
    assert "imgflow.core.solvers" in found and "toy.training" in found, f"no modules found under {ROOT}"
    return found


def lazy_exports() -> dict[str, str]:
    """imgflow/__init__.py's `_EXPORTS = {"Name": "imgflow.module", ...}` (what `from imgflow import Name` loads)."""
    tree = ast.parse((ROOT / "imgflow" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def resolve(name: str, known: dict[str, Path]) -> str:
    """The imported module itself, or the nearest package that holds `name` (for `from pkg import function`)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def imports_of(name: str, path: Path, known: dict[str, Path], exports: dict[str, str]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in known:
                    out.add(full)
                elif source == "imgflow" and alias.name in exports:
                    out.add(exports[alias.name])
                else:
                    out.add(source)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called == "import_module":
                out.add(node.args[0].value)
    return {resolve(m, known) for m in out if m.split(".")[0] in PACKAGES} - {""}


def layer(name: str) -> int | None:
    match = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len, default=None)
    return None if match is None else LAYERS[match]


def edges() -> set[tuple[str, str]]:
    known, exports = modules(), lazy_exports()
    return {(name, target) for name, path in known.items() for target in imports_of(name, path, known, exports) if target != name}


def violations() -> list[str]:
    bad = []
    for src, dst in sorted(edges()):
        if src == "imgflow":  # the package's own lazy facade, above every layer
            continue
        if src.startswith("toy"):
            ok = any(dst == p or dst.startswith(p + ".") for p in TOY_MAY_IMPORT)
            if not ok:
                bad.append(f"{src} -> {dst} (toy may import only {', '.join(TOY_MAY_IMPORT)})")
            continue
        a, b = layer(src), layer(dst)
        if a is None or b is None:
            bad.append(f"{src} -> {dst} (no layer for {src if a is None else dst}: add it to LAYERS)")
        elif b > a and (src, dst) not in ALLOWED:
            bad.append(f"{src} (layer {a}) -> {dst} (layer {b})")
    return bad


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    bad = violations()
    assert not bad, "imports against the layers of docs/DESIGN.md:\n  " + "\n  ".join(bad)


def test_every_allowed_exception_still_exists():
    """An allow-list entry whose import is gone must be deleted, so the list only shrinks."""
    stale = sorted(ALLOWED - edges())
    assert not stale, f"allowed edges no longer present (remove them from ALLOWED): {stale}"


def test_the_checker_sees_function_level_relative_and_facade_imports(tmp_path):
    known = {"imgflow.data": Path(), "imgflow.data.parity": Path(), "imgflow.training.trainer": Path(), "imgflow.sampler": Path()}
    src = tmp_path / "parity.py"
    src.write_text("def f():\n    from imgflow.training.trainer import Trainer\n    from . import folder\n"
                   "from imgflow import Sampler\nimport importlib\nimportlib.import_module('imgflow.sampler')\n")
    found = imports_of("imgflow.data.parity", src, known, {"Sampler": "imgflow.sampler"})
    assert found == {"imgflow.training.trainer", "imgflow.data", "imgflow.sampler"}
