"""Transformers backend on a real (tiny, locally built) Llama: fp32, bitsandbytes 8-bit and 4-bit.

The tiny model has learnt one story by heart, so greedy decoding after "the cat" says
" sat on the mat and the dog ran to the park ..." and a test can check words: a stop string,
a banned token, a prompt swapped by the tokenizer hook. Hook placement mirrors TGWUI's
``modules/text_generation.py:generate_reply_HF`` (tokenizer_modifier after encoding,
logits_processor_modifier on the processor list, return value ignored).
"""

from __future__ import annotations

import shutil

import pytest

from pocketpack.host.backends import GenerationParams, LoadSettings, ModelLoadError, load_model
from tests.helpers.tiny_models import tiny_model

pytestmark = pytest.mark.slow

GREEDY = dict(temperature=0, max_new_tokens=16)


@pytest.fixture(scope="module")
def fp32():
    backend = load_model(tiny_model("chat"), LoadSettings(threads=1))
    yield backend
    backend.close()


def reply(backend, prompt="the cat", **kw):
    outs = list(backend.stream(prompt, GenerationParams(**{**GREEDY, **kw})))
    return outs


def test_loads_fp32_on_cpu_and_streams_growing_text(fp32):
    import torch
    from transformers import LlamaForCausalLM

    assert fp32.loader == "Transformers"
    assert isinstance(fp32.model, LlamaForCausalLM) and fp32.model.dtype == torch.float32
    outs = reply(fp32)
    assert len(outs) > 5
    assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(outs, outs[1:]))
    assert outs[-1].startswith(" sat on the mat and the dog ran")


def test_stop_string_stops_and_is_never_shown(fp32):
    outs = reply(fp32, stop=["the dog"])
    assert outs[-1].rstrip() == " sat on the mat and"
    # no partial "the do..." was ever streamed and then taken back
    assert all(outs[-1].startswith(o) for o in outs)


def test_logits_hook_appends_a_processor_that_really_bans_a_token(fp32):
    tok = fp32.tokenizer
    banned = [i for i in range(len(tok)) if "dog" in tok.decode([i])]
    assert banned
    seen = {}

    def ban_dog(input_ids, scores):
        scores[:, banned] = -float("inf")
        return scores

    def logits_hook(processors, input_ids):
        seen["ids"] = input_ids
        processors.append(ban_dog)
        return "ignored, as TGWUI ignores it"

    assert "dog" in reply(fp32)[-1]  # control: the story has a dog
    text = list(fp32.stream("the cat", GenerationParams(**GREEDY), logits_hook=logits_hook))[-1]
    assert "dog" not in text and text.startswith(" sat on the mat")
    assert fp32.tokenizer.decode(seen["ids"][0], skip_special_tokens=True) == "the cat"


def test_tokenizer_hook_runs_first_and_its_input_ids_are_generated_from(fp32):
    calls = []

    def tokenizer_hook(prompt, input_ids, input_embeds):
        calls.append(("tokenizer", prompt, input_ids.tolist(), input_embeds))
        return prompt, fp32.encode_prompt("the bird", 16), None

    def logits_hook(processors, input_ids):
        calls.append(("logits", fp32.tokenizer.decode(input_ids[0], skip_special_tokens=True)))

    text = list(fp32.stream("the cat", GenerationParams(**GREEDY), tokenizer_hook=tokenizer_hook,
                            logits_hook=logits_hook))[-1]
    assert [c[0] for c in calls] == ["tokenizer", "logits"]
    _, prompt, ids, embeds = calls[0]
    assert prompt == "the cat" and embeds is None
    assert ids[0][0] == fp32.tokenizer.bos_token_id  # one BOS, as TGWUI's encode adds it
    assert calls[1][1] == "the bird"  # the logits hook sees the hook's input_ids
    assert text.startswith(" sang in the tree")


def test_same_seed_same_sampled_text(fp32):
    a = reply(fp32, temperature=1.5, seed=7, max_new_tokens=12)[-1]
    b = reply(fp32, temperature=1.5, seed=7, max_new_tokens=12)[-1]
    assert a == b and a


def test_long_prompt_is_cut_to_the_context(tmp_path):
    backend = load_model(tiny_model("chat"), LoadSettings(threads=1, ctx_size=24))
    long_prompt = "the bird sang in the tree . " * 20 + "the cat"
    assert backend.count_tokens(long_prompt) > 24
    ids = backend.encode_prompt(long_prompt, 8)
    assert ids.shape[1] == 16 and ids[0, 0] == backend.tokenizer.bos_token_id  # BOS kept
    assert backend.tokenizer.decode(ids[0, -2:]).strip() == "the cat"
    assert reply(backend, long_prompt, max_new_tokens=8)[-1].startswith(" sat on the mat")


def test_render_chat_uses_the_template_or_a_plain_fallback(fp32):
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]
    assert fp32.render_chat(messages) == fp32.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)
    assert fp32.render_chat(messages).endswith("<|assistant|>")
    plain = load_model(tiny_model("plain"), LoadSettings(threads=1))
    assert not plain.tokenizer.chat_template
    assert plain.render_chat(messages) == "Be kind.\n\nUser: hi\nAssistant:"


def test_load_in_8bit_on_cpu_gives_bitsandbytes_int8_layers():
    import bitsandbytes as bnb
    import torch

    backend = load_model(tiny_model("chat"), LoadSettings(threads=1, load_in_8bit=True))
    q_proj = backend.model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, bnb.nn.Linear8bitLt) and q_proj.weight.dtype == torch.int8
    outs = reply(backend)
    assert len(outs) > 3 and "mat" in outs[-1]


@pytest.mark.parametrize("quant_type,double,compute", [("nf4", True, "bfloat16"), ("fp4", False, None)])
def test_load_in_4bit_on_cpu_gives_bitsandbytes_4bit_layers(quant_type, double, compute):
    import bitsandbytes as bnb
    import torch

    settings = LoadSettings(threads=1, load_in_4bit=True, quant_type=quant_type,
                            use_double_quant=double, compute_dtype=compute)
    backend = load_model(tiny_model("chat"), settings)
    q_proj = backend.model.model.layers[1].mlp.down_proj
    assert isinstance(q_proj, bnb.nn.Linear4bit)
    assert q_proj.weight.quant_type == quant_type
    assert q_proj.weight.quant_state.nested is double
    assert q_proj.compute_dtype == (torch.bfloat16 if compute else torch.float32)
    outs = reply(backend)
    assert len(outs) > 3 and outs[-1].strip()


def test_corrupt_weights_are_one_line(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model("chat"), broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelLoadError) as err:
        load_model(broken)
    assert "cannot load broken with Transformers" in str(err.value)
    assert "\n" not in str(err.value)


def test_close_releases_the_model():
    backend = load_model(tiny_model("plain"), LoadSettings(threads=1))
    backend.close()
    assert backend.model is None
