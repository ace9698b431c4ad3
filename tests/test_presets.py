"""Tier presets: generated from the estimator, re-checked against it, applied without clobbering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pocketpack.presets import MODEL_CLASSES, PRESET_DIR, TIERS, check_preset, load_preset
from pocketpack.presets.apply import apply_preset
from pocketpack.presets.generate import build_preset
from pocketpack.presets.tgwui import detect_version
from pocketpack.vram import VramError


@pytest.mark.parametrize("tier", list(TIERS))
def test_every_preset_fits_its_tier(tier):
    preset = load_preset(tier)
    assert (PRESET_DIR / f"{tier}.yaml").is_file()
    assert set(preset.models) == set(MODEL_CLASSES)
    assert check_preset(preset) == []


@pytest.mark.parametrize("tier", list(TIERS))
def test_preset_files_are_what_the_estimator_generates(tier):
    assert load_preset(tier).to_dict() == build_preset(tier).to_dict(), \
        "run `python -m pocketpack.presets.generate` after changing the estimator"


def test_the_check_catches_a_preset_that_does_not_fit(tmp_path):
    data = yaml.safe_load((PRESET_DIR / "gpu-8gb.yaml").read_text())
    data["models"]["70B"] = {"format": "bf16", "loader": "Transformers", "ctx_size": 4096, "cache_type": "fp16",
                             "gpu_layers": None, "estimated_vram_gib": 7.5, "estimated_ram_gib": 2,
                             "quality_loss_pct": 0, "placement": "gpu"}
    (tmp_path / "gpu-8gb.yaml").write_text(yaml.safe_dump(data))
    problems = check_preset(load_preset("gpu-8gb", tmp_path))
    assert len(problems) == 1 and "70B" in problems[0] and "VRAM" in problems[0]


def test_cpu_tiers_use_only_gguf_on_the_cpu():
    for tier in ("cpu-8gb", "cpu-16gb", "cpu-32gb"):
        for entry in load_preset(tier).models.values():
            if entry:
                assert entry.format.startswith("gguf-") and entry.gpu_layers == 0


def test_bigger_tiers_run_bigger_models():
    fits = [sum(e is not None for e in load_preset(t).models.values()) for t in
            ("gpu-4gb", "gpu-8gb", "gpu-24gb", "gpu-80gb")]
    assert fits == sorted(fits) and fits[-1] == len(MODEL_CLASSES)


def _checkout(root: Path, current: bool) -> Path:
    (root / "modules").mkdir(parents=True)
    if current:
        (root / "user_data" / "models").mkdir(parents=True)
        (root / "user_data" / "presets").mkdir(parents=True)
        (root / "user_data" / "presets" / "min_p.yaml").write_text("min_p: 0.05\n")
        flags = ["--gpu-layers", "--n-gpu-layers", "--ctx-size", "--cache-type", "--load-in-4bit", "--gpu-split"]
    else:
        (root / "models").mkdir()
        flags = ["--n-gpu-layers", "--n_ctx", "--wbits", "--groupsize", "--cache_8bit", "--cache_4bit",
                 "--gpu-memory", "--load-in-4bit"]
    body = "\n".join(f"parser.add_argument('{f}', type=int)" for f in flags)
    (root / "modules" / "shared.py").write_text("import argparse\nparser = argparse.ArgumentParser()\n" + body)
    return root


def test_version_detection(tmp_path):
    new = detect_version(_checkout(tmp_path / "new", True))
    old = detect_version(_checkout(tmp_path / "old", False))
    assert new.user_data and new.current and new.models_dir == tmp_path / "new" / "user_data" / "models"
    assert not old.user_data and not old.current and old.models_dir == tmp_path / "old" / "models"
    with pytest.raises(VramError, match="not a text-generation-webui checkout"):
        detect_version(tmp_path)


def test_apply_writes_config_user_and_keeps_what_is_there(tmp_path):
    root = _checkout(tmp_path / "tg", True)
    cfg = root / "user_data" / "models" / "config-user.yaml"
    cfg.write_text(yaml.safe_dump({"other-model$": {"loader": "llama.cpp", "ctx_size": 2048},
                                   "my-8b.gguf$": {"threads": 6}}))
    presets_before = {p.name: p.read_text() for p in (root / "user_data" / "presets").iterdir()}
    done = apply_preset("gpu-6gb", "my-8b.gguf", "7-8B", root)
    data = yaml.safe_load(cfg.read_text())
    assert data["other-model$"] == {"loader": "llama.cpp", "ctx_size": 2048}
    mine = data["my-8b.gguf$"]
    assert mine["threads"] == 6 and mine["loader"] == "llama.cpp"
    assert mine["gpu_layers"] == done.entry.gpu_layers and mine["ctx_size"] == done.entry.ctx_size
    assert {p.name: p.read_text() for p in (root / "user_data" / "presets").iterdir()} == presets_before
    assert "--gpu-layers" in done.flags and "--n-gpu-layers" not in done.flags


def test_pre_2025_checkout_gets_old_flags(tmp_path):
    root = _checkout(tmp_path / "old", False)
    done = apply_preset("gpu-8gb", "m.gguf", "7-8B", root, write=False)
    assert "--n-gpu-layers" in done.flags and "--n_ctx" in done.flags and done.written is None
    assert not (root / "models" / "config-user.yaml").exists()


def test_gptq_flags_depend_on_the_version(tmp_path):
    from pocketpack.presets import Entry
    from pocketpack.presets.tgwui import load_settings

    entry = Entry("7-8B", "gptq-4bit-g128", "Transformers", 4096, "fp16", None, 6, 1, 2.9, "gpu")
    old_flags, _, _ = load_settings(entry, detect_version(_checkout(tmp_path / "old", False)))
    # a checkout without modules/loaders.py (before 2023-06) had the GPTQ-for-LLaMa loader
    assert old_flags == ["--loader", "GPTQ-for-LLaMa", "--wbits", "4", "--groupsize", "128"]
    new_flags, _, notes = load_settings(entry, detect_version(_checkout(tmp_path / "new", True)))
    assert "--wbits" not in new_flags and any("quantization_config" in n for n in notes)


def test_apply_refuses_path_names_and_unfit_classes(tmp_path):
    with pytest.raises(VramError, match="model name"):
        apply_preset("gpu-8gb", "../evil", "7-8B")
    with pytest.raises(VramError, match=r"big \(gguf, 70B\) does not fit on the gpu-4gb tier"):
        apply_preset("gpu-4gb", "big", "70B", source="gguf")
    with pytest.raises(VramError, match="cannot tell what files big has"):
        apply_preset("gpu-4gb", "big", "70B")


def test_cli_show_and_apply(capsys, tmp_path):
    from pocketpack.cli import main

    assert main(["presets", "show", "gpu-12gb", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tier"] == "gpu-12gb" and shown["models"]["7-8B"]["flags"][:2] == ["--loader", "llama.cpp"]
    assert main(["presets", "apply", "gpu-12gb", "x.gguf", "--class", "7-8B", "--print"]) == 0
    assert capsys.readouterr().out.startswith("python server.py --model x.gguf --loader llama.cpp")
    assert main(["presets", "show", "gpu-5gb"]) == 2 and "unknown tier" in capsys.readouterr().err


# --------------------------------------------------------------------------- where presets are read from

def _install_preset(root: Path, current: bool, ctx_size: int = 2048) -> Path:
    """What installer/install.py does: copy a tier preset into the checkout (here edited by the user)."""
    folder = root / ("user_data/pocketpack/presets" if current else "pocketpack-data/presets")
    folder.mkdir(parents=True)
    data = yaml.safe_load((PRESET_DIR / "gpu-8gb.yaml").read_text())
    data["description"] = "my edited copy"
    data["models"]["7-8B"]["ctx_size"] = ctx_size
    (folder / "gpu-8gb.yaml").write_text(yaml.safe_dump(data))
    return folder / "gpu-8gb.yaml"


@pytest.mark.parametrize("current", [True, False])
def test_a_checkouts_installed_presets_win(tmp_path, monkeypatch, current):
    root = _checkout(tmp_path / "tg", current)
    path = _install_preset(root, current)
    preset = load_preset("gpu-8gb", tgwui=root)
    assert preset.description == "my edited copy" and Path(preset.source) == path
    assert load_preset("gpu-12gb", tgwui=root).source == str(PRESET_DIR / "gpu-12gb.yaml")  # not installed there
    assert load_preset("gpu-8gb").source == str(PRESET_DIR / "gpu-8gb.yaml")  # outside the checkout
    monkeypatch.chdir(root)  # TGWUI runs from its root: no --tgwui needed
    assert load_preset("gpu-8gb").description == "my edited copy"


def test_cli_inside_a_checkout_lists_shows_and_applies_the_installed_copy(tmp_path, monkeypatch, capsys):
    from pocketpack.cli import main

    root = _checkout(tmp_path / "tg", True)
    path = _install_preset(root, True, ctx_size=3072)
    monkeypatch.chdir(root)

    def run(*argv):
        return main(["presets", *argv]), capsys.readouterr()

    code, out = run("list", "--json")
    sources = json.loads(out.out)["sources"]
    assert code == 0 and Path(sources["gpu-8gb"]) == path and sources["gpu-24gb"] == str(PRESET_DIR / "gpu-24gb.yaml")
    code, out = run("show", "gpu-8gb")
    assert code == 0 and "my edited copy" in out.out and str(path) in out.out and "--ctx-size 3072" in out.out
    code, out = run("apply", "gpu-8gb", "my-8b.gguf", "--class", "7-8B", "--json")
    done = json.loads(out.out)
    assert code == 0 and Path(done["preset"]) == path and Path(done["written"]).parent == root / "user_data" / "models"
    written = yaml.safe_load((root / "user_data" / "models" / "config-user.yaml").read_text())
    assert written["my-8b.gguf$"]["ctx_size"] == 3072


def test_presets_are_generated_when_no_folder_has_them(tmp_path, monkeypatch):
    import pocketpack.presets as presets

    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path / "wheel-has-no-presets")
    preset = load_preset("cpu-16gb")
    assert preset.source == "generated" and preset.to_dict() == build_preset("cpu-16gb").to_dict()


def test_a_broken_installed_preset_is_named(tmp_path):
    root = _checkout(tmp_path / "tg", True)
    path = _install_preset(root, True)
    path.write_text("kind: something-else\n")
    with pytest.raises(VramError, match="not a Pocket Pack hardware-tier preset"):
        load_preset("gpu-8gb", tgwui=root)
    path.write_text("kind: pocketpack-hardware-tier\ntier: gpu-8gb\n")
    with pytest.raises(VramError, match="missing or bad field"):
        load_preset("gpu-8gb", tgwui=root)
