"""The import graph runs one way (DESIGN.md, "The house"), checked from the source with `ast`.

No module is imported to build the graph, and imports inside functions count as much as those
at the top of a file (a late import still is an edge), as do dynamic imports: a constant name
given to `importlib.import_module`, and, in a module that imports computed names (a lazy
`__getattr__` over a table of module names), every string in it that names a module. Checked:

- no cycle between modules, and none between the packages `act_jax`, `interp`, `hardware`,
  `act_jax_datasets` (the `datasets/` folder), the deploy app aside (`APPS_ON_TOP`);
- `hardware` imports neither `act_jax` (except the deploy app, `hardware.deploy`) nor
  `act_jax_datasets`, nor Hugging Face's `datasets`, nor `interp`;
- `act_jax` imports neither `interp` nor the recorder (`hardware.record`,
  `hardware.recording.recorder`);
- inside `hardware`, each layer imports only layers below it (`LAYERS`); `motors` imports
  nothing above the contracts.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "act_jax": "act_jax",
    "interp": "interp",
    "hardware": "hardware",
    "datasets": "act_jax_datasets",
}  # folder -> import name

# Layers of `hardware`, bottom first: a module may import its own layer and the ranks below.
# The contracts (`Robot`, `Teleoperator`, units, the control loop over those interfaces) are
# what every layer shares; the apps on top join layers.
LAYERS = {
    "contracts": (
        0,
        (
            "hardware",
            "hardware.arguments",
            "hardware.conventions",
            "hardware.robot",
            "hardware.teleop",
            "hardware.control_loop",
        ),
    ),
    "motors": (1, ("hardware.motors",)),
    "cameras": (1, ("hardware.cameras",)),
    "sim": (1, ("hardware.sim",)),
    "arms": (2, ("hardware.arms",)),
    "emulation": (3, ("hardware.emulation",)),
    "recording": (4, ("hardware.recording",)),
    "apps": (
        5,
        (
            "hardware.record",
            "hardware.deploy",
            "hardware.calibrate",
            "hardware.video",
        ),
    ),
}
RECORDER = ("hardware.record", "hardware.recording.recorder")
# Apps that join packages sit above all of them: `hardware.deploy` joins an ACT policy to a robot
# while `act_jax` evaluates in the sim, so its edges are left out of the package graph (its
# module still may not be part of a module cycle).
APPS_ON_TOP = ("hardware.deploy",)


def modules(root: Path) -> dict[str, Path]:
    """{module name: file} for every .py file of the packages under `root`."""
    found = {}
    for folder, name in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")) if (root / folder).is_dir() else ():
            parts = (name,) + path.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names one import statement reaches (`from a import b` -> a and a.b)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: drop `level` trailing parts (one fewer for a package's __init__)
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _is_import_module(node: ast.AST) -> bool:
    f = node.func if isinstance(node, ast.Call) else None
    return (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
        isinstance(f, ast.Name) and f.id in ("import_module", "__import__")
    )


def _dynamic_targets(tree: ast.AST, mods) -> list[str]:
    """Modules reached by `import_module`: constant names, and, where a name is computed, every
    string constant of the module that names one of `mods`."""
    calls = [n for n in ast.walk(tree) if _is_import_module(n) and n.args]
    found = [c.args[0].value for c in calls if isinstance(c.args[0], ast.Constant)]
    if any(not isinstance(c.args[0], ast.Constant) for c in calls):
        found += [
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in mods
        ]
    return [t for t in found if isinstance(t, str)]


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: names it imports}: internal modules resolved, other names kept as written."""
    mods = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        reached = [t for node in ast.walk(tree) for t in _targets(node, name, is_package)]
        for target in reached + _dynamic_targets(tree, mods):
            # `from pkg import sub` reaches the submodule; `from mod import f` the module.
            while target and target not in mods and "." in target:
                target = target.rsplit(".", 1)[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_of(name: str) -> str | None:
    """The `hardware` layer a module belongs to (the most specific prefix), or None."""
    best = None
    for layer, (_, prefixes) in LAYERS.items():
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (layer, len(p))
    return best[0] if best else None


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every broken rule of the module docstring, one line each."""
    bad = [f"module cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    tops = {m.split(".")[0] for m in graph}
    package_graph = {p: set() for p in tops}
    for m, edges in graph.items():
        if m in APPS_ON_TOP:
            continue
        for t in edges:
            if t in graph and t.split(".")[0] != m.split(".")[0]:
                package_graph[m.split(".")[0]].add(t.split(".")[0])
    bad += [f"package cycle: {' -> '.join(c)}" for c in _cycles(package_graph)]
    for m, edges in sorted(graph.items()):
        for t in sorted(edges):
            if m.startswith("hardware"):
                if _under(t, ("act_jax",)) and m != "hardware.deploy":
                    bad.append(f"{m} imports {t}: hardware knows no ACT (only hardware.deploy)")
                if _under(t, ("act_jax_datasets", "datasets")):
                    bad.append(f"{m} imports {t}: hardware never imports datasets")
                if _under(t, ("interp",)):
                    bad.append(f"{m} imports {t}: hardware never imports interp")
                lm, lt = layer_of(m), layer_of(t)
                if lm and lt and lm != lt and LAYERS[lt][0] >= LAYERS[lm][0]:
                    bad.append(f"{m} ({lm}) imports {t} ({lt}): layers import only downwards")
            if m.startswith("act_jax.") or m == "act_jax":
                if _under(t, ("interp",)):
                    bad.append(f"{m} imports {t}: act_jax never imports interp")
                if _under(t, RECORDER):
                    bad.append(f"{m} imports {t}: act_jax never imports the recorder")
    return bad


def test_the_import_graph_runs_one_way():
    graph = import_graph(ROOT)
    assert "hardware.motors.bus" in graph and "act_jax.train" in graph  # the walk found them
    assert "hardware.arms.calibration" in graph["hardware.arms.servo_arm"]
    assert "hardware.sim.robot" in graph["hardware.sim"]  # the lazy exports are edges too
    assert "act_jax.execution" in graph["hardware.deploy"]  # imported inside a function
    assert violations(graph) == []


def test_every_hardware_module_has_a_layer():
    missing = [m for m in import_graph(ROOT) if m.startswith("hardware") and not layer_of(m)]
    assert missing == [], f"add these to LAYERS: {missing}"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_planted_violations(tmp_path):
    _write(
        tmp_path,
        {
            "hardware/__init__.py": "",
            "hardware/motors/__init__.py": "",
            "hardware/motors/bus.py": "def f():\n    from hardware.arms.servo_arm import S\n",
            "hardware/arms/__init__.py": "from . import servo_arm\n",
            "hardware/arms/servo_arm.py": "from hardware.motors import bus\nServoArm = 1\n",
            "hardware/sim/__init__.py": "",
            "hardware/sim/robot.py": "from hardware.sim import scene\n",
            "hardware/sim/scene.py": "from hardware.sim.robot import x\n",
            "hardware/recording/__init__.py": "",
            "hardware/recording/recorder.py": "import act_jax_datasets.episodes\n",
            "act_jax/__init__.py": "",
            "act_jax/data.py": "from hardware.recording import recorder\nimport interp.probe\n",
            "interp/__init__.py": "",
            "interp/probe.py": "from act_jax import data\n",
            "datasets/episodes/__init__.py": "from hardware.recording.recorder import y\n",
        },
    )
    found = "\n".join(violations(import_graph(tmp_path)))
    for expected in (
        "module cycle: hardware.arms.servo_arm -> hardware.motors.bus",
        "module cycle: hardware.sim.robot -> hardware.sim.scene",
        "package cycle: act_jax_datasets -> hardware",
        "package cycle: act_jax -> interp",
        "hardware.motors.bus (motors) imports hardware.arms.servo_arm (arms)",
        "hardware.recording.recorder imports act_jax_datasets.episodes: hardware never imports",
        "act_jax.data imports interp.probe: act_jax never imports interp",
        "act_jax.data imports hardware.recording.recorder: act_jax never imports the recorder",
    ):
        assert expected in found, f"missing {expected!r} in:\n{found}"


def test_dynamic_imports_are_edges_and_hardware_never_imports_interp(tmp_path):
    _write(
        tmp_path,
        {
            "hardware/__init__.py": "",
            "hardware/cameras/__init__.py": (
                "import importlib\n"
                "NAMES = {'a': 'interp.report', 'b': 'hardware.cameras.cv'}\n"
                "def __getattr__(n):\n"
                "    return importlib.import_module(NAMES[n])\n"
            ),
            "hardware/cameras/cv.py": (
                "import importlib\ndef f():\n    importlib.import_module('hardware.sim.robot')\n"
            ),
            "hardware/sim/__init__.py": "",
            "hardware/sim/robot.py": "",
            "interp/__init__.py": "",
            "interp/report.py": "",
        },
    )
    graph = import_graph(tmp_path)
    assert graph["hardware.cameras"] >= {"interp.report", "hardware.cameras.cv"}
    found = "\n".join(violations(graph))
    assert "hardware.cameras imports interp.report: hardware never imports interp" in found
    assert "hardware.cameras.cv (cameras) imports hardware.sim.robot (sim)" in found
