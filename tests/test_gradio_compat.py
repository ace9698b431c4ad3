"""Extension UI code uses only gradio API that both TGWUI's gradio (4.37) and current gradio have.

TGWUI ships a fork of gradio 4.37.2; `pocketpack serve` runs current gradio. Every
``gr.Component(kwarg=...)`` and every ``.event(kwarg=...)`` in code an extension's ``ui()``
runs is checked against the real gradio 4.37.2 wheel (read, not installed: `make setup`
downloads it to .cache/) and against the installed gradio.
"""

from __future__ import annotations

import ast
import inspect
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WHEEL = REPO / ".cache" / "gradio-4.37.2-py3-none-any.whl"
HOST_ONLY = {REPO / "pocketpack" / "host" / "webui.py"}  # runs on current gradio only
EVENT_NAMES = {"click", "change", "submit", "input", "select", "upload", "release", "blur", "focus",
               "clear", "then", "success", "load", "like", "stream", "tab_select"}


def ui_sources() -> list[Path]:
    """Extension scripts, and every pocketpack module that imports gradio for them."""
    files = sorted((REPO / "extensions").glob("*/script.py"))
    for path in sorted((REPO / "pocketpack").rglob("*.py")):
        if path not in HOST_ONLY and "import gradio" in path.read_text(encoding="utf-8"):
            files.append(path)
    return files


def gradio_calls(path: Path) -> list[tuple[str, str, set[str], int]]:
    """(kind, name, keyword names, line) for gr.X(...) calls and .event(...) calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        keywords = {k.arg for k in node.keywords if k.arg}
        func = node.func
        if isinstance(func.value, ast.Name) and func.value.id == "gr":
            found.append(("component", func.attr, keywords, node.lineno))
        elif func.attr in EVENT_NAMES and not (isinstance(func.value, ast.Name) and func.value.id == "gr"):
            found.append(("event", func.attr, keywords, node.lineno))
    return found


@pytest.fixture(scope="module")
def gradio_437() -> dict:
    """Exported names, class __init__ parameters and event listener parameters of gradio 4.37.2."""
    if not WHEEL.exists():
        pytest.fail(f"{WHEEL} is missing: run `make setup` (it downloads the gradio 4.37.2 wheel)")
    exported: set[str] = set()
    classes: dict[str, tuple[set[str], bool]] = {}
    with zipfile.ZipFile(WHEEL) as wheel:
        for name in wheel.namelist():
            if not name.endswith(".py") or not name.startswith("gradio/"):
                continue
            tree = ast.parse(wheel.read(name))
            if name == "gradio/__init__.py":
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom):
                        exported.update(a.asname or a.name for a in node.names)
                    elif isinstance(node, ast.Assign):
                        exported.update(t.id for t in node.targets if isinstance(t, ast.Name))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                            args = item.args
                            params = {a.arg for a in args.args + args.kwonlyargs}
                            classes.setdefault(node.name, (params, args.kwarg is not None))
                if isinstance(node, ast.FunctionDef) and node.name == "event_trigger" and name == "gradio/events.py":
                    event_params = {a.arg for a in node.args.args + node.args.kwonlyargs}
                    classes["<event>"] = (event_params, node.args.kwarg is not None)
    assert "<event>" in classes, "could not read gradio 4.37's event listener signature"
    return {"exported": exported, "classes": classes}


def _check_component(name, keywords, gradio_437):
    import gradio as gr

    problems = []
    if name not in gradio_437["exported"]:
        problems.append(f"gr.{name} does not exist in gradio 4.37")
    elif name in gradio_437["classes"]:
        params, open_kwargs = gradio_437["classes"][name]
        missing = sorted(keywords - params) if not open_kwargs else []
        if missing:
            problems.append(f"gr.{name}({', '.join(missing)}=...) not accepted by gradio 4.37")
    current = getattr(gr, name, None)
    if current is None:
        problems.append(f"gr.{name} does not exist in gradio {gr.__version__}")
    elif inspect.isclass(current) or callable(current):
        try:
            signature = inspect.signature(current)
        except (TypeError, ValueError):
            return problems
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        missing = sorted(k for k in keywords if k not in signature.parameters) if not accepts_any else []
        if missing:
            problems.append(f"gr.{name}({', '.join(missing)}=...) not accepted by gradio {gr.__version__}")
    return problems


def _check_event(name, keywords, gradio_437):
    import gradio as gr

    params, open_kwargs = gradio_437["classes"]["<event>"]
    params = params - {"block"}
    problems = []
    missing = sorted(keywords - params) if not open_kwargs else []
    if missing and name not in {"then", "success", "load"}:
        problems.append(f".{name}({', '.join(missing)}=...) not accepted by gradio 4.37 events")
    current = set(inspect.signature(gr.Button().click).parameters)
    missing_now = sorted(keywords - current)
    if missing_now and name not in {"then", "success", "load"}:
        problems.append(f".{name}({', '.join(missing_now)}=...) not accepted by gradio {gr.__version__} events")
    return problems


def test_there_is_ui_code_to_check():
    names = {p.parent.name for p in ui_sources() if p.name == "script.py"}
    assert names >= {"memory", "rag-enhancer", "adapter-switcher", "vram-advisor"}


@pytest.mark.parametrize("path", ui_sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_ui_code_uses_only_api_both_gradios_have(path, gradio_437):
    problems = []
    for kind, name, keywords, line in gradio_calls(path):
        check = _check_component if kind == "component" else _check_event
        problems += [f"{path.relative_to(REPO)}:{line}: {p}" for p in check(name, keywords, gradio_437)]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_an_api_only_gradio_6_has(tmp_path, gradio_437):
    """A check that can fail: gr.Sidebar and Chatbot(buttons=...) are gradio 5+/6 only."""
    probe = tmp_path / "probe.py"
    probe.write_text("import gradio as gr\ngr.Sidebar()\ngr.Chatbot(buttons=['copy'])\n")
    problems = [p for kind, name, kw, _ in gradio_calls(probe) for p in _check_component(name, kw, gradio_437)]
    assert "gr.Sidebar does not exist in gradio 4.37" in problems
    assert "gr.Chatbot(buttons=...) not accepted by gradio 4.37" in problems


def test_every_extension_ui_builds_under_gradio_437():
    """Not only the API names: each ui() really runs under gradio 4.37.2 (TGWUI's base)."""
    import subprocess

    python = REPO / ".cache" / "gradio-4.37" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make setup` (it builds the gradio 4.37 environment)")
    result = subprocess.run([str(python), str(REPO / "tests" / "helpers" / "build_uis.py"), str(REPO)],
                            capture_output=True, text=True, timeout=600, cwd=REPO,
                            env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "gradio 4.37.2" in lines
    assert [line for line in lines if line.startswith("FAILED")] == []
    assert "loaded memory rag-enhancer adapter-switcher vram-advisor" in lines
    assert any(line.startswith("built ") for line in lines)
