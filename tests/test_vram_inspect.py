"""Inspection reads sizes from headers and configs without loading weights, and names bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pocketpack.vram import VramError, inspect_model
from pocketpack.vram.estimate import estimate
from pocketpack.vram.gguf_header import read_gguf_header

DATA = Path(__file__).parent / "data" / "vram"
GIB = 1024 ** 3


@pytest.fixture(scope="module")
def gemma_gguf(default_model) -> Path:
    """The real Gemma 3 270M Q4_K_M file (the embedded model, assembled and checked once)."""
    return default_model


TINY_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
               "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
               "num_hidden_layers": 2, "vocab_size": 256, "max_position_embeddings": 512,
               "tie_word_embeddings": False, "torch_dtype": "float16"}


def _tiny_llama(folder: Path, sharded: bool = False) -> Path:
    """A real safetensors llama checkpoint (random fp16 weights) in HF naming."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    h, ff, kv, v = 64, 128, 32, 256
    rng = np.random.default_rng(0)
    w = lambda *shape: rng.standard_normal(shape).astype(np.float16)  # noqa: E731 - a one-line maker of random weights reads best inline
    tensors = {"model.embed_tokens.weight": w(v, h), "model.norm.weight": w(h), "lm_head.weight": w(v, h)}
    for i in range(2):
        p = f"model.layers.{i}."
        tensors.update({p + "self_attn.q_proj.weight": w(h, h), p + "self_attn.k_proj.weight": w(kv, h),
                        p + "self_attn.v_proj.weight": w(kv, h), p + "self_attn.o_proj.weight": w(h, h),
                        p + "mlp.gate_proj.weight": w(ff, h), p + "mlp.up_proj.weight": w(ff, h),
                        p + "mlp.down_proj.weight": w(h, ff), p + "input_layernorm.weight": w(h),
                        p + "post_attention_layernorm.weight": w(h)})
    if not sharded:
        save_file(tensors, str(folder / "model.safetensors"))
        return folder
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for fname, keys in halves.items():
        save_file({k: tensors[k] for k in keys}, str(folder / fname))
        weight_map.update({k: fname for k in keys})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def test_gguf_header_reader_matches_file(gemma_gguf):
    info = inspect_model(gemma_gguf)
    assert info.source == "gguf" and info.native == "gguf-Q4_K_M"
    assert info.arch.num_layers == 18 and info.arch.num_kv_heads == 1 and info.arch.head_dim == 256
    assert info.arch.vocab_size == 262144 and info.arch.tie_embeddings
    assert info.arch.sliding_window == 512
    header = read_gguf_header(gemma_gguf)
    # the last tensor ends exactly at the end of the file
    nbytes = {t.name: t.nbytes for t in info.tensors}
    end = max(header.data_offset + x.offset + nbytes[x.name] for x in header.tensors)
    assert end == gemma_gguf.stat().st_size


@pytest.mark.slow
def test_gguf_header_agrees_with_gguf_package(gemma_gguf, default_model_reader):
    reader = default_model_reader
    ours = {t.name: (t.dtype, t.shape, t.nbytes) for t in inspect_model(gemma_gguf).tensors}
    theirs = {t.name: (t.tensor_type.name, tuple(int(x) for x in t.shape), int(t.n_bytes)) for t in reader.tensors}
    assert ours == theirs
    assert read_gguf_header(gemma_gguf).data_offset == reader.data_offset


def test_truncated_gguf_is_named(gemma_gguf, tmp_path):
    data = gemma_gguf.read_bytes()
    inside_header = tmp_path / "cut-header.gguf"
    inside_header.write_bytes(data[: 1 << 20])
    inside_data = tmp_path / "cut-data.gguf"
    inside_data.write_bytes(data[: 12 << 20])
    for path in (inside_header, inside_data):
        with pytest.raises(VramError, match="truncated GGUF"):
            inspect_model(path)


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(VramError, match="not a GGUF"):
        inspect_model(bad)


def test_folder_without_model(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(VramError, match="neither config.json nor a .gguf"):
        inspect_model(tmp_path)


def test_unknown_architecture_fields(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mystery", "width": 10}))
    with pytest.raises(VramError, match="unknown architecture fields.*hidden_size"):
        inspect_model(tmp_path)


def test_adapter_folder_points_to_its_base(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "base_model_name_or_path": "org/base"}))
    with pytest.raises(VramError, match="LoRA adapter.*org/base"):
        inspect_model(tmp_path)


def test_safetensors_headers_give_exact_sizes(tmp_path):
    folder = _tiny_llama(tmp_path / "tiny")
    info = inspect_model(folder)
    assert info.source == "safetensors" and info.exact_tensors
    assert info.n_params == info.arch.n_params()  # synthesised shapes agree with the real ones
    e = estimate(info, "fp16", ctx=256)
    assert e.file_gib * GIB == pytest.approx((folder / "model.safetensors").stat().st_size)
    assert e.weights_gib * GIB == 2 * info.n_params


def test_sharded_index_reads_every_shard(tmp_path):
    single = inspect_model(_tiny_llama(tmp_path / "one"))
    sharded = inspect_model(_tiny_llama(tmp_path / "two", sharded=True))
    assert sharded.exact_tensors and sharded.n_params == single.n_params
    assert sorted(t.name for t in sharded.tensors) == sorted(t.name for t in single.tensors)


def test_missing_shard_falls_back_to_config(tmp_path):
    folder = _tiny_llama(tmp_path / "two", sharded=True)
    (folder / "model-00002-of-00002.safetensors").unlink()
    info = inspect_model(folder)
    assert not info.exact_tensors and any("missing" in n for n in info.notes)


def test_truncated_safetensors(tmp_path):
    folder = _tiny_llama(tmp_path / "tiny")
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(VramError, match="truncated safetensors"):
        inspect_model(folder)


def test_gptq_checkpoint_takes_only_its_format(tmp_path):
    cfg = dict(TINY_CONFIG, quantization_config={"quant_method": "gptq", "bits": 4, "group_size": 128})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    info = inspect_model(tmp_path)
    assert info.native == "gptq-4bit-g128"
    assert estimate(info, "gptq-4bit-g128").weights_gib > 0
    with pytest.raises(VramError, match="cannot be loaded as fp16"):
        estimate(info, "fp16")


def test_awq_quant_config_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIG))
    (tmp_path / "quant_config.json").write_text(json.dumps({"w_bit": 4, "q_group_size": 128, "zero_point": True}))
    assert inspect_model(tmp_path).native == "awq-4bit-g128"


def test_config_json_alone(tmp_path):
    shutil.copy(DATA / "llama-2-70b.json", tmp_path / "config.json")
    info = inspect_model(tmp_path / "config.json")
    assert not info.exact_tensors and info.file_bytes is None
    assert info.n_params == pytest.approx(68.98e9, rel=0.002)  # Llama-2-70B's published 69B
