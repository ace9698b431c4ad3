"""The Model tab's form becomes flags the model's loader accepts (never a false conflict)."""

from __future__ import annotations

import pytest

from pocketpack.host.flags import FlagConflict, check_flags, infer_loader
from pocketpack.host.webui import load_settings_from_form

DEFAULTS = dict(layers=-1, ctx=2048, cache="fp16", nthreads=0, in8=False, in4=False, qtype="nf4", dq=False,
                dtype="float32", on_cpu=False)


@pytest.fixture
def hf_folder(tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text('{"model_type": "llama"}')
    return tmp_path / "tiny"


def test_form_defaults_pass_for_a_gguf(default_model):
    settings = load_settings_from_form(default_model, **DEFAULTS)
    check_flags(settings, infer_loader(default_model))
    assert settings.gpu_layers == -1 and settings.cache_type == "fp16" and not settings.load_in_4bit


def test_cpu_box_means_no_gpu_layers_for_a_gguf(default_model):
    settings = load_settings_from_form(default_model, **{**DEFAULTS, "on_cpu": True})
    assert settings.gpu_layers == 0


def test_form_defaults_pass_for_transformers_and_4bit_options_only_when_ticked(hf_folder):
    plain = load_settings_from_form(hf_folder, **DEFAULTS)
    check_flags(plain, "Transformers")
    assert plain.compute_dtype is None and plain.cache_type is None
    four = load_settings_from_form(hf_folder, **{**DEFAULTS, "in4": True, "dq": True})
    check_flags(four, "Transformers")
    assert four.load_in_4bit and four.use_double_quant and four.quant_type == "nf4"


def test_a_real_conflict_from_the_form_is_still_refused(hf_folder):
    both = load_settings_from_form(hf_folder, **{**DEFAULTS, "in4": True, "in8": True})
    with pytest.raises(FlagConflict, match="--load-in-8bit and --load-in-4bit"):
        check_flags(both, "Transformers")
