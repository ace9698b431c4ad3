"""installer/install.py on text-generation-webui-shaped trees built here.

The installer runs as a subprocess, as a user runs it. Trees follow TGWUI's layouts: the
current one (user_data/, v3.1+), the one before v3.1 (settings and sampler presets at the top
level), and a one-click install whose `installer_files/env/bin/python` is a fake interpreter
that records its argv, so the pip command can be checked without installing anything.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent
INSTALLER = REPO / "installer" / "install.py"
PACK_EXTENSIONS = ["adapter-switcher", "memory", "rag-enhancer", "vram-advisor"]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


# ----------------------------------------------------------------------------- helpers


def make_tgwui(root: Path, layout: str = "current") -> Path:
    """A TGWUI-shaped checkout: the files the installer recognises plus some user data."""
    (root / "modules").mkdir(parents=True)
    (root / "server.py").write_text("# TGWUI\n")
    (root / "modules" / "extensions.py").write_text("# TGWUI\n")
    (root / "modules" / "shared.py").write_text("# TGWUI\n")
    (root / "extensions" / "gallery").mkdir(parents=True)
    (root / "extensions" / "gallery" / "script.py").write_text("params = {}\n")
    data = root / "user_data" if layout == "current" else root
    (data / "presets").mkdir(parents=True)  # TGWUI's *sampler* presets
    (data / "presets" / "Top-P.yaml").write_text("temperature: 1\ntop_p: 0.9\n")
    (data / "characters").mkdir()
    (data / "characters" / "Assistant.yaml").write_text("name: AI\n")
    if layout == "current":
        (data / "extensions" / "my_ext").mkdir(parents=True)
        (data / "extensions" / "my_ext" / "script.py").write_text("params = {}\n")
    return root


def make_fake_python(root: Path, record: Path, torch: str | None = "2.13.0", pip_exit: int = 0) -> Path:
    """installer_files/env/bin/python that logs its argv (JSON lines) to `record`.

    It remembers a `pip install` so that the installer's probe ("which pocketpack and torch
    do you have?") answers the way a real interpreter would afterwards.
    """
    python = root / "installer_files" / "env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    state = record.with_suffix(".installed")
    python.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib, sys\n"
        f"record, state = pathlib.Path({str(record)!r}), pathlib.Path({str(state)!r})\n"
        "args = sys.argv[1:]\n"
        "with record.open('a') as f:\n"
        "    f.write(json.dumps(args) + '\\n')\n"
        f"if args[:2] == ['-m', 'pip'] and {pip_exit}:\n"
        f"    sys.exit({pip_exit})\n"
        "if args[:3] == ['-m', 'pip', 'install']:\n"
        f"    state.write_text({VERSION!r})\n"
        "elif args[:3] == ['-m', 'pip', 'uninstall'] and state.exists():\n"
        "    state.unlink()\n"
        "elif args[:1] == ['-c']:\n"
        "    pocketpack = state.read_text() if state.exists() else None\n"
        f"    print(json.dumps({{'pocketpack': pocketpack, 'torch': {torch!r}}}))\n"
    )
    python.chmod(0o755)
    return python


def calls(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def pip_calls(record: Path) -> list[list[str]]:
    return [c for c in calls(record) if c[:2] == ["-m", "pip"]]


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root: sha256 for files, markers for folders and links."""
    tree = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            tree[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            tree[rel] = "dir"
        else:
            tree[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


# Safety net: should the installer ever reach a real pip here, it installs and downloads nothing.
SAFE_ENV = {**os.environ, "PIP_DRY_RUN": "1", "PIP_NO_INDEX": "1"}


def run(*args, installer: Path = INSTALLER, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, str(installer), *map(str, args)], capture_output=True, text=True, timeout=120, env=SAFE_ENV
    )


def installed_ok(*args, **kwargs) -> subprocess.CompletedProcess:
    proc = run(*args, **kwargs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def manifest_of(root: Path, data_dir: str = "user_data/pocketpack") -> dict:
    return json.loads((root / data_dir / "install-manifest.json").read_text())


def repo_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


# ----------------------------------------------------------------------------- installing


def test_extensions_land_in_extensions_folder_with_manifest(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    proc = installed_ok(tg, "--no-deps")

    for name in PACK_EXTENSIONS:
        for src in repo_files(REPO / "extensions" / name):
            dest = tg / "extensions" / name / src.relative_to(REPO / "extensions" / name)
            assert dest.read_bytes() == src.read_bytes()
        assert not (tg / "user_data" / "extensions" / name).exists()
        requirements = (tg / "extensions" / name / "requirements.txt").read_text()
        assert f"pocketpack[tgwui] @ {REPO.as_uri()}" in requirements.splitlines()
        assert f"copy   extensions/{name}/script.py -> {tg / 'extensions' / name / 'script.py'}" in proc.stdout

    manifest = manifest_of(tg)
    assert manifest["pack_version"] == VERSION
    assert set(manifest["files"]) >= {f"extensions/{n}/script.py" for n in PACK_EXTENSIONS}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((tg / rel).read_bytes()).hexdigest() == digest


def test_the_last_lines_say_to_separate_extension_names_with_spaces(tmp_path):
    """Real TGWUI takes a comma list as one unknown name and silently loads nothing."""
    proc = installed_ok(make_tgwui(tmp_path / "tgwui"), "--no-deps")
    last = proc.stdout.strip().splitlines()[-2:]
    assert last[0].startswith(
        "Installed. TGWUI loads the pack from extensions/: start it with --extensions adapter-switcher memory")
    assert "spaces" in last[1] and "--extensions memory,rag-enhancer" in last[1] and "silently" in last[1]


def test_presets_go_to_the_pack_folder_never_to_sampler_presets(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    sampler_presets = snapshot(tg / "user_data" / "presets")
    installed_ok(tg, "--no-deps")

    assert snapshot(tg / "user_data" / "presets") == sampler_presets
    for src in sorted((REPO / "presets").glob("*.yaml")):
        assert (tg / "user_data" / "pocketpack" / "presets" / src.name).read_bytes() == src.read_bytes()


def test_layout_before_v3_1_without_user_data(tmp_path):
    tg = make_tgwui(tmp_path / "old", layout="pre-3.1")
    sampler_presets = snapshot(tg / "presets")
    proc = installed_ok(tg, "--no-deps")

    assert "before v3.1" in proc.stdout
    assert not (tg / "user_data").exists()
    assert snapshot(tg / "presets") == sampler_presets
    assert (tg / "pocketpack-data" / "install-manifest.json").is_file()
    # TGWUI runs from the checkout root, on sys.path: a `pocketpack` folder there would shadow
    # an editable install of the package
    assert not (tg / "pocketpack").exists()
    for name in PACK_EXTENSIONS:
        assert (tg / "extensions" / name / "script.py").is_file()


def test_dry_run_changes_nothing_and_lists_every_action(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    record = tmp_path / "argv.jsonl"
    make_fake_python(tg, record)
    before = snapshot(tg)

    proc = installed_ok(tg, "--dry-run", "--enable")

    assert snapshot(tg) == before
    assert pip_calls(record) == []
    for name in PACK_EXTENSIONS:
        assert f"extensions/{name}/script.py -> " in proc.stdout
        assert f"{tg / 'extensions' / name / 'requirements.txt'}" in proc.stdout
    assert "-m pip install" in proc.stdout
    assert "settings.yaml: default_extensions +=" in proc.stdout
    assert "nothing changed" in proc.stdout


def test_second_run_is_a_no_op(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    record = tmp_path / "argv.jsonl"
    make_fake_python(tg, record)
    installed_ok(tg, "--enable")
    after_first = snapshot(tg)

    proc = installed_ok(tg, "--enable")

    assert snapshot(tg) == after_first
    assert "Nothing to do" in proc.stdout
    assert len([c for c in pip_calls(record) if c[2] == "install"]) == 1


def test_pip_uses_tgwui_env_python_and_the_tgwui_extra(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    record = tmp_path / "argv.jsonl"
    python = make_fake_python(tg, record)

    proc = installed_ok(tg)

    assert pip_calls(record) == [["-m", "pip", "install", f"{REPO}[tgwui]"]]
    assert "run    " + shlex.join([str(python), "-m", "pip", "install", f"{REPO}[tgwui]"]) in proc.stdout
    assert manifest_of(tg)["pip"]["python"] == str(python)

    installed_ok(tg, "--uninstall")
    assert pip_calls(record)[-1] == ["-m", "pip", "uninstall", "-y", "pocketpack"]


def test_python_option_is_used_when_tgwui_has_no_env(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    record = tmp_path / "argv.jsonl"
    elsewhere = make_fake_python(tmp_path / "other", record)

    installed_ok(tg, "--python", elsewhere, "--extras", "")

    assert pip_calls(record) == [["-m", "pip", "install", str(REPO)]]


def test_unknown_extra_is_refused(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    before = snapshot(tg)
    proc = run(tg, "--extras", "nope", "--no-deps")
    assert proc.returncode == 2
    assert "unknown extra nope" in proc.stderr and "tgwui" in proc.stderr
    assert snapshot(tg) == before


def test_python_without_torch_is_refused_before_pip_pulls_cuda_torch(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    record = tmp_path / "argv.jsonl"
    make_fake_python(tg, record, torch=None)
    before = snapshot(tg)

    proc = run(tg)

    assert proc.returncode == 1
    assert "has no torch" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert pip_calls(record) == []
    assert snapshot(tg) == before


def test_failed_pip_leaves_the_checkout_unchanged(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    make_fake_python(tg, tmp_path / "argv.jsonl", pip_exit=3)
    before = snapshot(tg)

    proc = run(tg)

    assert proc.returncode == 1
    assert "pip failed (exit code 3)" in proc.stderr
    assert snapshot(tg) == before


# ----------------------------------------------------------------------------- uninstalling


def test_uninstall_restores_the_tree_exactly(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    (tg / "user_data" / "settings.yaml").write_text("dark_theme: true\ndefault_extensions: []\nmode: chat\n")
    record = tmp_path / "argv.jsonl"
    python = make_fake_python(tg, record)
    before = snapshot(tg)
    installed_ok(tg, "--enable")
    assert manifest_of(tg)["pip"]["python"] == str(python)
    assert "- memory" in (tg / "user_data" / "settings.yaml").read_text()
    # TGWUI imports the extension: Python writes a bytecode cache next to it
    (tg / "extensions" / "memory" / "__pycache__").mkdir()
    (tg / "extensions" / "memory" / "__pycache__" / "script.cpython-311.pyc").write_bytes(b"\0")

    dry = installed_ok(tg, "--uninstall", "--dry-run")
    assert f"remove {tg / 'extensions' / 'memory' / 'script.py'}" in dry.stdout
    assert (tg / "extensions" / "memory" / "script.py").exists()

    installed_ok(tg, "--uninstall")
    assert snapshot(tg) == before


def test_uninstall_keeps_user_files_and_user_modified_files(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    installed_ok(tg, "--no-deps")
    before_uninstall = snapshot(tg)
    modified = tg / "extensions" / "memory" / "script.py"
    modified.write_text(modified.read_text() + "# my tweak\n")
    notes = tg / "extensions" / "rag-enhancer" / "my-notes.txt"
    notes.write_text("mine\n")

    proc = installed_ok(tg, "--uninstall", "--no-deps")

    assert f"keep   {modified} (modified since it was installed)" in proc.stdout
    assert modified.read_text().endswith("# my tweak\n")
    assert notes.read_text() == "mine\n"
    assert not (tg / "extensions" / "rag-enhancer" / "script.py").exists()
    assert not (tg / "extensions" / "vram-advisor").exists()
    assert (tg / "extensions" / "gallery" / "script.py").is_file()
    assert (tg / "user_data" / "extensions" / "my_ext" / "script.py").is_file()
    assert not (tg / "user_data" / "pocketpack").exists()
    assert "user_data/presets/Top-P.yaml" in before_uninstall and (tg / "user_data/presets/Top-P.yaml").is_file()


def test_uninstall_without_install_says_so(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    proc = installed_ok(tg, "--uninstall")
    assert "Nothing to uninstall" in proc.stdout


# ----------------------------------------------------------------------------- refusing


def test_non_tgwui_folder_is_refused_with_one_line(tmp_path):
    folder = tmp_path / "not-tgwui"
    folder.mkdir()
    (folder / "server.py").write_text("")

    proc = run(folder)

    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "not a text-generation-webui checkout" in lines[0]
    assert "modules/extensions.py" in lines[0] and "modules/shared.py" in lines[0]
    assert "server.py" not in lines[0].split("missing", 1)[1]
    assert sorted(p.name for p in folder.iterdir()) == ["server.py"]


def test_missing_folder_is_refused(tmp_path):
    proc = run(tmp_path / "nope")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "not a folder" in proc.stderr


def test_existing_foreign_extension_is_not_overwritten(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    (tg / "extensions" / "memory").mkdir()
    (tg / "extensions" / "memory" / "script.py").write_text("# someone else's memory extension\n")
    before = snapshot(tg)

    proc = run(tg, "--no-deps")

    assert proc.returncode == 1
    assert "already exists and is not the pack's" in proc.stdout
    assert "nothing changed" in proc.stderr
    assert snapshot(tg) == before


def test_symlink_leading_outside_is_refused(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tg / "user_data" / "pocketpack").symlink_to(outside, target_is_directory=True)
    before = snapshot(tg)

    proc = run(tg, "--no-deps")

    assert proc.returncode == 2
    assert "leads outside the checkout" in proc.stderr
    assert list(outside.iterdir()) == []
    assert snapshot(tg) == before


# ----------------------------------------------------------------------------- --enable


def test_enable_creates_settings_and_uninstall_removes_it(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    before = snapshot(tg)
    installed_ok(tg, "--no-deps", "--enable")

    text = (tg / "user_data" / "settings.yaml").read_text()
    assert text == "default_extensions:\n" + "".join(f"- {n}\n" for n in PACK_EXTENSIONS)

    installed_ok(tg, "--uninstall", "--no-deps")
    assert snapshot(tg) == before


@pytest.mark.parametrize(
    "original, before",
    [
        ("dark_theme: true", []),  # no key, no final newline
        ("mode: chat\r\ndefault_extensions:\r\n- gallery\r\n", ["gallery"]),  # Windows line ends
        ("default_extensions: [gallery, example]\nmode: chat\n", ["gallery", "example"]),
        ("default_extensions:\n  - gallery\nmode: chat\n", ["gallery"]),  # indented items
        ("default_extensions:\n- gallery\n\n# my notes\nmode: chat\n", ["gallery"]),
    ],
)
def test_enable_round_trips_settings_shapes(tmp_path, original, before):
    yaml = pytest.importorskip("yaml")
    tg = make_tgwui(tmp_path / "tgwui")
    settings = tg / "user_data" / "settings.yaml"
    settings.write_bytes(original.encode())
    installed_ok(tg, "--no-deps", "--enable")

    loaded = yaml.safe_load(settings.read_bytes())
    assert loaded["default_extensions"] == before + PACK_EXTENSIONS
    assert {k: v for k, v in loaded.items() if k != "default_extensions"} == {
        k: v for k, v in (yaml.safe_load(original) or {}).items() if k != "default_extensions"
    }

    installed_ok(tg, "--uninstall", "--no-deps")
    assert settings.read_bytes() == original.encode()


def test_enable_rewritten_by_tgwui_still_uninstalls_cleanly(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    settings = tg / "user_data" / "settings.yaml"
    settings.write_text("default_extensions: []\nmode: chat\n")
    installed_ok(tg, "--no-deps", "--enable")
    # "Save UI settings" rewrites the whole file (yaml.dump, block lists)
    settings.write_text("mode: instruct\ndefault_extensions:\n- memory\n- gallery\n- vram-advisor\n")

    installed_ok(tg, "--uninstall", "--no-deps")

    assert settings.read_text() == "mode: instruct\ndefault_extensions:\n- gallery\n"


def test_enable_never_leaves_default_extensions_null(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    settings = tg / "user_data" / "settings.yaml"
    settings.write_text("default_extensions:\n- gallery\n")
    installed_ok(tg, "--no-deps", "--enable")
    settings.write_text("default_extensions:\n- memory\n")  # the user dropped gallery meanwhile

    installed_ok(tg, "--uninstall", "--no-deps")

    assert settings.read_text() == "default_extensions: []\n"


def test_enable_skips_settings_it_cannot_edit_safely(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    settings = tg / "user_data" / "settings.yaml"
    settings.write_text('default_extensions: ["gallery"]  # quoted, with a comment\n')

    proc = installed_ok(tg, "--no-deps", "--enable")

    assert "skip   --enable" in proc.stdout and "by hand" in proc.stdout
    assert settings.read_text() == 'default_extensions: ["gallery"]  # quoted, with a comment\n'


# ----------------------------------------------------------------------------- upgrades, on a pack built here


def make_pack(root: Path) -> Path:
    """A copy of the pack's layout with one extension and one preset, to change between runs."""
    (root / "installer").mkdir(parents=True)
    shutil.copy2(INSTALLER, root / "installer" / "install.py")
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "pocketpack").mkdir()
    (root / "pocketpack" / "__init__.py").write_text('__version__ = "0"\n')
    (root / "extensions" / "memory" / "helpers").mkdir(parents=True)
    (root / "extensions" / "memory" / "script.py").write_text("params = {}\n")
    (root / "extensions" / "memory" / "helpers" / "old.py").write_text("OLD = 1\n")
    (root / "extensions" / "memory" / "requirements.txt").write_text("rank-bm25\n")
    (root / "extensions" / "README.md").write_text("not an extension\n")
    (root / "presets").mkdir()
    (root / "presets" / "cpu-only.yaml").write_text("tier: cpu\n")
    return root / "installer" / "install.py"


def test_upgrade_updates_removes_and_copies_presets(tmp_path):
    installer = make_pack(tmp_path / "pack")
    pack = installer.parent.parent
    tg = make_tgwui(tmp_path / "tgwui")
    installed_ok(tg, "--no-deps", installer=installer)

    assert (tg / "user_data" / "pocketpack" / "presets" / "cpu-only.yaml").read_text() == "tier: cpu\n"
    assert (tg / "extensions" / "memory" / "helpers" / "old.py").is_file()
    requirements = (tg / "extensions" / "memory" / "requirements.txt").read_text().splitlines()
    assert f"pocketpack[tgwui] @ {pack.as_uri()}" in requirements and "rank-bm25" in requirements
    assert not (tg / "extensions" / "README.md").exists()

    # a new pack version: one file changed, one gone, one preset added
    (pack / "extensions" / "memory" / "script.py").write_text("params = {'v': 2}\n")
    (pack / "extensions" / "memory" / "helpers" / "old.py").unlink()
    (pack / "presets" / "gpu-6gb.yaml").write_text("tier: 6gb\n")
    proc = installed_ok(tg, "--no-deps", installer=installer)

    assert (tg / "extensions" / "memory" / "script.py").read_text() == "params = {'v': 2}\n"
    assert "update " in proc.stdout
    assert not (tg / "extensions" / "memory" / "helpers").exists() or not any(
        (tg / "extensions" / "memory" / "helpers").iterdir()
    )
    assert (tg / "user_data" / "pocketpack" / "presets" / "gpu-6gb.yaml").is_file()
    assert "extensions/memory/helpers/old.py" not in manifest_of(tg)["files"]


def test_upgrade_refuses_to_overwrite_a_user_modified_file(tmp_path):
    installer = make_pack(tmp_path / "pack")
    tg = make_tgwui(tmp_path / "tgwui")
    installed_ok(tg, "--no-deps", installer=installer)
    (tg / "extensions" / "memory" / "script.py").write_text("params = {'mine': True}\n")
    (installer.parent.parent / "extensions" / "memory" / "script.py").write_text("params = {'v': 2}\n")

    proc = run(tg, "--no-deps", installer=installer)

    assert proc.returncode == 1
    assert "was modified since it was installed" in proc.stdout
    assert (tg / "extensions" / "memory" / "script.py").read_text() == "params = {'mine': True}\n"


# ----------------------------------------------------------------------------- TGWUI's view


@pytest.mark.parametrize("name", PACK_EXTENSIONS)
def test_installed_extension_imports_as_tgwui_imports_it(tmp_path, name):
    """modules/extensions.py: importlib.import_module(f"extensions.{name}.script"), from the repo root."""
    tg = make_tgwui(tmp_path / "tgwui")
    installed_ok(tg, "--no-deps")
    site = tmp_path / "site"  # pocketpack importable, without putting this repo's extensions/ on the path
    site.mkdir()
    (site / "pocketpack").symlink_to(REPO / "pocketpack", target_is_directory=True)
    code = (
        "import importlib, os, sys\n"
        "sys.path.insert(0, os.getcwd())\n"
        f"module = importlib.import_module('extensions.{name}.script')\n"
        "print(module.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tg, env=env, capture_output=True, text=True, timeout=120)

    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == tg / "extensions" / name / "script.py"


def test_installer_is_stdlib_only_and_python_3_9_syntax():
    tree = ast.parse(INSTALLER.read_text(), feature_version=(3, 9))
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - sys.stdlib_module_names - {"__future__"} == set()


def _python39() -> str | None:
    candidates = [shutil.which("python3.9"), *map(str, Path.home().glob(".pyenv/versions/3.9*/bin/python3.9"))]
    for candidate in filter(None, candidates):
        ok = subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"], capture_output=True)
        if ok.returncode == 0:
            return candidate
    return None


@pytest.mark.skipif(_python39() is None, reason="no Python 3.9 on this machine")
def test_installer_runs_under_python_3_9(tmp_path):
    tg = make_tgwui(tmp_path / "tgwui")
    installed_ok(tg, "--no-deps", "--enable", python=_python39())
    assert (tg / "extensions" / "memory" / "script.py").is_file()
    installed_ok(tg, "--uninstall", "--no-deps", python=_python39())
    assert not (tg / "extensions" / "memory").exists()
