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
    with gr.Blocks(), gr.Tab("VRAM advisor"):
        script.ui()
    from pocketpack.vram.report import CUSTOM_MACHINE

    frame, _, text = script.engine().analyse("llama3-8b", "", 4096, CUSTOM_MACHINE, 8, 32)
    assert set(frame["part"]) >= {"weights", "KV cache", "CUDA context + runtime"}
    assert "gguf-Q4_K_M" in set(frame["format"]) and "| 1 |" in text
    _, _, error = script.engine().analyse("empty", "", 4096, CUSTOM_MACHINE, 8, 32)
    assert "Cannot estimate" in error and "neither config.json" in error


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU is present: measured numbers differ")
def test_measured_says_no_gpu(models_dir):
    script = load_script()
    assert "no GPU" in script.engine().measure()


def test_apply_in_the_standalone_host_saves_the_hosts_own_settings(models_dir, monkeypatch, tmp_path):
    """Issue 14.3: 'Apply preset fails in the standalone host ("not a text-generation-webui checkout")'."""
    import yaml

    from pocketpack.host import shared

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shared, "user_data_dir", tmp_path / "user_data")
    script = load_script()
    message = script.engine().apply("gpu-8gb", "llama3-8b")
    assert "Saved in" in message and "not a text-generation-webui checkout" not in message
    saved = yaml.safe_load((tmp_path / "user_data" / "pocketpack" / "model-settings.yaml").read_text())
    settings = saved["models"]["llama3-8b"]["settings"]
    assert settings["loader"] == "Transformers" and settings["load_in_4bit"] is True  # 8B bf16 on 8 GB: NF4


def test_apply_in_a_checkout_uses_the_installed_preset(tmp_path, monkeypatch):
    """Inside TGWUI: config-user.yaml, from the checkout's installed preset, the entry for the model's own
    files (a Transformers folder never gets the llama.cpp entry that made `server.py --model` fail)."""
    import types

    import yaml

    from pocketpack.presets import PRESET_DIR

    root = tmp_path / "tg"
    (root / "modules").mkdir(parents=True)
    flags = "".join(f"parser.add_argument('{f}')\n" for f in ("--gpu-layers", "--ctx-size", "--gpu-split"))
    (root / "modules" / "shared.py").write_text(flags)
    models = root / "user_data" / "models"
    (models / "llama3-8b").mkdir(parents=True)
    shutil.copy(DATA / "meta-llama-3-8b.json", models / "llama3-8b" / "config.json")
    installed = root / "user_data" / "pocketpack" / "presets"
    installed.mkdir(parents=True)
    data = yaml.safe_load((PRESET_DIR / "gpu-8gb.yaml").read_text())
    data["sources"]["hf"]["7-8B"]["ctx_size"] = 3072
    (installed / "gpu-8gb.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(root)
    tgwui_shared = types.ModuleType("modules.shared")
    tgwui_shared.args = types.SimpleNamespace(model_dir=str(models))
    tgwui_shared.user_data_dir = root / "user_data"
    monkeypatch.setitem(sys.modules, "modules.shared", tgwui_shared)
    script = load_script()
    message = script.engine().apply("gpu-8gb", "llama3-8b")
    assert "Wrote" in message and str(installed / "gpu-8gb.yaml") in message
    written = yaml.safe_load((models / "config-user.yaml").read_text())["llama3-8b$"]
    assert written["loader"] == "Transformers" and written["truncation_length"] == 3072
    assert "ctx_size" not in written and "gpu_layers" not in written
