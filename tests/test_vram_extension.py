"""The vram-advisor extension: imports without gradio (API-only), builds its tab, wires to pocketpack."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "extensions" / "vram-advisor" / "script.py"
DATA = Path(__file__).parent / "data" / "vram"


def load_script(name="user_ext_vram_advisor"):
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_only_mode_needs_no_gradio(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # any `import gradio` would now fail
    script = load_script()
    script.setup()
    assert script.params["is_tab"] is True


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    from pocketpack.host import shared

    (tmp_path / "llama3-8b").mkdir()
    shutil.copy(DATA / "meta-llama-3-8b.json", tmp_path / "llama3-8b" / "config.json")
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(shared.args, "model_dir", str(tmp_path), raising=False)
    return tmp_path


def test_ui_builds_and_estimates(models_dir):
    gr = pytest.importorskip("gradio")
    script = load_script()
    with gr.Blocks():
        with gr.Tab("VRAM advisor"):
            script.ui()
    from pocketpack.vram.report import CUSTOM_MACHINE

    chart, text = script._analyse("llama3-8b", "", 4096, CUSTOM_MACHINE, 8, 32)
    frame = chart["value"]
    assert set(frame["part"]) >= {"weights", "KV cache", "CUDA context + runtime"}
    assert "gguf-Q4_K_M" in set(frame["format"]) and "| 1 |" in text
    _, error = script._analyse("empty", "", 4096, CUSTOM_MACHINE, 8, 32)
    assert "Cannot estimate" in error and "neither config.json" in error


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU is present: measured numbers differ")
def test_measured_says_no_gpu(models_dir):
    script = load_script()
    assert "no GPU" in script._measure()


def test_apply_outside_a_checkout_says_why(models_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    script = load_script()
    assert "not a text-generation-webui checkout" in script._apply("gpu-8gb", "llama3-8b")


def test_apply_in_a_checkout_uses_the_installed_preset(tmp_path, monkeypatch):
    import yaml

    from pocketpack.presets import PRESET_DIR

    root = tmp_path / "tg"
    (root / "modules").mkdir(parents=True)
    flags = "".join(f"parser.add_argument('{f}')\n" for f in ("--gpu-layers", "--ctx-size"))
    (root / "modules" / "shared.py").write_text(flags)
    models = root / "user_data" / "models"
    (models / "llama3-8b").mkdir(parents=True)
    shutil.copy(DATA / "meta-llama-3-8b.json", models / "llama3-8b" / "config.json")
    installed = root / "user_data" / "pocketpack" / "presets"
    installed.mkdir(parents=True)
    data = yaml.safe_load((PRESET_DIR / "gpu-8gb.yaml").read_text())
    data["models"]["7-8B"]["ctx_size"] = 3072
    (installed / "gpu-8gb.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(root)
    script = load_script()
    message = script._apply("gpu-8gb", "llama3-8b")
    assert "Wrote" in message and str(installed / "gpu-8gb.yaml") in message
    written = yaml.safe_load((models / "config-user.yaml").read_text())
    assert written["llama3-8b$"]["ctx_size"] == 3072
