"""The recommender ranks by quality and speed: layers left in system RAM cost points."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketpack.vram import inspect_model
from pocketpack.vram.advise import OFFLOAD_POINTS, RAM_SLOWDOWN, advise, rank_score
from pocketpack.vram.machine import Machine

DATA = Path(__file__).parent / "data" / "vram"


def machine(vram, ram):
    return Machine(None, float(vram), None, float(ram), None, "given")


def slowdown(share):
    return (1 - share) + share * RAM_SLOWDOWN


def test_the_rule_in_numbers():
    # fully on the GPU beats a partially offloaded format of slightly better quality ...
    assert rank_score(2.8) < rank_score(0.9, slowdown(0.05), offloaded=True)
    assert rank_score(2.8) < rank_score(0.0, slowdown(0.2), offloaded=True)
    # ... any format within OFFLOAD_POINTS of it, however few of its weights sit in RAM
    assert rank_score(2.0) < rank_score(2.0 - OFFLOAD_POINTS + 0.01, slowdown(0.001), offloaded=True)
    # but a much better format with a few layers in RAM beats a badly degraded one that fits
    assert rank_score(2.8, slowdown(0.05), offloaded=True) < rank_score(56.5)
    # and more of the same format in RAM is always worse
    worse = [rank_score(1.0, slowdown(share), True) for share in (0.3, 0.6, 1.0)]
    assert worse == sorted(worse) and len(set(worse)) == 3


def test_a_format_fully_on_the_gpu_beats_q8_0_with_few_gpu_layers():
    adv = advise(inspect_model(DATA / "meta-llama-3-8b.json"), machine(6, 32))
    names = [(o.format, o.placement) for o in adv.options]
    best = adv.best
    assert best.placement == "gpu" and best.format == "gguf-Q4_K_M"
    q8 = names.index(("gguf-Q8_0", "partial"))
    q5 = names.index(("gguf-Q5_K_M", "partial"))
    assert names.index(("gguf-Q4_K_M", "gpu")) < q5 < q8  # better quality, but slower: ranked lower
    for o in adv.options:  # each partial option is ranked below every GPU option of at most 2 points more loss
        if o.placement == "partial":
            for g in adv.options:
                if g.placement == "gpu" and g.quality_loss_pct <= o.quality_loss_pct + OFFLOAD_POINTS:
                    assert adv.options.index(g) < adv.options.index(o)
    d = best.to_dict()
    assert d["expected_slowdown"] == 1.0 and d["rank_score"] == pytest.approx(best.quality_loss_pct, abs=0.01)


def test_when_nothing_fits_speed_breaks_the_quality_order():
    adv = advise(inspect_model(DATA / "qwen2.5-32b.json"), machine(12, 64))
    assert all(o.placement == "partial" for o in adv.options)
    by_quality = min(adv.options, key=lambda o: o.quality_loss_pct)
    assert by_quality.format == "gguf-Q8_0" and adv.best.format != "gguf-Q8_0"
    assert adv.best.gpu_layers > by_quality.gpu_layers
    scores = [o.score for o in adv.options]
    assert scores == sorted(scores)


def test_the_kv_cache_is_quantised_only_to_reach_a_comfortable_context():
    """fp16 cache whenever it reaches 8192 tokens; a smaller cache never just stretches the context."""
    from pocketpack.vram.advise import COMFORTABLE_CTX, _fits_gpu
    from pocketpack.vram.estimate import estimate

    info = inspect_model(DATA / "meta-llama-3-8b.json")
    gpu = machine(8, 32)
    adv = advise(info, gpu)
    quantised = [o for o in adv.options if o.placement == "gpu" and o.cache_type != "fp16"]
    for option in quantised:  # chosen only because fp16 could not reach a comfortable context
        assert not _fits_gpu(estimate(info, option.format, ctx=COMFORTABLE_CTX, cache_type="fp16"), gpu), option
    q4 = next(o for o in adv.options if o.format == "gguf-Q4_K_M")
    assert q4.cache_type == "fp16" and q4.ctx >= COMFORTABLE_CTX
