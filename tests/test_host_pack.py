"""The pack's own four extensions in the host, on the real embedded model, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pocketpack.host.chat import default_state
from pocketpack.host.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]
PACK = ["memory", "rag-enhancer", "adapter-switcher", "vram-advisor"]


def pocketpack(*args, cwd=REPO, timeout=600):
    return subprocess.run([sys.executable, "-m", "pocketpack", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture
def runtime(tmp_path):
    return Runtime(root=REPO, user_data_dir=tmp_path / "user_data", extensions=PACK)


@pytest.mark.parametrize("order", [PACK, list(reversed(PACK))])
def test_all_four_load_in_either_order(tmp_path, order):
    runtime = Runtime(root=REPO, user_data_dir=tmp_path / "user_data", extensions=order)
    assert list(runtime.host.loaded) == order
    assert runtime.host.load_failures == {}


def test_each_extension_ui_builds_in_a_tab(runtime):
    import gradio as gr

    with gr.Blocks():
        for display_name, module in runtime.host.tab_extensions():
            name = next(n for m, n in runtime.host.iterator() if m is module)
            with gr.Tab(display_name):
                runtime.host.build_ui(name, module)
        for name, module in runtime.host.block_extensions():
            runtime.host.build_ui(name, module)
    assert runtime.host.take_failures() == []


@pytest.mark.slow
def test_a_chat_turn_on_the_embedded_model_with_every_extension(runtime, default_model):
    from pocketpack.host.flags import LoadSettings

    runtime.load_model(default_model, LoadSettings(threads=1, ctx_size=2048))
    from pocketpack.host import shared

    assert shared.model_name == default_model.name and shared.tokenizer is not None
    state = default_state(max_new_tokens=24, seed=7, temperature=0.0)
    replies = [h["internal"][-1][1] for h in runtime.chat("What is the capital of France?", state)]
    assert replies[-1].strip(), "the model gave no reply"
    assert "You:" not in replies[-1]  # chat mode stops where the model would speak for the user
    assert len({r for r in replies if r}) >= 2  # streamed
    assert runtime.host.take_failures() == []


@pytest.mark.slow
def test_cli_chat_prints_the_reply(default_model, tmp_path):
    result = pocketpack("chat", "Reply with one word: hello", "--model", str(default_model), "--threads", "1",
                        "--max-new-tokens", "12", "--user-data-dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    history = json.loads(result.stdout)
    assert history["internal"][-1][0] == "Reply with one word: hello"
    assert history["internal"][-1][1].strip()


def test_a_comma_list_of_extensions_means_the_same_as_spaces(tmp_path):
    """The comma form many TGWUI guides show is read name by name: the unknown one is named
    alone, never 'memory,nonesuch' as one name."""
    result = pocketpack("chat", "hi", "--extensions", "memory,nonesuch", "--user-data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pocketpack: unknown extension 'nonesuch'; available: adapter-switcher, memory, rag-enhancer, vram-advisor"]


def test_unknown_extension_lists_the_available_ones(tmp_path):
    result = pocketpack("chat", "hi", "--extensions", "memory", "nonesuch", "--user-data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pocketpack: unknown extension 'nonesuch'; available: adapter-switcher, memory, rag-enhancer, vram-advisor"]


def test_missing_model_is_one_line(tmp_path):
    result = pocketpack("chat", "hi", "--extensions", "--model", str(tmp_path / "absent.gguf"),
                        "--user-data-dir", str(tmp_path))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "absent.gguf" in lines[0] and "Traceback" not in result.stderr


def test_corrupt_model_is_one_line(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(2048))
    result = pocketpack("chat", "hi", "--extensions", "--model", str(bad), "--user-data-dir", str(tmp_path))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.gguf" in lines[0] and "Traceback" not in result.stderr


def test_flag_conflict_is_one_line(tmp_path, default_model):
    result = pocketpack("chat", "hi", "--extensions", "--model", str(default_model), "--load-in-8bit",
                        "--user-data-dir", str(tmp_path))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--load-in-8bit" in lines[0] and "Traceback" not in result.stderr


def test_settings_yaml_default_extensions_and_params(tmp_path):
    user_data = tmp_path / "user_data"
    user_data.mkdir()
    (user_data / "settings.yaml").write_text("default_extensions: [vram-advisor]\nvram-advisor-display_name: VRAM!\n")
    runtime = Runtime(root=REPO, user_data_dir=user_data, extensions=["memory"])
    assert list(runtime.host.loaded) == ["memory", "vram-advisor"]
    assert runtime.host.loaded["vram-advisor"].params["display_name"] == "VRAM!"


def test_broken_settings_yaml_is_one_line(tmp_path):
    (tmp_path / "settings.yaml").write_text("a: [unclosed\n")
    result = pocketpack("chat", "hi", "--extensions", "--user-data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[0].startswith("pocketpack: ") and "settings.yaml" in result.stderr
