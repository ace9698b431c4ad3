"""Hostile model files and adapter folders get one line, never a traceback (issue 11).

"Tracebacks instead of one line (exit 2) on: a GGUF whose metadata nests arrays 100k deep, a
safetensors header of deeply nested JSON (RecursionError), NaN/Infinity in config.json
(OverflowError)" and "One bad adapter hides the whole library: an adapter_config.json with
"r": "eight" makes adapters list end in a traceback listing nothing." Each case runs through
``pocketpack.cli.main`` as a user would, and checks the exact line.
"""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
from pathlib import Path

import pytest

from pocketpack.cli import main
from tests.helpers.header_files import (
    ARR,
    LLAMA_CONFIG,
    STR,
    U32,
    gguf_bytes,
    gguf_string,
    nested_array,
    peft_adapter,
    safetensors_bytes,
    tiny_safetensors,
    write,
)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(capsys, *argv) -> str:
    """The single stderr line of a refused command (exit 2, nothing on stdout, no traceback)."""
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pocketpack: ")
    return lines[0]


def estimate(path: Path, fmt: str = "fp16") -> list[str]:
    return ["vram", "estimate", str(path), "--format", fmt]


# --------------------------------------------------------------------------- GGUF

def test_the_hand_built_gguf_is_read(capsys, tmp_path):
    """The valid file the malformed ones below start from is estimated (so each refusal is
    the malformed part's doing)."""
    code, out, err = run(capsys, *estimate(write(tmp_path / "tiny.gguf", gguf_bytes()), "gguf-F32"))
    assert code == 0 and err == "" and out.startswith("tiny  gguf-F32")


def test_gguf_arrays_nested_100k_deep(capsys, tmp_path):
    raw = gguf_string("deep") + struct.pack("<I", ARR) + nested_array(100_000)
    path = write(tmp_path / "deep.gguf", gguf_bytes(raw_kv=raw))
    assert one_line(capsys, *estimate(path, "gguf-F32")) == \
        "pocketpack: deep.gguf: damaged GGUF header (arrays nested more than 8 deep)"


@pytest.mark.parametrize("raw,expected", [
    # a string claiming 2**63 bytes, an array claiming 2**40 items: refused before any allocation
    (gguf_string("k") + struct.pack("<I", STR) + struct.pack("<Q", 1 << 63) + b"abc",
     "truncated GGUF (the file ends inside its header, at {size} bytes)"),
    (gguf_string("k") + struct.pack("<IIQ", ARR, U32, 1 << 40) + b"\0" * 64,
     "truncated GGUF (the file ends inside its header, at {size} bytes)"),
    # a key longer than the GGUF spec allows (65535 bytes)
    (gguf_string("k" * 70_000) + struct.pack("<II", U32, 1),
     "damaged GGUF header (a 70000-byte string where at most 65535 are allowed)"),
    (gguf_string("k") + struct.pack("<I", 99), "damaged GGUF header (unknown GGUF value type 99)"),
])
def test_gguf_huge_declared_sizes(capsys, tmp_path, raw, expected):
    path = write(tmp_path / "huge.gguf", gguf_bytes(raw_kv=raw))
    tracemalloc.start()
    try:
        line = one_line(capsys, *estimate(path, "gguf-F32"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert line == "pocketpack: huge.gguf: " + expected.format(size=path.stat().st_size)
    assert peak < 32 * 1024 * 1024  # what was declared is never allocated


def test_gguf_counts_larger_than_the_file(capsys, tmp_path):
    path = write(tmp_path / "counts.gguf", gguf_bytes(n_kv=1 << 20))
    assert one_line(capsys, *estimate(path, "gguf-F32")) == \
        f"pocketpack: counts.gguf: truncated GGUF (the file ends inside its header, at {path.stat().st_size} bytes)"


def test_truncated_gguf(capsys, tmp_path):
    whole = gguf_bytes()
    for cut in (3, 20, 200):
        path = write(tmp_path / "cut.gguf", whole[:cut])
        line = one_line(capsys, *estimate(path, "gguf-F32"))
        assert line in (f"pocketpack: cut.gguf: truncated GGUF (the file ends inside its header, at {cut} bytes)",
                        "pocketpack: cut.gguf: not a GGUF file (no GGUF magic)"), line
    path = write(tmp_path / "cut.gguf", whole[:-100])  # the header is whole, the tensor data is not
    assert "truncated GGUF" in one_line(capsys, *estimate(path, "gguf-F32"))


@pytest.mark.parametrize("key,value,expected", [
    ("llama.block_count", "two", 'llama.block_count must be a whole number from 1 to 4096 (got "two")'),
    ("llama.block_count", (U32, 1 << 30), "llama.block_count must be a whole number from 1 to 4096 (got 1073741824)"),
    ("llama.embedding_length", float("nan"),
     "llama.embedding_length must be a whole number from 1 to 16777216 (got nan)"),
    ("llama.attention.head_count", ["x"],
     'llama.attention.head_count must be a whole number from 0 to 65536 (got "x")'),
    ("general.architecture", (U32, 7), "general.architecture must be a string"),
])
def test_gguf_metadata_of_the_wrong_type(capsys, tmp_path, key, value, expected):
    from tests.helpers.header_files import TINY_GGUF_META

    path = write(tmp_path / "typed.gguf", gguf_bytes({**TINY_GGUF_META, key: value}))
    assert one_line(capsys, *estimate(path, "gguf-F32")) == f"pocketpack: typed.gguf: {expected}"


def test_a_fifo_is_refused_not_waited_on(capsys, tmp_path):
    """Opening a fifo to read blocks until someone writes: a fifo named like an adapter in the
    library is flagged, and the listing does not hang."""
    peft_adapter(tmp_path / "loras" / "good")
    os.mkfifo(tmp_path / "loras" / "pipe.gguf")
    code, out, _ = run(capsys, "adapters", "list", str(tmp_path / "loras"), "--json")
    listed = {x["name"]: x for x in json.loads(out)}
    assert code == 0 and listed["good"]["status"] == "ok"
    assert listed["pipe"]["problem"].endswith("pipe.gguf: not a readable GGUF file "
                                              "(not a regular file (a folder, fifo, device or socket))")


# --------------------------------------------------------------------------- safetensors

def model_folder(tmp_path: Path, weights: bytes, config: dict | None = None) -> Path:
    folder = tmp_path / "model"
    write(folder / "config.json", config or LLAMA_CONFIG)
    write(folder / "model.safetensors", weights)
    return folder


@pytest.mark.parametrize("weights,expected", [
    (safetensors_bytes("[" * 100_000 + "]" * 100_000), "corrupt safetensors header (nested more than 64 levels deep)"),
    (safetensors_bytes('{"a": ' * 5_000 + "1" + "}" * 5_000), "corrupt safetensors header (nested more than 64 levels deep)"),
    (safetensors_bytes(b"{}", length=1 << 40), "corrupt safetensors header (claims 1099511627776 bytes, file has 10)"),
    (safetensors_bytes(b'{"w": 1}', length=100), "corrupt safetensors header (claims 100 bytes, file has 16)"),
    (b"\x05\0\0", "not a safetensors file (3 bytes)"),
    (safetensors_bytes("[1, 2]"), "corrupt safetensors header (expected a JSON object, found an array)"),
    (safetensors_bytes(b'{"\xff": 1}'), "corrupt safetensors header (not UTF-8: byte 0xff at 2)"),
    (safetensors_bytes({"w": {"dtype": "F32", "shape": [1e308], "data_offsets": [0, 4]}}),
     "corrupt safetensors header (bad entry for w)"),
    (safetensors_bytes({"w": {"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}}),
     "corrupt safetensors header (bad entry for w)"),
    (safetensors_bytes({"w": {"dtype": "F32", "shape": [1] * 100, "data_offsets": [0, 4]}}),
     "corrupt safetensors header (bad entry for w)"),
    (safetensors_bytes('{"w": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 4]}}'),
     "corrupt safetensors header (Infinity is not a number JSON allows)"),
    (safetensors_bytes({"__metadata__": [1], "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
     "corrupt safetensors header (__metadata__ is an array, not an object)"),
])
def test_safetensors_hostile_headers(capsys, tmp_path, weights, expected):
    folder = model_folder(tmp_path, weights)
    assert one_line(capsys, *estimate(folder)) == f"pocketpack: model.safetensors: {expected}"


def test_duplicate_keys_keep_the_last_as_safetensors_does(capsys, tmp_path):
    header = ('{"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}, '
              '"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}')
    folder = model_folder(tmp_path, safetensors_bytes(header, b"\0" * 16))
    from pocketpack.fileformats import read_safetensors_header

    assert read_safetensors_header(folder / "model.safetensors")[0]["w"]["shape"] == [2, 2]
    assert run(capsys, *estimate(folder))[0] == 0


# --------------------------------------------------------------------------- config.json

@pytest.mark.parametrize("text,expected", [
    (json.dumps({**LLAMA_CONFIG, "hidden_size": float("nan")}), "not valid JSON (NaN is not a number JSON allows)"),
    (json.dumps({**LLAMA_CONFIG, "hidden_size": float("inf")}), "not valid JSON (Infinity is not a number JSON allows)"),
    (json.dumps({**LLAMA_CONFIG, "rope_theta": float("-inf")}), "not valid JSON (-Infinity is not a number JSON allows)"),
    (json.dumps(LLAMA_CONFIG).replace('"hidden_size": 64', '"hidden_size": 1e400'), "not valid JSON (1e400 is out of range)"),
    (json.dumps(LLAMA_CONFIG).replace('"hidden_size": 64', '"hidden_size": ' + "9" * 5000),
     "not valid JSON (a 5000-digit number)"),
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, "not valid JSON (nested more than 64 levels deep)"),
    ("[" * 200 + "]" * 200, "not valid JSON (nested more than 64 levels deep)"),
    ("[1, 2, 3]", "expected a JSON object, found an array"),
    ('"llama"', "expected a JSON object, found a string"),
    ("", "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
])
def test_config_json_hostile_text(capsys, tmp_path, text, expected):
    path = write(tmp_path / "m" / "config.json", text)
    assert one_line(capsys, *estimate(path.parent)) == f"pocketpack: {path}: {expected}"


def test_config_json_not_utf8(capsys, tmp_path):
    path = write(tmp_path / "m" / "config.json", b'{"model_type": "\xff\xfe"}')
    assert one_line(capsys, *estimate(path.parent)) == f"pocketpack: {path}: not valid JSON (not UTF-8: byte 0xff at 16)"


@pytest.mark.parametrize("field,value,expected", [
    ("hidden_size", "4096", 'hidden_size must be a whole number from 1 to 16777216 (got "4096")'),
    ("hidden_size", -64, "hidden_size must be a whole number from 1 to 16777216 (got -64)"),
    ("hidden_size", True, "hidden_size must be a whole number from 1 to 16777216 (got true)"),
    ("hidden_size", 1e308, "hidden_size must be a whole number from 1 to 16777216 (got 1e+308)"),
    ("hidden_size", 0, "hidden_size must be a whole number from 1 to 16777216 (got 0)"),
    ("num_hidden_layers", 10 ** 9, "num_hidden_layers must be a whole number from 1 to 4096 (got 1000000000)"),
    ("vocab_size", [1, [2]], "vocab_size must be a whole number or a list of them"),
    ("num_attention_heads", 1000, "1000 attention heads for a hidden size of 64: not a real model"),
    ("model_type", {"a": 1}, "model_type must be a string (got dict)"),
    ("quantization_config", "gptq", 'quantization_config must be a JSON object (got "gptq")'),
    ("quantization_config", {"quant_method": "gptq", "bits": "four"},
     'bits must be a whole number from 1 to 16 (got "four")'),
    ("sliding_window", "4096", 'sliding_window must be a whole number from 0 to 1099511627776 (got "4096")'),
])
def test_config_json_fields_of_the_wrong_type(capsys, tmp_path, field, value, expected):
    path = write(tmp_path / "m" / "config.json", {**LLAMA_CONFIG, field: value})
    assert one_line(capsys, *estimate(path.parent)) == f"pocketpack: m/config.json: {expected}"


def test_config_json_duplicate_keys_keep_the_last_as_transformers_does(capsys, tmp_path):
    text = json.dumps(LLAMA_CONFIG)[:-1] + ', "hidden_size": 128}'
    code, _, _ = run(capsys, *estimate(write(tmp_path / "m" / "config.json", text).parent, "fp16"))
    assert code == 0
    from pocketpack.vram import inspect_model

    assert inspect_model(tmp_path / "m").arch.hidden_size == 128


@pytest.mark.parametrize("index,expected", [
    ({"weight_map": ["model.safetensors"]}, 'weight_map must be a JSON object (got an array)'),
    ({"weight_map": {"w": 5}}, "weight_map must map tensor names to file names"),
    ({"weight_map": {"w": "a\u0000b"}}, "shard 'a\\x00b' lies outside the model folder"),
    ({"weight_map": {"w": "../../etc/passwd"}}, "shard '../../etc/passwd' lies outside the model folder"),
])
def test_shard_index_of_the_wrong_shape(capsys, tmp_path, index, expected):
    folder = model_folder(tmp_path, tiny_safetensors())
    index_path = write(folder / "model.safetensors.index.json", index)
    line = one_line(capsys, *estimate(folder))
    assert line in (f"pocketpack: {index_path}: {expected}", f"pocketpack: {index_path.name}: {expected}"), line


def test_presets_and_host_checks_share_the_readers(tmp_path):
    """The other readers of these headers (presets' model class, llama.cpp's context length)
    get the same one-line error type, never a RecursionError."""
    from pocketpack.errors import PocketPackError
    from pocketpack.fileformats import FormatError, read_gguf_header
    from pocketpack.presets.apply import class_of  # noqa: F401  (presets size models via inspect_model)
    from pocketpack.vram import inspect_model

    raw = gguf_string("deep") + struct.pack("<I", ARR) + nested_array(100_000)
    path = write(tmp_path / "deep.gguf", gguf_bytes({"general.architecture": "llama"}, raw_kv=raw))
    with pytest.raises(FormatError, match="nested more than 8 deep"):
        read_gguf_header(path, stop_key_suffix=".context_length")
    with pytest.raises(PocketPackError):
        inspect_model(path)


# --------------------------------------------------------------------------- the adapter library

@pytest.fixture
def library(tmp_path) -> Path:
    """A library with two good adapters and one of every kind of bad one."""
    lib = tmp_path / "loras"
    peft_adapter(lib / "good")
    peft_adapter(lib / "zeta-good", r=8)
    peft_adapter(lib / "rank-word", {"r": "eight"})
    peft_adapter(lib / "nan-alpha", '{"peft_type": "LORA", "r": 4, "lora_alpha": NaN}')
    peft_adapter(lib / "broken-json", '{"r": 4,')
    peft_adapter(lib / "not-safetensors", weights=b"PK\x03\x04 this is a zip, not safetensors")
    peft_adapter(lib / "targets-dict", {"target_modules": {"q_proj": 1}})
    (peft_adapter(lib / "no-weights") / "adapter_model.safetensors").unlink()
    outside = peft_adapter(tmp_path / "elsewhere" / "outside")
    (lib / "linked-out").symlink_to(outside, target_is_directory=True)
    return lib


BAD = {
    "rank-word": 'adapter_config.json: r must be a whole number from 1 to 65536 (got "eight")',
    "nan-alpha": "adapter_config.json: not valid JSON (NaN is not a number JSON allows)",
    "broken-json": "adapter_config.json: not valid JSON (Expecting property name enclosed in double quotes: "
                   "line 1 column 9 (char 8))",
    "not-safetensors": "adapter_model.safetensors: corrupt safetensors header (claims",
    "targets-dict": "adapter_config.json: target_modules must be a string or a list of strings (got an object)",
    "no-weights": "missing adapter_model.safetensors",
    "linked-out": "links outside the adapter folder",
}


def test_list_shows_every_adapter_and_flags_the_bad_ones(capsys, library):
    code, out, err = run(capsys, "adapters", "list", str(library))
    assert code == 0 and err == ""
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {"good", "zeta-good", *BAD}
    assert "!" not in rows["good"] and "!" not in rows["zeta-good"]
    for name, reason in BAD.items():
        assert f"! {library / name}" in rows[name] or "! " in rows[name], rows[name]
        assert reason in rows[name], (name, rows[name])


def test_list_json_has_status_and_keeps_every_field(capsys, library):
    code, out, _ = run(capsys, "adapters", "list", str(library), "--json")
    assert code == 0
    listed = {x["name"]: x for x in json.loads(out)}
    assert set(listed) == {"good", "zeta-good", *BAD}
    good = listed["good"]
    assert good["status"] == "ok" and good["problem"] is None and good["rank"] == 4
    for key in ("name", "path", "format", "rank", "ranks", "alpha", "target_modules", "base_model", "architecture",
                "size_bytes", "n_params", "n_layers", "use_rslora", "use_dora", "rank_pattern", "alpha_pattern",
                "training", "problem"):
        assert key in good
    for name, reason in BAD.items():
        assert listed[name]["status"] == "invalid" and reason in listed[name]["problem"], listed[name]
        assert "\n" not in listed[name]["problem"]


def test_inspect_of_a_bad_adapter_is_one_line(capsys, library):
    line = one_line(capsys, "adapters", "inspect", str(library / "rank-word"))
    assert line == f"pocketpack: {library / 'rank-word' / 'adapter_config.json'}: " \
                   'r must be a whole number from 1 to 65536 (got "eight")'


def test_bind_to_a_bad_adapter_is_refused_in_one_line(capsys, library, tmp_path):
    bindings = tmp_path / "bindings.yaml"
    line = one_line(capsys, "adapters", "bind", "Flint", "rank-word=1", "--dir", str(library), "--file", str(bindings))
    assert line.startswith("pocketpack: cannot bind 'rank-word': ") and BAD["rank-word"] in line
    assert not bindings.exists()
    line = one_line(capsys, "adapters", "bind", "Flint", "good=nan", "--dir", str(library), "--file", str(bindings))
    assert line == "pocketpack: good=nan: weight must be a number"
    code, out, _ = run(capsys, "adapters", "bind", "Flint", "good=0.5", "later=1", "--dir", str(library),
                       "--file", str(bindings))
    assert code == 0 and out == "Flint -> good=0.5, later=1\n"  # a name not there yet may be bound


def test_names_reach_no_adapter_linked_outside(library):
    from pocketpack.adapters import AdapterError
    from pocketpack.adapters.library import find

    with pytest.raises(AdapterError, match="links outside the adapter folder"):
        find(library, "linked-out")
    inner = library / "good" / "adapter_config.json"
    inner.unlink()
    inner.symlink_to(library.parent / "elsewhere" / "outside" / "adapter_config.json")
    with pytest.raises(AdapterError, match="links outside the adapter folder"):
        find(library, "good")


def test_the_tab_lists_every_adapter_with_its_reason(library, tmp_path, monkeypatch):
    """The adapter-switcher tab (the script's own table builder) as a user opens it."""
    import importlib.util
    from types import SimpleNamespace

    from pocketpack.host import shared

    monkeypatch.setattr(shared, "user_data_dir", tmp_path / "user_data")
    monkeypatch.setattr(shared, "args", SimpleNamespace(lora_dir=str(library)))
    monkeypatch.setattr(shared, "backend", None, raising=False)
    monkeypatch.setattr(shared, "model", None)
    monkeypatch.setattr(shared, "lora_names", [])
    script_path = Path(__file__).resolve().parents[1] / "extensions" / "adapter-switcher" / "script.py"
    spec = importlib.util.spec_from_file_location("adapter_switcher_hardening", script_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    lib, _, _, _ = script.engine().tables()
    status = {row[0]: row[-1] for row in lib}
    assert set(status) == {"good", "zeta-good", *BAD}
    assert status["good"] == "load a model to use"
    for name, reason in BAD.items():
        assert status[name].startswith("cannot use: ") and reason in status[name], status[name]
    bindings, msg = script.engine().bind("Flint", "rank-word=1", "live", False)
    assert msg.startswith("**Not done:** cannot bind 'rank-word': ") and "\n" not in msg and bindings == []


def test_switching_to_a_bad_adapter_is_one_line_and_keeps_the_model(library, tmp_path):
    from pocketpack.adapters import AdapterError
    from pocketpack.adapters.session import AdapterSession
    from tests.helpers.tiny_adapters import tiny_llama

    model = tiny_llama(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2)
    s = AdapterSession([library], tmp_path / "b.yaml")
    assert s.switch(model, {"good": 1.0}) == ["good"]
    for name, reason in BAD.items():
        with pytest.raises(AdapterError) as err:
            s.switch(model, {name: 1.0})
        assert "\n" not in str(err.value) and reason in str(err.value), str(err.value)
    assert s.manager(model).lora_names == ["good"]
