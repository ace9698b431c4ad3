"""One typed settings model for every extension's params (issue 17: "one settings model for
extension params (pydantic ...), unknown keys warned about"; bad values are the extension's own
error class with one line)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pocketpack.adapters.library import AdapterError
from pocketpack.adapters.settings import AdapterParams
from pocketpack.memory.settings import MemoryParams
from pocketpack.memory.store import MemoryError_
from pocketpack.rag.config import RagSettings, SettingsError
from pocketpack.settings import HOST_KEYS, ExtensionSettings

ROOT = Path(__file__).resolve().parent.parent


def _script_params(name: str) -> dict:
    spec = importlib.util.spec_from_file_location(f"settings_test_{name.replace('-', '_')}",
                                                  ROOT / "extensions" / name / "script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {k: v for k, v in module.params.items() if k not in HOST_KEYS}


@pytest.mark.parametrize("name, model", [("memory", MemoryParams), ("adapter-switcher", AdapterParams)])
def test_each_model_keeps_every_setting_name_and_default_of_its_script(name, model):
    assert model().to_dict() == _script_params(name)


def test_rag_script_params_are_the_models_and_its_extension_keys():
    params = _script_params("rag-enhancer")
    assert {k: params[k] for k in RagSettings.model_fields} == RagSettings().to_dict()
    assert set(params) == set(RagSettings.known_keys())


def test_values_from_a_settings_file_are_coerced_one_way_everywhere():
    """settings.yaml may hold "8", 8.0 or "yes": every extension reads them alike."""
    memory = MemoryParams.from_params({"k": "8", "enabled": "no", "min_cosine": "0.5", "approx_threshold": 1e3})
    assert (memory.k, memory.enabled, memory.min_cosine, memory.approx_threshold) == (8, False, 0.5, 1000)
    adapters = AdapterParams.from_params({"allow_pickle": "false", "auto_bind": "on", "budget_mb": "",
                                          "folders": " ~/a , /b ,"})
    assert (adapters.allow_pickle, adapters.auto_bind, adapters.budget_bytes) == (False, True, None)
    assert adapters.folder_paths() == [Path("~/a").expanduser(), Path("/b")]
    assert AdapterParams.from_params({"budget_mb": 2}).budget_bytes == 2 << 20
    turn = MemoryParams.from_params({"k": 3, "scope": "chat"}).turn_settings()
    assert (turn.k, turn.scope, turn.max_tokens) == (3, "chat", 400)


@pytest.mark.parametrize("model, params, error, line", [
    (MemoryParams, {"k": "six"}, MemoryError_, "k must be a whole number, not 'six'"),
    (MemoryParams, {"min_cosine": [0.3]}, MemoryError_, "min_cosine must be a number, not [0.3]"),
    (AdapterParams, {"budget_mb": "lots"}, AdapterError, "budget_mb must be a number, not 'lots'"),
    (RagSettings, {"chunk_size": 7.5}, SettingsError, "chunk_size must be a whole number, not 7.5"),
    (RagSettings, {"chunk_size": 8}, SettingsError, "chunk_size must be a whole number of tokens from 16 to 4096"),
])
def test_a_bad_value_is_the_extensions_own_error_in_one_line(model, params, error, line):
    with pytest.raises(error) as exc:
        model.from_params(params)
    assert str(exc.value).startswith(line) and "\n" not in str(exc.value)


def test_lenient_reading_puts_a_bad_value_back_to_its_default_and_says_so():
    """A chat turn never breaks over a setting: strict=False keeps the default and warns."""
    said: list[str] = []
    got = MemoryParams.from_params({"k": "six", "max_tokens": 100}, strict=False, warn=said.append)
    assert (got.k, got.max_tokens) == (6, 100)
    assert said == ["memory: k must be a whole number, not 'six'; using the default"]


def test_an_unknown_key_is_warned_about_once_naming_it_and_the_valid_ones():
    class Probe(ExtensionSettings):
        extension = "probe"
        top_k: int = 3

    said: list[str] = []
    for _ in range(3):
        assert Probe.from_params({"top_kk": 5, "display_name": "Probe", "is_tab": True}, warn=said.append).top_k == 3
    assert said == ["probe: ignoring unknown setting 'top_kk' (valid: top_k)"]


def test_an_unknown_rag_setting_is_warned_about_but_its_extension_keys_are_not(caplog):
    with caplog.at_level("WARNING", logger="pocketpack.settings"):
        RagSettings.from_dict({"enabled": True, "citations": False, "upload_scope": "chat", "store_dir": "",
                               "chunk_sizes": 300})
    (record,) = caplog.records
    assert record.getMessage().startswith("rag-enhancer: ignoring unknown setting 'chunk_sizes' (valid: chunk_size,")


def test_a_misspelt_settings_yaml_key_is_warned_about_though_tgwui_drops_it():
    """TGWUI copies settings.yaml's ``memory-k`` into params but drops ``memory-kk`` silently."""
    said: list[str] = []
    settings = {"memory-kk": 3, "memory-k": 8, "rag-enhancer-chunk_size": 300, "dark_theme": True}
    assert MemoryParams.warn_unknown_settings(settings, "memory", warn=said.append) == ["kk"]
    assert said == [f"memory: ignoring unknown setting 'kk' (valid: {', '.join(MemoryParams.known_keys())})"]
    assert MemoryParams.warn_unknown_settings(None, "memory") == []
