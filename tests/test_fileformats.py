"""The shared header readers: JSON objects, safetensors headers and GGUF headers."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from pocketpack.fileformats import FormatError, read_gguf_header, read_json_object, read_safetensors_header


def _safetensors(path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _one_line(exc: pytest.ExceptionInfo, path) -> str:
    text = str(exc.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    return text


# --------------------------------------------------------------------------- JSON

def test_json_object_and_its_errors(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"r": 8}')
    assert read_json_object(good) == {"r": 8}
    for name, text, problem in [("bad.json", "{not json", "not valid JSON"),
                                ("list.json", "[1, 2]", "expected a JSON object")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(FormatError, match=problem) as err:
            read_json_object(tmp_path / name)
        _one_line(err, tmp_path / name)
    with pytest.raises(FormatError, match="cannot read") as err:
        read_json_object(tmp_path / "missing.json")
    _one_line(err, tmp_path / "missing.json")


# --------------------------------------------------------------------------- safetensors

def test_safetensors_header_matches_the_writer(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": np.zeros((3, 4), np.float32), "b": np.ones(5, np.int8)}, str(path), metadata={"format": "pt"})
    tensors, meta = read_safetensors_header(path)
    assert meta == {"format": "pt"}
    assert {k: (v["dtype"], v["shape"]) for k, v in tensors.items()} == {"a": ("F32", [3, 4]), "b": ("I8", [5])}


def test_truncated_safetensors(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": np.zeros((16, 16), np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(FormatError, match="truncated safetensors file") as err:
        read_safetensors_header(path)
    _one_line(err, path)


@pytest.mark.parametrize("content,problem", [
    (b"\x01\x02", "not a safetensors file"),
    (struct.pack("<Q", 1 << 40) + b"{}", r"corrupt safetensors header \(claims"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", "corrupt safetensors header"),
    (struct.pack("<Q", 2) + b"[]", "corrupt safetensors header"),
])
def test_damaged_safetensors_headers(tmp_path, content, problem):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=problem) as err:
        read_safetensors_header(path)
    _one_line(err, path)


@pytest.mark.parametrize("entry,problem", [
    ({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "truncated safetensors file"),  # past the end
    ({"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}, "has 8 bytes, needs 16"),
    ({"dtype": "Q4", "shape": [4], "data_offsets": [0, 8]}, "unknown dtype 'Q4' for w"),
    ({"dtype": "F32", "shape": [2]}, "bad entry for w"),
])
def test_safetensors_entries_are_checked(tmp_path, entry, problem):
    path = tmp_path / "bad.safetensors"
    _safetensors(path, {"w": entry}, b"\0" * 8)
    with pytest.raises(FormatError, match=problem) as err:
        read_safetensors_header(path)
    _one_line(err, path)


# --------------------------------------------------------------------------- GGUF

@pytest.fixture
def small_gguf(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "small.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.context_length", 2048)
    w.add_float32("adapter.lora.alpha", 16.0)
    w.add_string("general.type", "adapter")
    w.add_bool("flag", True)
    w.add_array("tokens", [f"t{i}" for i in range(100)])
    w.add_array("scores", [float(i) for i in range(100)])
    w.add_array("short", [1, 2, 3])
    w.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((8, 32), np.float32))
    w.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((32, 8), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_header_agrees_with_gguf_reader(small_gguf):
    from gguf import GGUFReader

    reader = GGUFReader(str(small_gguf), "r")
    header = read_gguf_header(small_gguf, keep_array=None)
    assert header.data_offset == reader.data_offset and header.file_size == small_gguf.stat().st_size
    assert [(t.name, t.shape, t.type_name, t.offset) for t in header.tensors] == \
        [(t.name, tuple(int(x) for x in t.shape), t.tensor_type.name, int(t.data_offset - reader.data_offset))
         for t in reader.tensors]
    meta = header.metadata
    assert meta["general.architecture"] == "llama" and meta["general.type"] == "adapter"
    assert meta["llama.context_length"] == 2048 and meta["adapter.lora.alpha"] == 16.0 and meta["flag"] is True
    tokens = reader.fields["tokens"]
    assert meta["tokens"] == [bytes(tokens.parts[i]).decode() for i in tokens.data]
    assert meta["scores"][:3] == [0.0, 1.0, 2.0] and meta["short"] == [1, 2, 3]


def test_gguf_long_arrays_are_skipped_and_early_stop(small_gguf):
    header = read_gguf_header(small_gguf)
    assert header.metadata["tokens"] == {"__array_len__": 100} and header.metadata["short"] == [1, 2, 3]
    assert len(header.tensors) == 2
    early = read_gguf_header(small_gguf, stop_key_suffix=".context_length")
    assert early.metadata["llama.context_length"] == 2048 and "general.type" not in early.metadata
    assert early.tensors == [] and early.data_offset is None


def test_truncated_and_foreign_gguf(small_gguf, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(small_gguf.read_bytes()[:200])
    with pytest.raises(FormatError, match="truncated GGUF") as err:
        read_gguf_header(cut)
    _one_line(err, cut)
    png = tmp_path / "png.gguf"
    png.write_bytes(b"\x89PNG" + b"\0" * 64)
    with pytest.raises(FormatError, match="not a GGUF file"):
        read_gguf_header(png)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    with pytest.raises(FormatError, match="damaged GGUF header"):
        read_gguf_header(garbage)


def test_real_gguf_header(default_model, tmp_path):
    header = read_gguf_header(default_model)
    meta = header.metadata
    assert meta["general.architecture"] == "gemma3" and meta["gemma3.block_count"] == 18
    assert meta["tokenizer.ggml.tokens"] == {"__array_len__": 262144}
    assert header.data_offset % meta.get("general.alignment", 32) == 0
    assert header.data_offset < header.tensor_data_end < header.file_size
    early = read_gguf_header(default_model, stop_key_suffix=".context_length")
    assert early.metadata["gemma3.context_length"] == meta["gemma3.context_length"] > 0
    cut = tmp_path / "cut.gguf"
    with default_model.open("rb") as f:
        cut.write_bytes(f.read(1 << 20))
    with pytest.raises(FormatError, match="truncated GGUF"):
        read_gguf_header(cut)


@pytest.mark.slow
def test_real_gguf_agrees_with_gguf_reader(default_model, default_model_reader):
    reader = default_model_reader
    header = read_gguf_header(default_model)
    assert header.data_offset == reader.data_offset
    assert {t.name: (t.shape, t.type_name) for t in header.tensors} == \
        {t.name: (tuple(int(x) for x in t.shape), t.tensor_type.name) for t in reader.tensors}
    for key in ("general.architecture", "gemma3.context_length", "gemma3.embedding_length", "tokenizer.ggml.model"):
        f = reader.fields[key]
        value = f.parts[f.data[0]]
        expected = bytes(value).decode() if isinstance(header.metadata[key], str) else value.tolist()[0]
        assert header.metadata[key] == expected
