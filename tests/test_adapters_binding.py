"""Per-character bindings and the extension script: the character's adapters before each turn."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pocketpack.adapters import AdapterError, Bindings
from pocketpack.adapters.session import AdapterSession, parse_weights
from tests.helpers.tiny_adapters import logits, make_adapter, tiny_llama

SCRIPT = Path(__file__).resolve().parents[1] / "extensions" / "adapter-switcher" / "script.py"


@pytest.fixture(scope="module")
def base():
    return tiny_llama()


@pytest.fixture(scope="module")
def loras(tmp_path_factory, base):
    d = tmp_path_factory.mktemp("loras")
    make_adapter(base, d / "pirate", r=4, seed=1)
    make_adapter(base, d / "formal", r=8, seed=2)
    return d


def test_bindings_file_round_trip_and_lookup(tmp_path):
    path = tmp_path / "adapter_bindings.yaml"
    path.write_text("characters:\n  Flint: pirate\n  Ada: [formal, pirate]\n  Bob: {formal: 0.5}\n"
                    "chats:\n  chat-1: {adapters: {pirate: 0.25}, combination: cat}\n", encoding="utf-8")
    b = Bindings(path)
    assert b.adapters_for({"character_menu": "Flint"}).adapters == {"pirate": 1.0}
    assert b.adapters_for({"name2": "Ada"}).adapters == {"formal": 1.0, "pirate": 1.0}   # API state
    assert b.adapters_for({"character": "Bob"}).adapters == {"formal": 0.5}
    chat = b.adapters_for({"character_menu": "Flint", "unique_id": "chat-1"})
    assert chat.adapters == {"pirate": 0.25} and chat.combination == "cat"      # the chat wins
    assert b.adapters_for({"character_menu": "Nobody"}) is None
    b.bind("Nobody", {})
    b.unbind("Flint")
    again = Bindings(path)
    assert again.adapters_for({"character_menu": "Nobody"}).adapters == {}  # explicitly the base
    assert again.adapters_for({"character_menu": "Flint"}) is None
    assert "version: 1" in path.read_text()
    path.write_text("characters: [oops\n", encoding="utf-8")
    with pytest.raises(AdapterError, match="cannot read the bindings file"):
        Bindings(path)
    assert parse_weights("a=1, b=0.5") == {"a": 1.0, "b": 0.5} and parse_weights("a b") == {"a": 1.0, "b": 1.0}
    with pytest.raises(AdapterError, match="weight must be a number"):
        parse_weights("a=lots")


def test_the_bindings_file_is_private_to_its_owner(tmp_path):
    """Under --multi-user the bindings file names every user's voices: written 0600, as before
    the one atomic_write, whatever the umask."""
    import os
    import stat

    path = tmp_path / "adapter_bindings.yaml"
    old = os.umask(0o022)
    try:
        Bindings(path).bind("Flint", {"pirate": 1.0})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_character_change_switches_adapters(base, loras, tmp_path):
    model = copy.deepcopy(base)
    plain = logits(model)
    s = AdapterSession([loras], tmp_path / "b.yaml")
    s.bindings().bind("Flint", "pirate")
    s.bindings().bind("Ada", {"formal": 1.0, "pirate": 0.5})
    assert s.apply_state(model, {"character_menu": "Bob"}) is None          # nothing bound, nothing loaded
    assert s.manager(model, create=False) is None
    assert s.apply_state(model, {"character_menu": "Flint"}) == ["pirate"]
    pirate = logits(model)
    assert not torch.allclose(pirate, plain, atol=1e-3)
    assert s.apply_state(model, {"character_menu": "Flint"}) is None        # unchanged: no work
    assert s.apply_state(model, {"character_menu": "Ada"}) == ["formal", "pirate"]
    assert s.apply_state(model, {"character_menu": "Bob"}) == []            # back to the manual choice
    assert torch.allclose(logits(model), plain, atol=1e-5)
    s.switch(model, {"formal": 1.0})                                        # manual choice for unbound ones
    assert s.apply_state(model, {"character_menu": "Flint"}) == ["pirate"]
    assert torch.allclose(logits(model), pirate, atol=1e-5)
    assert s.apply_state(model, {"character_menu": "Bob"}) == ["formal"]
    assert s.manager(model).stats["adapter_loads"] == 2                     # never loaded twice
    s.bindings().bind("Ghost", "missing")
    with pytest.raises(AdapterError, match="no adapter named 'missing'"):
        s.apply_state(model, {"character_menu": "Ghost"})
    assert s.manager(model).lora_names == ["formal"]                       # kept what it had


def load_script():
    spec = importlib.util.spec_from_file_location("adapter_switcher_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def host(tmp_path, monkeypatch):
    """The standalone host's shared stand-in, pointed at a fresh user data folder."""
    from pocketpack.host import shared

    monkeypatch.setattr(shared, "user_data_dir", tmp_path / "user_data")
    monkeypatch.setattr(shared, "args", SimpleNamespace(lora_dir=str(tmp_path / "user_data" / "loras")))
    monkeypatch.setattr(shared, "backend", None, raising=False)
    monkeypatch.setattr(shared, "model", None)
    monkeypatch.setattr(shared, "lora_names", [])
    return shared


def test_script_builds_its_tab_with_no_model_and_no_adapters(host):
    import gradio as gr

    script = load_script()
    assert script.params["is_tab"] is True and script.params["display_name"] == "Adapters"
    script.setup()
    with gr.Blocks():
        script.ui()
    lib, res, binds, hint = script.engine().tables()
    assert lib == [] and res == [] and "No model is loaded" in hint
    assert "No voices yet: **train a voice from a text file or a character's chats** below" in hint
    state = {"character_menu": "Flint"}
    assert script.state_modifier(state) is state


def test_script_applies_bindings_through_state_modifier(host, base, loras):
    import shutil

    shutil.copytree(loras, Path(host.args.lora_dir))
    model = copy.deepcopy(base)
    plain = logits(model)
    host.backend = SimpleNamespace(model=model)
    host.model = model
    script = load_script()
    Bindings(host.user_data_dir / "adapter_bindings.yaml").bind("Flint", "pirate")
    script.state_modifier({"character_menu": "Flint"})
    assert host.lora_names == ["pirate"]
    assert not torch.allclose(logits(model), plain, atol=1e-3)
    lib, res, binds, _ = script.engine().tables()
    assert {r[0]: r[-1] for r in lib} == {"formal": "ready", "pirate": "active (1)"}
    assert binds == [["Flint", "pirate=1", "live"]]
    _, _, msg = script.engine().act("switch", ["formal"], "", "live")
    assert msg == "Active: formal=1" and host.lora_names == ["formal"]
    script.state_modifier({"character_menu": "Someone else"})                 # unbound: the manual choice
    assert host.lora_names == ["formal"]
    _, _, msg = script.engine().act("switch", [], "ghost=1", "live")
    assert msg.startswith("**Not done:**") and host.lora_names == ["formal"]
