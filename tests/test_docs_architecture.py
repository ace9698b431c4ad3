"""Issue 17: "`docs/architecture.md` ... and the architecture page matches the tree."

Every module the architecture page and the extension guide name must exist, so a rename or a
removal that forgets the docs fails here: ``pocketpack.x.y`` names (down to the class, function
or constant they end in), ``pocketpack/x/y.py`` paths, and in the architecture page every bare
``name.py`` of its picture. Read from the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "docs" / "architecture.md", ROOT / "docs" / "extensions.md"]
DOTTED = re.compile(r"(?<![\w.])pocketpack(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w/.])(?:pocketpack|extensions|tests|docs)/[\w./-]*")
BARE_PY = re.compile(r"(?<![\w/.])(\w+\.py)\b")


@lru_cache(maxsize=None)
def _names(module_file: Path) -> dict[str, set[str]]:
    """Top-level names of a module (defs, classes, assignments, imports) -> the names each
    class defines in its body ('' holds the module's own)."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    names: dict[str, set[str]] = {"": set()}

    def bound(node) -> list[str]:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return [node.name]
        if isinstance(node, ast.Assign):
            return [t.id for t in node.targets if isinstance(t, ast.Name)]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            return [node.target.id]
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            return [(a.asname or a.name).split(".")[0] for a in node.names]
        return []

    for node in tree.body:
        for name in bound(node):
            names[""].add(name)
        if isinstance(node, ast.ClassDef):
            names[node.name] = {n for item in node.body for n in bound(item)}
    return names


def _module_file(parts: list[str]) -> Path | None:
    base = ROOT.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def missing_dotted(name: str) -> str | None:
    """Why ``pocketpack.a.b.C.d`` does not exist in the tree, or None when it does."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(parts[:cut])
        if module is None:
            continue
        rest = parts[cut:]
        if not rest:
            return None
        names = _names(module)
        if rest[0] not in names[""]:
            return f"{'.'.join(parts[:cut])} has no {rest[0]}"
        if len(rest) == 1 or rest[0] not in names:  # an attribute of a non-class is not checked
            return None
        return None if rest[1] in names[rest[0]] else f"{'.'.join(parts[:cut + 1])} has no {rest[1]}"
    return "no such module"


def problems(text: str, *, bare_files: bool) -> list[str]:
    found = []
    for name in sorted(set(DOTTED.findall(text))):
        why = missing_dotted(name)
        if why:
            found.append(f"{name}: {why}")
    for path in sorted(set(PATH.findall(text))):
        path = path.rstrip(".")
        if not (ROOT / path).exists():
            found.append(f"{path}: no such file or folder")
    if bare_files:
        known = {p.name for folder in ("pocketpack", "extensions", "tests") for p in (ROOT / folder).rglob("*.py")}
        for name in sorted(set(BARE_PY.findall(text)) - known):
            found.append(f"{name}: no such file in pocketpack/, extensions/ or tests/")
    return found


def test_every_module_the_docs_name_exists():
    wrong = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        # the picture's FILES box names paths below user_data/, not the source tree
        text = re.sub(r"\| FILES under user_data/.*?\+-+\+", "", text, flags=re.S)
        # extensions.md also quotes TGWUI's own tree (modules/..., extensions/openai): only our paths there
        text_paths = text if page.name == "architecture.md" else "\n".join(
            line for line in text.splitlines() if "extensions/openai" not in line)
        wrong += [f"{page.name}: {p}" for p in problems(text_paths, bare_files=page.name == "architecture.md")]
    assert not wrong, "\n".join(wrong)


def test_the_check_notices_a_module_that_is_gone():
    """The check itself is not vacuous: names that do not exist are reported, real ones not."""
    text = ("`pocketpack.memory.turns.MemoryTurns`, `pocketpack.memory.turnz`, `pocketpack.compose.no_such`, "
            "`pocketpack.rag.extension.RagEngine.no_such_method`, `pocketpack/gone.py`, and scrap.py")
    assert problems(text, bare_files=True) == [
        "pocketpack.compose.no_such: pocketpack.compose has no no_such",
        "pocketpack.memory.turnz: pocketpack.memory has no turnz",
        "pocketpack.rag.extension.RagEngine.no_such_method: pocketpack.rag.extension.RagEngine has no no_such_method",
        "pocketpack/gone.py: no such file or folder",
        "scrap.py: no such file in pocketpack/, extensions/ or tests/",
    ]


def test_the_architecture_page_draws_every_engine_and_layer():
    """The picture a newcomer draws: host, edge, engines, core and files, each engine by name."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    picture = text.split("```")[1]
    assert picture.isascii(), "the diagram must render in any viewer: ASCII only"
    for word in ("HOST", "EDGE", "ENGINES", "CORE", "user_data/", "MemoryTurns", "RagEngine", "AdapterEngine",
                 "VramEngine", "extensions/<name>/script.py", "pocketpack.tgwui"):
        assert word in picture, word
