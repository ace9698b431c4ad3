"""Issue 17: "pocketpack never touches TGWUI's module globals: what the core needs
(tokenizer/counter, model, paths, user) is passed in by the scripts; the cycle is gone; a test
imports every core module with no ``modules.shared`` and no host shared object present."

The edge is ``pocketpack/tgwui.py``, which only ``extensions/*/script.py`` import. The
standalone host (``pocketpack/host/``) keeps its own stand-in for TGWUI's ``modules.shared``
(``pocketpack/host/shared.py``) and may use it, but never the edge (that was the cycle).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pocketpack"
EDGE = "pocketpack.tgwui"
HOST_SHARED = "pocketpack.host.shared"

# Imports every module of the package in a fresh interpreter, core modules first, and records
# for each which of the edge, the host's shared stand-in or TGWUI's ``modules`` it pulled in.
WALK = r"""
import importlib, json, pathlib, sys

assert "modules.shared" not in sys.modules and "pocketpack" not in sys.modules
# module names from the files (pkgutil's walk would import every package before we look)
files = sorted(pathlib.Path("pocketpack").rglob("*.py"))
names = [".".join(f.with_suffix("").parts).removesuffix(".__init__") for f in files]
names = [n for n in names if not n.startswith("pocketpack.host")] + [n for n in names if n.startswith("pocketpack.host")]
watched = ("pocketpack.tgwui", "pocketpack.host.shared")
report = {"pulled": {}, "skipped": {}, "imported": 0, "walked": len(names)}
for name in names:
    if name == "pocketpack.tgwui" or name.endswith(".__main__"):  # the edge itself; __main__ runs the CLI
        continue
    before = set(sys.modules)
    try:
        importlib.import_module(name)
    except ImportError as exc:  # an optional third-party package this machine lacks
        if (exc.name or "").startswith(("pocketpack", "modules")):
            raise
        report["skipped"][name] = str(exc)
        continue
    report["imported"] += 1
    new = [m for m in set(sys.modules) - before if m in watched or m == "modules" or m.startswith("modules.")]
    if new:
        report["pulled"][name] = sorted(new)
        for m in new:  # forget them again, so that the next module that pulls one in is named too
            sys.modules.pop(m, None)
            parent, _, child = m.rpartition(".")
            if parent in sys.modules:
                sys.modules[parent].__dict__.pop(child, None)
print(json.dumps(report))
"""


def _is_host(module: str) -> bool:
    return module == "pocketpack.host" or module.startswith("pocketpack.host.")


def test_importing_any_module_pulls_in_neither_the_edge_nor_tgwuis_globals():
    """In a fresh interpreter with no ``modules.shared``: no core module imports the edge or the
    host's shared stand-in as a side effect, and no module at all imports TGWUI's ``modules``."""
    proc = subprocess.run([sys.executable, "-c", WALK], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    offenders = {}
    for module, pulled in report["pulled"].items():
        allowed = {HOST_SHARED} if _is_host(module) else set()
        bad = [m for m in pulled if m not in allowed]
        if bad:
            offenders[module] = bad
    assert offenders == {}
    assert report["imported"] > 0.9 * report["walked"] > 50, report  # the walk really imported the package


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function (lazy imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def test_only_the_scripts_reach_the_edge_and_the_host_never_does():
    """No module of the package names the edge or TGWUI's ``modules`` (even in a function);
    only the standalone host names its own shared stand-in."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        if module == EDGE:
            continue
        names = _imports(path)
        bad = sorted(n for n in names if n == EDGE or n == "modules" or n.startswith("modules."))
        if not _is_host(module):
            bad += sorted(n for n in names if n == HOST_SHARED)
        if bad:
            offenders[module] = bad
    assert offenders == {}
    scripts = sorted((REPO / "extensions").glob("*/script.py"))
    assert scripts and all(EDGE in _imports(s) for s in scripts)  # each script reads its host through the edge
