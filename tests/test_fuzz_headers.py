"""Fuzzing the header readers through the CLI: any file gives a result or one line (issue 11).

"A fuzz test over the header readers (GGUF, safetensors, config.json, adapter_config.json) ...
asserting 'one line, non-zero exit, bounded memory' for every generated input, run for a bounded
time in CI." Each example is written to disk and read through ``pocketpack.cli.main`` the way a
user runs it (``vram estimate``, ``adapters list`` / ``inspect``): the command either succeeds or
exits 2 with exactly one ``pocketpack: ...`` line on stderr; any other exception fails the test.
Every example also runs under tracemalloc, and its peak must stay under PEAK_LIMIT, so a
declared size (a 2**63-byte string, a 2**40-item array, a 1 TB header) is never allocated.

Derandomized with a small number of examples so the whole file takes well under a minute on
two cores; raise FUZZ_EXAMPLES in the environment for a longer local run.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import struct
import tempfile
import tracemalloc
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocketpack.adapters import AdapterError, inspect_adapter
from pocketpack.cli import main
from pocketpack.fileformats import FormatError, read_gguf_header
from pocketpack.vram import VramError, inspect_model
from tests.helpers.header_files import (
    ARR,
    LLAMA_CONFIG,
    STR,
    TINY_GGUF_META,
    TINY_GGUF_TENSORS,
    gguf_bytes,
    gguf_string,
    gguf_value,
    nested_array,
    peft_adapter,
    safetensors_bytes,
    write,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
PEAK_LIMIT = 64 * 1024 * 1024  # bytes a single read may allocate, whatever the file declares

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True, scope="module")
def one_parser():
    """Build the CLI's parser once for the module (building it is most of a run's cost); each
    example still goes through ``main``: parsing, dispatch and its error handling."""
    import pocketpack.cli

    parser = pocketpack.cli.build_parser()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pocketpack.cli, "build_parser", lambda: parser)
        yield


def cli(*argv) -> tuple[int, str]:
    """Run the CLI; assert the one-line contract and bounded memory; return (code, stdout)."""
    out, err = io.StringIO(), io.StringIO()
    tracemalloc.start()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main([str(a) for a in argv])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    lines = err.getvalue().splitlines()
    assert code in (0, 2), (code, err.getvalue())
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("pocketpack: "), err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert peak < PEAK_LIMIT, f"{peak} bytes allocated"
    return code, out.getvalue()


def only(error: type, fn, *args) -> None:
    """The public reader either returns or raises ``error`` (the module's one-line error, which the
    extension tabs catch by name), never another exception."""
    try:
        fn(*args)
    except error as exc:
        assert "\n" not in exc.one_line()


class Scratch:
    """A fresh folder per example (hypothesis reruns the test body; a pytest tmp_path would not be)."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="pp-fuzz-"))
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


# --------------------------------------------------------------------------- shared strategies

HUGE = st.sampled_from([1 << 30, 1 << 32, 1 << 40, 1 << 63, (1 << 64) - 1])
# a declared length or count: usually the true one (None), sometimes a lie, often a huge one
DECLARED = st.one_of(st.none(), st.none(), HUGE, st.integers(0, 1 << 16))

# JSON values as a hostile file may hold them: NaN, infinities, huge ints, every type anywhere
JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                        st.sampled_from([0, -1, 1, 4096, 1e308, -1e308, 2 ** 63, "4096", "eight", ""]))
JSON_VALUE = st.recursive(JSON_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def deep_json(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "[" else ('{"a":' * depth + "1" + "}" * depth)


DEEP_JSON = st.builds(deep_json, st.integers(60, 5000), st.sampled_from(["[", "{"]))


def dump(value) -> str:
    return json.dumps(value, allow_nan=True)


def with_fields(base: dict, keys: list[str]):
    """``base`` with some known fields replaced by hostile values (or removed)."""
    return st.dictionaries(st.sampled_from(keys), st.one_of(JSON_VALUE, st.just(None)), max_size=4).map(
        lambda over: {**base, **over})


def text_file(valid: dict, keys: list[str]):
    """A JSON file's text: the valid one with hostile fields, random JSON, deep nests, or bytes."""
    return st.one_of(
        with_fields(valid, keys).map(dump),
        with_fields(valid, keys).map(dump),
        JSON_VALUE.map(dump),
        DEEP_JSON,
        st.binary(max_size=64),
        st.builds(lambda t, cut: t[:cut], with_fields(valid, keys).map(dump), st.integers(0, 200)),
    )


# --------------------------------------------------------------------------- GGUF

SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def scalar(vtype: int):
    return st.binary(min_size=SCALAR_SIZE[vtype], max_size=SCALAR_SIZE[vtype]).map(lambda p: (vtype, p))


SCALAR = st.sampled_from(sorted(SCALAR_SIZE)).flatmap(scalar)
STRING = st.builds(lambda data, n: (STR, struct.pack("<Q", len(data) if n is None else n) + data),
                   st.binary(max_size=12), DECLARED)


def array(items: list, itype: int | None, n: int | None):
    """An array value; ``itype`` / ``n`` override the item type and count it declares."""
    first = items[0][0] if items else 4
    return ARR, struct.pack("<IQ", first if itype is None else itype, len(items) if n is None else n) + \
        b"".join(p for _, p in items)


VALUE = st.recursive(st.one_of(SCALAR, STRING), lambda inner: st.builds(
    array, st.lists(inner, max_size=4), st.one_of(st.none(), st.none(), st.integers(0, 300)), DECLARED),
    max_leaves=12)
DEEP_ARRAY = st.integers(2, 3000).map(lambda depth: (ARR, nested_array(depth)))

ARCH_KEYS = ["general.architecture", "general.file_type", "general.alignment", "general.name",
             *(f"llama.{k}" for k in ("embedding_length", "block_count", "attention.head_count",
                                      "attention.head_count_kv", "attention.key_length", "feed_forward_length",
                                      "context_length", "attention.sliding_window", "expert_count",
                                      "expert_used_count", "vocab_size"))]
# a typed value for a key the estimator reads: Python values the builder encodes with their own types
ARCH_VALUE = st.one_of(st.integers(-(1 << 40), 1 << 40).map(lambda v: gguf_value(v)),
                       st.floats(allow_nan=True, allow_infinity=True, width=32).map(lambda v: gguf_value(v)),
                       st.text(max_size=8).map(lambda v: gguf_value(v)),
                       st.lists(st.integers(0, 1 << 31), max_size=3).map(lambda v: gguf_value(v)),
                       VALUE)


def kv_bytes(key: str | bytes, value: tuple[int, bytes], key_len: int | None) -> bytes:
    return gguf_string(key if isinstance(key, bytes) else key.encode(), key_len) + struct.pack("<I", value[0]) + value[1]


KV = st.builds(kv_bytes, st.one_of(st.sampled_from(ARCH_KEYS), st.text(max_size=12), st.binary(max_size=8)),
               st.one_of(VALUE, ARCH_VALUE, DEEP_ARRAY),
               st.one_of(st.none(), st.none(), st.none(), HUGE))


@st.composite
def gguf_files(draw) -> bytes:
    """A valid tiny GGUF's prefix with hostile metadata: replaced or extra keys, lying counts,
    tensor infos with odd shapes, then perhaps cut short or with bytes flipped."""
    meta = dict(TINY_GGUF_META)
    replaced = draw(st.lists(st.sampled_from(ARCH_KEYS), max_size=3))
    extra = b"".join(kv_bytes(key, draw(ARCH_VALUE), None) for key in replaced)  # after the rest
    for key in replaced + draw(st.lists(st.sampled_from(sorted(meta)), max_size=2)):
        meta.pop(key, None)
    added = draw(st.lists(KV, max_size=3))
    extra += b"".join(added)
    tensors = list(TINY_GGUF_TENSORS)
    if draw(st.booleans()):
        tensors[draw(st.integers(0, len(tensors) - 1))] = (
            draw(st.sampled_from(["token_embd.weight", "blk.0.attn_q.weight", "blk.99999999999.ffn_up.weight", "x"])),
            tuple(draw(st.lists(st.one_of(st.integers(0, 64), HUGE.map(lambda h: min(h, (1 << 64) - 1))),
                                max_size=9))))
    data = gguf_bytes(meta, tensors, raw_kv=extra, raw_count=len(replaced) + len(added),
                      n_kv=draw(st.one_of(st.none(), st.none(), HUGE, st.integers(0, 40))),
                      n_tensors=draw(st.one_of(st.none(), st.none(), st.integers(0, 40), HUGE)))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    for pos, byte in draw(st.lists(st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255)),
                                   max_size=4)):
        if data:
            data = data[:pos] + bytes([byte]) + data[pos + 1:]
    return data


@FUZZ
@given(gguf_files())
def test_fuzz_gguf(data):
    with Scratch() as tmp:
        path = write(tmp / "model.gguf", data)
        cli("vram", "estimate", path, "--format", "gguf-F32")
        only(VramError, inspect_model, path)
        only(FormatError, read_gguf_header, path)
        only(AdapterError, inspect_adapter, path)
        # the same bytes as a GGUF LoRA in an adapter library: listed or flagged, never fatal
        peft_adapter(tmp / "loras" / "good")
        shutil.copy(path, tmp / "loras" / "fuzzed.gguf")
        code, out = cli("adapters", "list", tmp / "loras", "--json")
        assert code == 0 and any(x["name"] == "good" and x["status"] == "ok" for x in json.loads(out))


# --------------------------------------------------------------------------- safetensors

ENTRY = st.fixed_dictionaries({}, optional={
    "dtype": st.one_of(st.sampled_from(["F32", "F16", "BF16", "I8", "Q4"]), JSON_SCALAR),
    "shape": st.one_of(st.lists(st.one_of(st.integers(-2, 8), JSON_SCALAR), max_size=10), JSON_VALUE),
    "data_offsets": st.one_of(st.lists(st.one_of(st.integers(0, 64), JSON_SCALAR), max_size=3), JSON_VALUE),
})
VALID_ENTRY = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
NEAR_VALID = st.builds(lambda field, value: {"w": {**VALID_ENTRY, field: value}},
                       st.sampled_from(sorted(VALID_ENTRY)), st.one_of(
                           JSON_VALUE, st.lists(st.integers(-1, 1 << 64), min_size=2, max_size=2),
                           st.lists(st.integers(0, 1 << 40), max_size=12)))
HEADER = st.one_of(
    NEAR_VALID.map(dump),
    st.just(dump({"w": VALID_ENTRY})),
    st.dictionaries(st.text(max_size=10), st.one_of(ENTRY, JSON_VALUE), max_size=4).map(dump),
    st.dictionaries(st.just("__metadata__"), JSON_VALUE, max_size=1).map(dump),
    JSON_VALUE.map(dump),
    DEEP_JSON,
    st.binary(max_size=64),
)


@st.composite
def safetensors_files(draw) -> bytes:
    header = draw(HEADER)
    raw = header.encode("utf-8") if isinstance(header, str) else header
    data = draw(st.one_of(st.just(b"\0" * 16), st.binary(max_size=64)))
    return safetensors_bytes(raw, data, length=draw(DECLARED))


@FUZZ
@given(safetensors_files())
def test_fuzz_safetensors(data):
    with Scratch() as tmp:
        write(tmp / "model" / "config.json", LLAMA_CONFIG)
        write(tmp / "model" / "model.safetensors", data)
        cli("vram", "estimate", tmp / "model", "--format", "nf4")
        only(VramError, inspect_model, tmp / "model")
        peft_adapter(tmp / "loras" / "good")
        peft_adapter(tmp / "loras" / "fuzzed", weights=data)
        code, out = cli("adapters", "list", tmp / "loras", "--json")
        listed = {x["name"]: x for x in json.loads(out)}
        assert code == 0 and listed["good"]["status"] == "ok" and "fuzzed" in listed
        cli("adapters", "inspect", tmp / "loras" / "fuzzed")
        only(AdapterError, inspect_adapter, tmp / "loras" / "fuzzed")


# --------------------------------------------------------------------------- config.json

CONFIG_KEYS = ["model_type", "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "intermediate_size", "vocab_size", "max_position_embeddings", "head_dim",
               "sliding_window", "use_sliding_window", "layer_types", "sliding_window_pattern", "num_local_experts",
               "num_experts", "num_experts_per_tok", "moe_intermediate_size", "tie_word_embeddings", "torch_dtype",
               "text_config", "quantization_config", "attention_bias", "multi_query", "n_embd", "d_model"]
QUANT = st.one_of(JSON_VALUE, st.fixed_dictionaries({"quant_method": st.sampled_from(["gptq", "awq", "exl2",
                                                                                     "bitsandbytes", 5])},
                                                     optional={k: JSON_SCALAR for k in (
                                                         "bits", "group_size", "w_bit", "q_group_size",
                                                         "load_in_4bit", "bnb_4bit_quant_type")}))


@st.composite
def config_files(draw) -> str | bytes:
    text = draw(text_file(LLAMA_CONFIG, CONFIG_KEYS))
    if draw(st.integers(0, 4)) == 0:
        text = dump({**LLAMA_CONFIG, "quantization_config": draw(QUANT)})
    return text


@FUZZ
@given(config_files(), st.booleans())
def test_fuzz_config_json(text, advise):
    with Scratch() as tmp:
        write(tmp / "model" / "config.json", text)
        only(VramError, inspect_model, tmp / "model")
        if advise:
            cli("vram", "advise", tmp / "model", "--vram", "8", "--ram", "16")
        else:
            cli("vram", "estimate", tmp / "model", "--format", "fp16", "--mode", "training")


def test_fuzz_settings_are_bounded():
    """What makes the runs above cheap: few examples, no deadline flakiness, a fixed seed."""
    assert FUZZ.max_examples == EXAMPLES and FUZZ.deadline is None and FUZZ.derandomize


# --------------------------------------------------------------------------- adapter_config.json

ADAPTER_KEYS = ["peft_type", "r", "lora_alpha", "target_modules", "base_model_name_or_path", "use_rslora",
                "use_dora", "rank_pattern", "alpha_pattern"]
VALID_ADAPTER = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8,
                 "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "tiny"}


@FUZZ
@given(text_file(VALID_ADAPTER, ADAPTER_KEYS), st.text(max_size=4))
def test_fuzz_adapter_config(text, weights_word):
    with Scratch() as tmp:
        peft_adapter(tmp / "loras" / "good")
        peft_adapter(tmp / "loras" / "fuzzed", text)
        code, out = cli("adapters", "list", tmp / "loras", "--json")
        listed = {x["name"]: x for x in json.loads(out)}
        assert code == 0 and listed["good"]["status"] == "ok"
        assert listed["fuzzed"]["status"] in ("ok", "invalid")
        assert (listed["fuzzed"]["status"] == "invalid") == bool(listed["fuzzed"]["problem"])
        code, _ = cli("adapters", "list", tmp / "loras")
        assert code == 0
        cli("adapters", "inspect", tmp / "loras" / "fuzzed", "--json")
        only(AdapterError, inspect_adapter, tmp / "loras" / "fuzzed")
        cli("adapters", "bind", "Flint", "fuzzed=1", f"good={weights_word or 1}", "--dir", tmp / "loras",
            "--file", tmp / "bindings.yaml")
        # an estimate pointed at the adapter folder names its base model or the problem
        cli("vram", "estimate", tmp / "loras" / "fuzzed", "--format", "fp16")


def test_declared_sizes_are_never_allocated():
    """The largest lies a header can tell, each read in far less memory than it declares."""
    cases = [
        gguf_bytes(raw_kv=gguf_string("k") + struct.pack("<I", STR) + struct.pack("<Q", (1 << 64) - 1)),
        gguf_bytes(raw_kv=gguf_string("k") + struct.pack("<IIQ", ARR, STR, 1 << 62)),
        gguf_bytes(raw_kv=gguf_string("k") + struct.pack("<IIQ", ARR, ARR, 1 << 62)),
        gguf_bytes(n_kv=(1 << 24), n_tensors=1 << 24),
    ]
    with Scratch() as tmp:
        for i, data in enumerate(cases):
            code, _ = cli("vram", "estimate", write(tmp / f"lie{i}.gguf", data), "--format", "gguf-F32")
            assert code == 2
        write(tmp / "m" / "config.json", LLAMA_CONFIG)
        write(tmp / "m" / "model.safetensors", safetensors_bytes(b"{}", length=(1 << 64) - 1))
        assert cli("vram", "estimate", tmp / "m", "--format", "fp16")[0] == 2
    assert math.isfinite(PEAK_LIMIT)
