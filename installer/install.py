#!/usr/bin/env python3
"""Install Pocket Pack into an existing text-generation-webui (TGWUI) checkout.

    python installer/install.py /path/to/text-generation-webui [--dry-run] [--uninstall]
        [--python PATH] [--extras tgwui] [--no-deps] [--enable]

Standard library only: it runs with any Python >= 3.9, before pocketpack is installed.

What it does, and why each way:
- copies each of the pack's extensions (``extensions/<name>/`` holding a ``script.py``) into
  the checkout's ``extensions/``: TGWUI imports those as packages and its updater installs their
  ``requirements.txt``; ``user_data/extensions`` gets neither. Each installed extension gets a
  ``requirements.txt`` naming the pack, so TGWUI's "Install/update extensions requirements"
  reinstalls it;
- installs pocketpack (``pip install <pack>[tgwui]``: only what the pack adds to TGWUI's own
  environment) into TGWUI's Python, ``installer_files/env``, when there is one;
- copies the hardware-tier presets to ``user_data/pocketpack/presets`` (``pocketpack-data/presets``
  in pre-v3.1 checkouts without ``user_data/``), never to TGWUI's sampler presets;
- records every file it wrote, with its sha256, in ``<data dir>/install-manifest.json``, so that
  a second run changes nothing and ``--uninstall`` removes exactly what it installed and keeps
  anything a user added or modified.
It never writes outside the checkout: every target is resolved, and a symlink leading out is
refused before anything changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple

PACK_ROOT = Path(__file__).resolve().parent.parent
TGWUI_MARKERS = ("server.py", "modules/extensions.py", "modules/shared.py")
MANIFEST_FORMAT = "pocketpack-install-manifest"
MANIFEST_VERSION = 1
MANIFEST_NAME = "install-manifest.json"
SKIP_PARTS = {"__pycache__", ".git", ".pytest_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")
# where TGWUI keeps its own interpreter: one-click installer (conda), then portable builds
TGWUI_PYTHONS = (
    "installer_files/env/bin/python",
    "installer_files/env/python.exe",
    "portable_env/bin/python3",
    "portable_env/python.exe",
)
# asks the target Python what it has (one line of JSON), without importing either package
PROBE = """
import importlib.metadata as m, json
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print(json.dumps({"pocketpack": version("pocketpack"), "torch": version("torch")}))
"""
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class InstallError(Exception):
    """A problem the user can fix: printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class UnsafeSettings(Exception):
    """settings.yaml is in a shape this script cannot edit without a YAML library."""


# ----------------------------------------------------------------------------- the checkout


@dataclass
class Checkout:
    root: Path  # resolved
    user_data: Optional[Path]  # None in pre-v3.1 layouts (no user_data/)

    @property
    def data_dir(self) -> Path:
        """The pack's own folder in the user data dir (TGWUI's shared.user_data_dir).

        Before v3.1 the user data dir is the checkout root, which TGWUI has on sys.path: a
        folder named `pocketpack` there would shadow an editable install of the package, so
        the pack's folder gets a name that cannot be imported.
        """
        return self.user_data / "pocketpack" if self.user_data else self.root / "pocketpack-data"

    @property
    def settings(self) -> Path:
        return (self.user_data or self.root) / "settings.yaml"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def path(self, rel: str) -> Path:
        """Checkout path for a manifest-relative path; refuses anything that leads outside."""
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise InstallError(f"refusing path {rel!r}: not inside the checkout", 2)
        path = self.root.joinpath(*pure.parts)
        real = path.resolve()
        if real != self.root and self.root not in real.parents:
            raise InstallError(f"refusing {path}: it is a symlink that leads outside the checkout ({real})", 2)
        return path


def find_checkout(folder: str) -> Checkout:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InstallError(f"{folder} is not a folder", 2)
    root = root.resolve()
    missing = [m for m in TGWUI_MARKERS if not (root / m).is_file()]
    if missing:
        raise InstallError(
            f"{root} is not a text-generation-webui checkout: missing {', '.join(missing)}", 2
        )
    user_data = root / "user_data"
    return Checkout(root, user_data if user_data.is_dir() else None)


# ----------------------------------------------------------------------------- the pack


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def pack_files(folder: Path):
    """Files of a source folder, skipping caches; sorted for stable output."""
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if set(rel.parts) & SKIP_PARTS or path.suffix in SKIP_SUFFIXES or not path.is_file():
            continue
        yield path


def pyproject_text() -> str:
    path = PACK_ROOT / "pyproject.toml"
    if not path.is_file():
        raise InstallError(f"{PACK_ROOT} is not the Pocket Pack repository: no pyproject.toml", 2)
    return path.read_text(encoding="utf-8")


def toml_table(text: str, name: str) -> str:
    """Body of one top-level TOML table (enough for our own pyproject.toml; no tomllib in 3.9)."""
    match = re.search(r"^\[" + re.escape(name) + r"\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


def pack_version(text: str) -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', toml_table(text, "project"), re.M)
    return match.group(1) if match else "unknown"


def pack_extras(text: str) -> List[str]:
    return re.findall(r"^([A-Za-z0-9_.-]+)\s*=\s*\[", toml_table(text, "project.optional-dependencies"), re.M)


def pack_extensions() -> List[Path]:
    folder = PACK_ROOT / "extensions"
    found = sorted(p.parent for p in folder.glob("*/script.py")) if folder.is_dir() else []
    if not found:
        raise InstallError(f"no extensions found in {folder} (folders holding a script.py)")
    return found


def source_digest() -> str:
    """Hash of what `pip install` would install, so an unchanged pack is not reinstalled."""
    h = hashlib.sha256()
    for path in [PACK_ROOT / "pyproject.toml", *pack_files(PACK_ROOT / "pocketpack")]:
        h.update(path.relative_to(PACK_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def requirement(extras: List[str]) -> str:
    """PEP 508 line pointing at this copy of the pack (pip and TGWUI's updater both read it)."""
    suffix = f"[{','.join(extras)}]" if extras else ""
    return f"pocketpack{suffix} @ {PACK_ROOT.as_uri()}"


def requirements_txt(name: str, extras: List[str], version: str, existing: Optional[bytes]) -> bytes:
    lines = [
        f"# Written by Pocket Pack {version}'s installer. TGWUI's updater runs",
        f"# `pip install -r extensions/{name}/requirements.txt --upgrade`, which reinstalls",
        "# the pack from the folder it was installed from:",
        requirement(extras),
    ]
    if existing:
        lines += ["", "# the extension's own requirements:", existing.decode("utf-8").strip()]
    return ("\n".join(lines) + "\n").encode("utf-8")


@dataclass
class Item:
    """One file the pack puts into the checkout."""

    data: bytes
    label: str  # where it comes from, for the output
    source: Optional[Path] = None  # copied file (its permission bits are kept)


def desired_files(co: Checkout, extras: List[str], version: str) -> Tuple[Dict[str, Item], List[str]]:
    """Every file the pack puts in the checkout, by checkout-relative path; plus notes."""
    files: Dict[str, Item] = {}
    notes: List[str] = []
    for ext in pack_extensions():
        target = co.root / "extensions" / ext.name
        own_requirements = None
        for src in pack_files(ext):
            inner = src.relative_to(ext)
            if inner.as_posix() == "requirements.txt":
                own_requirements = src.read_bytes()
                continue
            files[co.rel(target / inner)] = Item(src.read_bytes(), src.relative_to(PACK_ROOT).as_posix(), src)
        files[co.rel(target / "requirements.txt")] = Item(
            requirements_txt(ext.name, extras, version, own_requirements),
            f"pip requirement {requirement(extras)}",
        )
    presets = sorted(p for p in (PACK_ROOT / "presets").glob("*.y*ml") if p.is_file())
    if not presets:
        notes.append("note   this pack has no hardware-tier presets yet (presets/ is empty): none copied")
    for src in presets:
        files[co.rel(co.data_dir / "presets" / src.name)] = Item(src.read_bytes(), src.relative_to(PACK_ROOT).as_posix(), src)
    return files, notes


# ----------------------------------------------------------------------------- the manifest


def manifest_path(co: Checkout) -> Path:
    return co.path(co.rel(co.data_dir / MANIFEST_NAME))


def read_manifest(co: Checkout) -> Optional[dict]:
    path = manifest_path(co)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InstallError(f"cannot read the install manifest {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise InstallError(f"{path} is not a Pocket Pack install manifest")
    if data.get("version") != MANIFEST_VERSION:
        raise InstallError(f"{path} has manifest version {data.get('version')}; this installer reads {MANIFEST_VERSION}")
    return data


def manifest_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------- file operations


def write_atomic(path: Path, data: bytes, mode_from: Optional[Path] = None) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.pocketpack-tmp")
    tmp.write_bytes(data)
    if mode_from is not None:
        os.chmod(tmp, mode_from.stat().st_mode & 0o777)
    os.replace(tmp, path)


def new_dirs(co: Checkout, path: Path) -> List[Path]:
    """Parent folders of path that do not exist yet, outermost first."""
    missing = []
    parent = path.parent
    while parent != co.root and not parent.exists():
        missing.append(parent)
        parent = parent.parent
    return list(reversed(missing))


def remove_empty_dirs(co: Checkout, dirs: List[str], out) -> None:
    """Remove folders the installer created, deepest first, if nothing else lives in them."""
    for rel in sorted(set(dirs), key=lambda r: (r.count("/"), r), reverse=True):
        path = co.path(rel)
        if path.is_symlink() or not path.is_dir():
            continue
        cache = path / "__pycache__"  # written by Python when TGWUI imported the extension
        if cache.is_dir() and not cache.is_symlink() and all(
            p.is_file() and p.suffix in SKIP_SUFFIXES for p in cache.iterdir()
        ):
            for p in cache.iterdir():
                p.unlink()
            cache.rmdir()
        left = sorted(p.name for p in path.iterdir())
        if left:
            out(f"keep   {path}/ (holds files you added or modified: {', '.join(left[:5])})")
        else:
            out(f"rmdir  {path}")
            path.rmdir()


# ----------------------------------------------------------------------------- pip


def choose_python(co: Checkout, explicit: Optional[str]) -> Tuple[str, str]:
    """(interpreter, why): --python wins, then TGWUI's own env, then this interpreter."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise InstallError(f"--python {explicit}: no such file", 2)
        return str(path.absolute()), "given with --python"
    for rel in TGWUI_PYTHONS:
        path = co.root / rel
        if path.is_file():
            return str(path), f"TGWUI's own Python ({rel})"
    return sys.executable, "the Python running this script: no installer_files/env in the checkout; use --python to choose"


def clean_env() -> Dict[str, str]:
    """The environment TGWUI's start scripts give their Python (no user site, no PYTHONPATH)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def probe(python: str) -> Dict[str, Optional[str]]:
    """Versions of pocketpack and torch in the target Python (None: not installed)."""
    try:
        proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, env=clean_env(), timeout=300)
        found = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise InstallError(f"cannot run {python} as a Python: {exc}") from None
    if not isinstance(found, dict):
        raise InstallError(f"cannot run {python} as a Python: {(proc.stderr or proc.stdout).strip()[-200:]}")
    return found


def run_pip(cmd: List[str], out) -> None:
    out(f"run    {shlex.join(cmd)}")
    sys.stdout.flush()
    try:
        code = subprocess.call(cmd, env=clean_env())
    except OSError as exc:
        raise InstallError(f"cannot run {cmd[0]}: {exc}") from None
    if code != 0:
        raise InstallError(f"pip failed (exit code {code}): {shlex.join(cmd)}")


# ----------------------------------------------------------------------------- --enable


SETTINGS_KEY = re.compile(r"^default_extensions\s*:(.*)$")
BLOCK_ITEM = re.compile(r"^([ \t]*)-[ \t]+([A-Za-z0-9_.-]+)[ \t]*$")
FLOW_LIST = re.compile(r"^\[([A-Za-z0-9_.,\- \t]*)\]$")


def parse_default_extensions(text: str) -> Tuple[int, int, List[str], str]:
    """(start, end, names, indent) of the `default_extensions` region, as character offsets.

    Handles the shapes TGWUI itself writes (yaml.dump: block list at column 0, or `[]`) and
    simple flow lists of plain names; anything else raises UnsafeSettings rather than guess.
    Without the key, the region is empty at the end of the file.
    """
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    if any(line.startswith(("---", "...", "{")) for line in lines):
        raise UnsafeSettings("it uses YAML document markers or flow style")
    keys = [i for i, line in enumerate(lines) if SETTINGS_KEY.match(line.rstrip("\r\n"))]
    if not keys:
        return len(text), len(text), [], ""
    if len(keys) > 1:
        raise UnsafeSettings("default_extensions appears more than once")
    i = keys[0]
    rest = SETTINGS_KEY.match(lines[i].rstrip("\r\n")).group(1).strip()
    if rest:
        flow = FLOW_LIST.match(rest)
        if not flow:
            raise UnsafeSettings(f"default_extensions has a value this script cannot edit safely: {rest}")
        names = [n.strip() for n in flow.group(1).split(",") if n.strip()]
        if not all(NAME_RE.match(n) for n in names):
            raise UnsafeSettings("default_extensions lists a name with unexpected characters")
        return offsets[i], offsets[i + 1], names, ""
    names, indents, j = [], set(), i + 1
    while j < len(lines):
        item = BLOCK_ITEM.match(lines[j].rstrip("\r\n"))
        if not item:
            break
        indents.add(item.group(1))
        names.append(item.group(2))
        j += 1
    if len(indents) > 1:
        raise UnsafeSettings("default_extensions items are indented inconsistently")
    for line in lines[j:]:  # what follows must be the next top-level key (or nothing)
        stripped = line.strip()
        if not stripped or line.startswith("#"):
            continue
        if line[0] in " \t-":
            raise UnsafeSettings("default_extensions is followed by lines this script cannot read safely")
        break
    return offsets[i], offsets[j], names, (indents.pop() if indents else "")


def block_region(names: List[str], indent: str, newline: str) -> str:
    if not names:  # a bare `default_extensions:` is null in YAML, and TGWUI iterates it
        return "default_extensions: []" + newline
    return "default_extensions:" + newline + "".join(f"{indent}- {n}{newline}" for n in names)


def plan_enable(co: Checkout, names: List[str]) -> Optional[dict]:
    """The settings.yaml edit that adds `names` to default_extensions; None if all are there."""
    path = co.path(co.rel(co.settings))
    if path.is_symlink():
        raise UnsafeSettings("it is a symlink")
    created = not path.exists()
    text = "" if created else path.read_bytes().decode("utf-8")
    newline = "\r\n" if "\r\n" in text else "\n"
    start, end, current, indent = parse_default_extensions(text)
    added = [n for n in names if n not in current]
    if not added:
        return None
    after = block_region(current + added, indent, newline)
    if start and not text[:start].endswith("\n"):  # appended after a last line with no newline
        after = newline + after
    return {
        "file": co.rel(path),
        "created": created,
        "added": added,
        "before": text[start:end],
        "after": after,
        "new_text": text[:start] + after + text[end:],
    }


def revert_enable(co: Checkout, record: dict) -> Tuple[str, Optional[str]]:
    """(message, new text) undoing an --enable edit; new text None deletes the file.

    The exact region written is put back when it is still there; otherwise (TGWUI rewrote the
    file on "Save UI settings") the pack's names are taken out of the list.
    """
    path = co.path(record["file"])
    if path.is_symlink() or not path.is_file():
        return "", ""
    original = path.read_bytes().decode("utf-8")
    text = original
    if text.count(record["after"]) == 1:
        text = text.replace(record["after"], record["before"])
    try:
        start, end, current, indent = parse_default_extensions(text)
    except UnsafeSettings as exc:
        if text != original:
            return f"edit   {path}: default_extensions restored", text
        return (f"keep   {path}: cannot edit it safely ({exc}); remove "
                f"{', '.join(record['added'])} from default_extensions by hand"), ""
    kept = [n for n in current if n not in record["added"]]
    if kept != current:
        newline = "\r\n" if "\r\n" in text else "\n"
        text = text[:start] + block_region(kept, indent, newline) + text[end:]
    if record["created"] and text.strip() in ("", "default_extensions: []"):
        return f"remove {path} (created by --enable)", None
    if text == original:
        return "", ""
    return f"edit   {path}: removed {', '.join(record['added'])} from default_extensions", text


# ----------------------------------------------------------------------------- install


@dataclass
class Plan:
    """What an install changes, worked out before anything is touched."""

    writes: List[Tuple[str, str]] = field(default_factory=list)  # (rel, "copy" | "update")
    removes: List[str] = field(default_factory=list)  # installed by an older pack, unmodified
    kept: List[str] = field(default_factory=list)  # installed by an older pack, modified
    conflicts: List[str] = field(default_factory=list)
    unchanged: int = 0
    created_dirs: List[str] = field(default_factory=list)


def plan_files(co: Checkout, files: Dict[str, Item], old: Dict[str, str]) -> Plan:
    plan = Plan()
    for rel, item in sorted(files.items()):
        path = co.path(rel)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            plan.conflicts.append(f"{path} exists and is not a plain file")
        elif not path.exists():
            plan.writes.append((rel, "copy"))
            plan.created_dirs += [co.rel(d) for d in new_dirs(co, path) if co.rel(d) not in plan.created_dirs]
        elif sha256_file(path) == sha256_bytes(item.data):
            plan.unchanged += 1
        elif old.get(rel) == sha256_file(path):
            plan.writes.append((rel, "update"))
        elif rel in old:
            plan.conflicts.append(f"{path} was modified since it was installed")
        else:
            plan.conflicts.append(f"{path} already exists and is not the pack's")
    for rel in sorted(set(old) - set(files)):
        path = co.path(rel)
        if path.is_symlink() or not path.is_file():
            continue
        (plan.removes if sha256_file(path) == old[rel] else plan.kept).append(rel)
    return plan


def install(args, out) -> int:
    co = find_checkout(args.checkout)
    text = pyproject_text()
    version = pack_version(text)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    unknown = [e for e in extras if e not in pack_extras(text)]
    if unknown:
        raise InstallError(
            f"unknown extra {', '.join(unknown)}; pyproject.toml defines: {', '.join(pack_extras(text))}", 2
        )
    layout = "user_data/ layout, v3.1 or later" if co.user_data else "no user_data/: layout before v3.1"
    out(f"Pocket Pack {version} from {PACK_ROOT}")
    out(f"into   {co.root} ({layout})" + ("  -- dry run: nothing will be changed" if args.dry_run else ""))

    old = read_manifest(co) or {}
    old_files: Dict[str, str] = old.get("files", {})
    files, notes = desired_files(co, extras, version)
    for note in notes:
        out(note)
    plan = plan_files(co, files, old_files)
    if plan.conflicts:
        for line in plan.conflicts:
            out(f"conflict {line}")
        raise InstallError("nothing changed: move the files above out of the way (or run --uninstall first), then run again")

    # pip, into TGWUI's own Python; skipped when this exact pack is installed there already
    pip_record, pip_cmd = old.get("pip"), None
    if args.no_deps:
        out("skip   pip install (--no-deps): pocketpack must already be importable by TGWUI's Python")
    else:
        python, why = choose_python(co, args.python)
        out(f"python {python} ({why})")
        want = {"python": python, "requirement": requirement(extras), "source_sha256": source_digest()}
        found = probe(python)
        if extras and not found.get("torch"):
            raise InstallError(
                f"{python} has no torch, so pip would pull the default torch wheel from PyPI (gigabytes "
                f"of CUDA libraries) for pocketpack[{','.join(extras)}]: install the torch build for your "
                "hardware into it first, pick another Python with --python, or skip pip with --no-deps"
            )
        if pip_record == want and found.get("pocketpack") == version:
            out(f"same   pocketpack {version} is already installed in that Python")
        else:
            target = f"{PACK_ROOT}[{','.join(extras)}]" if extras else str(PACK_ROOT)
            pip_cmd, pip_record = [python, "-m", "pip", "install", target], want

    # --enable: the pack's extensions in default_extensions, if settings.yaml can be edited safely
    enable, enable_record = None, old.get("enable")
    if args.enable:
        names = [p.name for p in pack_extensions()]
        try:
            enable = plan_enable(co, names)
        except (UnsafeSettings, UnicodeDecodeError) as exc:
            out(f"skip   --enable: {co.settings} cannot be edited safely without a YAML library ({exc}); "
                f"add {', '.join(names)} to default_extensions by hand")
        else:
            if enable is None:
                out(f"same   default_extensions in {co.settings} already lists {', '.join(names)}")
            else:
                if enable_record and enable_record.get("file") == enable["file"]:
                    enable["added"] = sorted(set(enable_record["added"]) | set(enable["added"]))
                    enable["created"] = enable_record["created"] or enable["created"]
                enable_record = {k: v for k, v in enable.items() if k != "new_text"}

    written = {rel for rel, _ in plan.writes}
    mpath = manifest_path(co)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "pack_version": version,
        "pack_source": str(PACK_ROOT),
        "data_dir": co.rel(co.data_dir),
        "files": {
            **{rel: old_files[rel] for rel in plan.kept},
            **{rel: sha256_bytes(item.data) for rel, item in files.items() if rel in written or rel in old_files},
        },
        "dirs": sorted(set(old.get("dirs", [])) | set(plan.created_dirs) | {co.rel(d) for d in new_dirs(co, mpath)}),
        "pip": pip_record,
        "enable": enable_record,
    }
    manifest_changed = not mpath.is_file() or mpath.read_bytes() != manifest_bytes(manifest)
    changes = len(plan.writes) + len(plan.removes) + (pip_cmd is not None) + (enable is not None) + manifest_changed
    if not changes:
        out(f"Nothing to do: Pocket Pack {version} is already installed in {co.root} "
            f"({plan.unchanged} files unchanged).")
        return 0

    if pip_cmd is not None:  # first: if pip fails, the checkout is left as it was
        if args.dry_run:
            out(f"run    {shlex.join(pip_cmd)}")
        else:
            run_pip(pip_cmd, out)
    for rel, verb in plan.writes:
        path, item = co.path(rel), files[rel]
        if item.source is None:
            out(f"{'write' if verb == 'copy' else verb:<6} {path} ({item.label})")
        else:
            out(f"{verb:<6} {item.label} -> {path}")
        if not args.dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, item.data, item.source)
    for rel in plan.removes:
        out(f"remove {co.path(rel)} (no longer part of the pack)")
        if not args.dry_run:
            co.path(rel).unlink()
    for rel in plan.kept:
        out(f"keep   {co.path(rel)} (no longer part of the pack, but you modified it)")
    if enable is not None:
        out(f"{'create' if not co.settings.exists() else 'edit  '} {co.settings}: "
            f"default_extensions += {', '.join(n for n in names if n in enable['added'])}")
        if not args.dry_run:
            co.settings.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(co.path(enable["file"]), enable["new_text"].encode("utf-8"))
    if manifest_changed:
        out(f"write  {mpath} (manifest: {len(manifest['files'])} files with their sha256)")
        if not args.dry_run:
            mpath.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(mpath, manifest_bytes(manifest))

    if args.dry_run:
        out(f"Dry run: {changes} change(s) listed, nothing changed.")
    else:
        names = " ".join(p.name for p in pack_extensions())
        how = "they are in default_extensions, so just start it" if enable_record else f"start it with --extensions {names}"
        out(f"Installed. TGWUI loads the pack from extensions/: {how}.")
        if not enable_record:
            out("Separate the names with spaces: TGWUI takes a comma list "
                "(--extensions memory,rag-enhancer) as one unknown name and silently loads nothing.")
    return 0


# ----------------------------------------------------------------------------- uninstall


def uninstall(args, out) -> int:
    co = find_checkout(args.checkout)
    manifest = read_manifest(co)
    mpath = manifest_path(co)
    if manifest is None:
        out(f"Nothing to uninstall: no Pocket Pack manifest at {mpath}.")
        return 0
    files = {rel: co.path(rel) for rel in manifest.get("files", {})}  # refuses escapes up front
    dirs = [co.path(rel) for rel in manifest.get("dirs", [])]
    out(f"Uninstalling Pocket Pack {manifest.get('pack_version', '?')} from {co.root}"
        + ("  -- dry run: nothing will be changed" if args.dry_run else ""))

    kept = 0
    for rel, path in sorted(files.items()):
        if path.is_symlink() or not path.exists():
            continue
        if not path.is_file() or sha256_file(path) != manifest["files"][rel]:
            out(f"keep   {path} (modified since it was installed)")
            kept += 1
            continue
        out(f"remove {path}")
        if not args.dry_run:
            path.unlink()

    if manifest.get("enable"):
        message, new_text = revert_enable(co, manifest["enable"])
        out(message)
        if message and not args.dry_run and not message.startswith("keep"):
            target = co.path(manifest["enable"]["file"])
            if new_text is None:
                target.unlink()
            else:
                write_atomic(target, new_text.encode("utf-8"))

    out(f"remove {mpath} (manifest)")
    if args.dry_run:
        for path in sorted(dirs, reverse=True):
            out(f"rmdir  {path} (if nothing else is in it)")
    else:
        mpath.unlink()
        remove_empty_dirs(co, manifest.get("dirs", []), out)

    failed = False
    pip = manifest.get("pip")
    if pip and args.no_deps:
        out("skip   pip uninstall pocketpack (--no-deps)")
    elif pip:
        cmd = [pip["python"], "-m", "pip", "uninstall", "-y", "pocketpack"]
        if not Path(pip["python"]).is_file():
            out(f"skip   {shlex.join(cmd)}: that Python no longer exists")
        elif args.dry_run:
            out(f"run    {shlex.join(cmd)}")
        else:
            try:
                run_pip(cmd, out)
            except InstallError as exc:
                out(f"warning: {exc}")
                failed = True

    if args.dry_run:
        out("Dry run: nothing changed.")
    else:
        out("Uninstalled." + (f" Kept {kept} file(s) you modified." if kept else ""))
    return 1 if failed else 0


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="install.py",
        description="Install Pocket Pack's extensions, presets and Python package into a text-generation-webui checkout.",
    )
    parser.add_argument("checkout", help="the text-generation-webui folder (holds server.py)")
    parser.add_argument("--dry-run", action="store_true", help="print every action, change nothing")
    parser.add_argument("--uninstall", action="store_true", help="remove exactly what the installer installed")
    parser.add_argument("--python", help="Python to pip-install pocketpack into (default: TGWUI's installer_files/env)")
    parser.add_argument("--extras", default="tgwui", help="pocketpack extras to install, comma-separated (default: tgwui)")
    parser.add_argument("--no-deps", "--no-pip", dest="no_deps", action="store_true",
                        help="skip the pip step (pocketpack already installed, or installed by hand)")
    parser.add_argument("--enable", action="store_true",
                        help="also add the pack's extensions to default_extensions in settings.yaml")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def out(line: str) -> None:
        if line:
            print(line, flush=True)

    try:
        return uninstall(args, out) if args.uninstall else install(args, out)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
