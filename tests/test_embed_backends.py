"""Embedding engines: OpenVINO where it can run the model, torch otherwise, with vectors a
store can mix (one model name for both), and nothing sent anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pocketpack.retrieval.embed import Embedder, EmbeddingError

pytestmark = pytest.mark.slow  # every test here loads the real embedding model

REPO = Path(__file__).resolve().parents[1]

TEXTS = [
    "",
    "cat",
    "My sister Marguerite lives in Lisbon and teaches chemistry.",
    "When are the compost bins emptied?",
    # longer than the model's 256 tokens: truncated the same way by both engines
    "And the flood was forty days upon the earth; and the waters increased, and bare up the ark. " * 30,
] + [f"Note {i}: the quarterly report for Zentrix Corp is due on day {i}." for i in range(12)]


@pytest.fixture(scope="module")
def torch_embedder():
    return Embedder(backend="torch")


@pytest.fixture(scope="module")
def openvino_embedder():
    return Embedder(backend="openvino")


@pytest.mark.parametrize("n", [1, 3, len(TEXTS)])  # one thread below 9 texts, all threads above
def test_openvino_vectors_match_torch_so_a_store_can_mix_them(torch_embedder, openvino_embedder, n):
    assert openvino_embedder.engine == "openvino" and torch_embedder.engine == "torch"
    assert openvino_embedder.name == torch_embedder.name  # a store does not re-embed
    a, b = torch_embedder.embed(TEXTS[:n]), openvino_embedder.embed(TEXTS[:n])
    assert a.shape == b.shape == (n, 384) and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    assert np.min(np.sum(a * b, axis=1)) > 0.999


def test_order_of_texts_is_kept_whatever_their_lengths(openvino_embedder):
    forward = openvino_embedder.embed(TEXTS)
    backward = openvino_embedder.embed(TEXTS[::-1])[::-1]
    assert np.allclose(forward, backward, atol=2e-3)
    assert forward[2] @ forward[3] < forward[5] @ forward[6]  # two notes are closer than unrelated lines


def test_a_one_shot_query_never_waits_for_a_conversion_and_a_batch_uses_openvino():
    e = Embedder()
    e.embed(["what pet do I own?"])
    assert e.engine == "torch"  # one text: torch answers before a conversion would end
    e.embed(TEXTS)  # a document's chunks: converted first
    assert e.engine == "openvino"


def test_a_second_query_converts_in_the_background():
    e = Embedder()
    e.embed(["first question"])
    e.embed(["second question"])  # starts the conversion, answered by torch meanwhile
    assert e.prepare() == "openvino"  # waits for it
    assert e.embed(["third question"]).shape == (1, 384)


def test_without_openvino_auto_stays_on_torch_and_openvino_asked_for_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    e = Embedder()
    assert e.prepare() == "torch"
    assert e.embed(TEXTS).shape == (len(TEXTS), 384)
    with pytest.raises(EmbeddingError, match="pip install openvino"):
        Embedder(backend="openvino")


def test_a_bad_backend_name_is_one_clear_error(monkeypatch):
    with pytest.raises(EmbeddingError, match="auto, openvino or torch"):
        Embedder(backend="onnx")
    monkeypatch.setenv("POCKETPACK_EMBED_BACKEND", "tensorrt")
    with pytest.raises(EmbeddingError, match="auto, openvino or torch"):
        Embedder()


def test_openvino_never_phones_home(tmp_path):
    """``import openvino`` alone would send a Google Analytics event and write ~/intel; so
    would ``import gptqmodel``, which imports OpenVINO (the GPTQ loader's path)."""
    script = textwrap.dedent("""
        import pocketpack
        import gptqmodel  # imports openvino itself
        from pocketpack.retrieval.embed import Embedder
        e = Embedder(backend="openvino")
        e.embed(["hello"] * 12)
        import openvino.tools.ovc.telemetry_utils as t
        print(t.tm.__name__)
    """)
    env = dict(os.environ, HOME=str(tmp_path), USERPROFILE=str(tmp_path), PYTHONPATH=str(REPO))
    env.pop("CI", None)  # OpenVINO stays quiet in CI on its own; a user's machine is not CI
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].endswith("telemetry_stub")
    assert not (tmp_path / "intel").exists()


def test_an_openvino_failure_never_loses_an_embedding(monkeypatch, torch_embedder):
    import pocketpack.retrieval.openvino_runtime as runtime

    def broken_init(self, *a, **k):
        raise RuntimeError("compile failed: out of memory")

    e = Embedder()
    with monkeypatch.context() as m:
        m.setattr(runtime.OpenVinoEncoder, "__init__", broken_init)
        assert e.prepare() == "torch"  # a conversion that crashes leaves torch embedding
    assert np.min(np.sum(e.embed(TEXTS) * torch_embedder.embed(TEXTS), axis=1)) > 0.999

    e = Embedder()
    assert e.prepare() == "openvino"
    monkeypatch.setattr(e._openvino, "encode", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("infer failed")))
    vectors = e.embed(TEXTS[:3])  # the failed batch is embedded by torch instead
    assert e.engine == "torch"
    assert np.min(np.sum(vectors * torch_embedder.embed(TEXTS[:3]), axis=1)) > 0.999
