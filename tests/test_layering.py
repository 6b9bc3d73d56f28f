"""The layers of docs/architecture.md hold: no import runs from a lower layer to a higher one, and no modules import
each other in a circle.

Every module under imgflow/ and toy/ is parsed with `ast` (nothing is imported), and every import in it, at module
level, inside a function or under `if TYPE_CHECKING:`, is an edge from its module to the imported one;
`importlib.import_module("imgflow.x")` with a literal name counts too, and `from imgflow import Name` goes through the
package's lazy `_EXPORTS` table to the real module. A package's `__init__` is the module that assembles it (it
registers the package's entries), so it sits above the modules it imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("imgflow", "toy")

#: the layers, bottom first: a module may import modules of its own layer or below (the longest matching prefix names
#: a module's layer). Inside one layer the order does not matter, and the no-cycles test keeps it acyclic.
LAYER_ORDER: list[tuple[str, ...]] = [
    # helpers that import nothing of imgflow: errors, files, seeds, devices, the cache protocol, image grids, old config layouts,
    # the shipped config files (recipes: errors only), digests of weights, Hub repos as local folders, the labs' figures
    # and their student/solution versions
    ("imgflow.errors", "imgflow.files", "imgflow.file_locks", "imgflow.sharding", "imgflow.seeding", "imgflow.devices",
     "imgflow.disk_cache", "imgflow.grids", "imgflow.config_migrations", "imgflow.recipes", "imgflow.digests",
     "imgflow.hub", "imgflow.display", "imgflow.lab_versions"),
    # the shared math, with the generic registry and the core's own registries (solvers, schedules, time samplers, ...)
    ("imgflow.core",),
    # the registries of the layers above: leaf modules that hold an entry protocol and an empty registry
    ("imgflow.nn.backbones", "imgflow.data.sources", "imgflow.objectives.base"),
    # networks and data sources, in the order they build on each other
    ("imgflow.nn.embeddings", "imgflow.data.spec"),
    ("imgflow.nn.conditioning", "imgflow.data.images"),
    ("imgflow.nn.unet", "imgflow.data.folder", "imgflow.data.torchvision_sets"),
    ("imgflow.nn.lab_unet", "imgflow.nn.dit", "imgflow.nn.autoencoder", "imgflow.diffusers_vae"),
    # the packages that register the networks and the data sources
    ("imgflow.nn", "imgflow.data"),
    # the graders of the image labs' exercises (networks, the VAE), on the modules they compare with
    ("imgflow.exercises",),
    # objectives (they read the config through a typed view, so they sit below it), then their registering package
    ("imgflow.objectives.flow_matching", "imgflow.objectives.mean_flow", "imgflow.objectives.autoencoder"),
    ("imgflow.objectives.distillation",),
    ("imgflow.objectives",),
    # the configuration: its rules (choices, ranges, fits, keys without effect), then its sections and how they are read
    ("imgflow.config_rules",),
    ("imgflow.config",),
    # what a checkpoint says about its model, then the checkpoint file itself
    ("imgflow.model_record",),
    # a model folder (config.json, weights, card) and its card, read and written below the checkpoint that loads one
    ("imgflow.model_folder", "imgflow.model_card"),
    ("imgflow.checkpoint",),
    # what reads checkpoints: latent codecs and caches, shipped models, run folders; GIFs of image trajectories
    ("imgflow.latents", "imgflow.pretrained", "imgflow.run_folder", "imgflow.animation"),
    # the teacher a distilling objective names (a checkpoint or a shipped model), loaded and checked against the student
    ("imgflow.teacher",),
    # a run resolved once from its config (data spec, codec, model record, network, objective); what a sampler returns
    ("imgflow.resolved_run", "imgflow.samples"),
    ("imgflow.sampler",),
    # a sampler written out as a model folder to ship or share
    ("imgflow.export",),
    # training: its parts, then the loop that assembles them
    ("imgflow.training",),
    ("imgflow.training.trainer",),
    ("imgflow.training.__init__",),
    ("imgflow.evaluation",),
    ("imgflow.experiments",),
    ("imgflow.cli",),
    # `python -m imgflow`: the list of commands and the one that runs
    ("imgflow.__main__",),
]
LAYERS = {prefix: i for i, group in enumerate(LAYER_ORDER) for prefix in group}

#: the 2-D lab may import only the shared math (and itself)
TOY_MAY_IMPORT = ("toy", "imgflow.core")

#: edges that break the layers, each with the reason it is allowed: {(importer, imported): reason}. Empty: keep it so.
ALLOWED: dict[tuple[str, str], str] = {}


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


def is_package(name: str, known: dict[str, Path]) -> bool:
    return known[name].name == "__init__.py" if name in known else False


def layer(name: str, known: dict[str, Path] | None = None) -> int | None:
    """The layer of a module: its longest matching prefix (a package's __init__ may be named 'pkg.__init__')."""
    keys = [name]
    if known is not None and is_package(name, known):
        keys.insert(0, f"{name}.__init__")
    for key in keys:
        match = max((p for p in LAYERS if key == p or key.startswith(p + ".")), key=len, default=None)
        if match is not None:
            return LAYERS[match]
    return None


def edges() -> set[tuple[str, str]]:
    known, exports = modules(), lazy_exports()
    return {(name, target) for name, path in known.items() for target in imports_of(name, path, known, exports) if target != name}


def violations() -> list[str]:
    bad = []
    known = modules()
    for src, dst in sorted(edges()):
        if src == "imgflow":  # the package's own lazy facade, above every layer
            continue
        if src.startswith("toy"):
            ok = any(dst == p or dst.startswith(p + ".") for p in TOY_MAY_IMPORT)
            if not ok:
                bad.append(f"{src} -> {dst} (toy may import only {', '.join(TOY_MAY_IMPORT)})")
            continue
        a, b = layer(src, known), layer(dst, known)
        if a is None or b is None:
            bad.append(f"{src} -> {dst} (no layer for {src if a is None else dst}: add it to LAYER_ORDER)")
        elif b > a and (src, dst) not in ALLOWED:
            bad.append(f"{src} (layer {a}) -> {dst} (layer {b})")
    return bad


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of a directed graph (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for src, dst in edges():
        graph[src].add(dst)
    return graph


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    bad = violations()
    assert not bad, "imports against the layers of docs/architecture.md:\n  " + "\n  ".join(bad)


def test_no_modules_import_each_other_in_a_circle():
    circles = [c for c in strongly_connected(import_graph()) if len(c) > 1]
    assert not circles, "import circles (lazy and TYPE_CHECKING imports count):\n  " + "\n  ".join(" <-> ".join(c) for c in circles)


def test_every_allowed_exception_still_exists_and_says_why():
    """An allow-list entry whose import is gone must be deleted, so the list only shrinks; each names its reason."""
    stale = sorted(set(ALLOWED) - edges())
    assert not stale, f"allowed edges no longer present (remove them from ALLOWED): {stale}"
    assert all(isinstance(why, str) and why.strip() for why in ALLOWED.values()), "every allowed edge needs a reason"


def test_every_module_has_a_layer():
    known = modules()
    missing = sorted(m for m in known if m.startswith("imgflow.") and layer(m, known) is None)
    assert not missing, f"modules with no layer (add them to LAYER_ORDER): {missing}"


def test_the_checker_sees_function_level_relative_and_facade_imports(tmp_path):
    known = {"imgflow.data": Path(), "imgflow.data.parity": Path(), "imgflow.training.trainer": Path(), "imgflow.sampler": Path()}
    src = tmp_path / "parity.py"
    src.write_text("def f():\n    from imgflow.training.trainer import Trainer\n    from . import folder\n"
                   "from imgflow import Sampler\nimport importlib\nimportlib.import_module('imgflow.sampler')\n")
    found = imports_of("imgflow.data.parity", src, known, {"Sampler": "imgflow.sampler"})
    assert found == {"imgflow.training.trainer", "imgflow.data", "imgflow.sampler"}


def test_the_checker_finds_a_circle_through_a_lazy_import_and_an_upward_edge():
    """The two checks can fail: a circle of three (one edge lazy, as the parser sees any import) and a registry that
    imports a network above it, the shapes of the circles this suite was written to remove."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert [c for c in strongly_connected(graph) if len(c) > 1] == [["a", "b", "c"]]
    known = {"imgflow.nn.backbones": Path("backbones.py"), "imgflow.nn.dit": Path("dit.py")}
    assert layer("imgflow.nn.dit", known) > layer("imgflow.nn.backbones", known)
    assert layer("imgflow.training.trainer") > layer("imgflow.training.batches") > layer("imgflow.sampler") > layer("imgflow.config")
