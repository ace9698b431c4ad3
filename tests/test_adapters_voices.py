"""Voices trained on a GGUF model (issue 13): "`pocketpack adapters train --base MODEL.gguf` works:
the Transformers weights are obtained from the GGUF itself … cached once on disk next to the model
with a manifest … converted to a GGUF LoRA automatically and both forms land in user_data/loras/NAME/".

Most of it runs on a tiny Gemma 3 written as an F32 GGUF (seconds); one slow test trains a few
steps on the real embedded Gemma 3 270M Q4_K_M and switches the result in llama.cpp.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pocketpack.adapters import AdapterError, AdapterManager, inspect_adapter
from pocketpack.adapters.gguf_base import MANIFEST, cache_folder, hf_base_from_gguf
from pocketpack.cli import main
from tests.helpers.tiny_adapters import llama_cpp_logits, tiny_gemma3, write_gemma3_gguf

llama_cpp = pytest.importorskip("llama_cpp")
REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line(rc: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("pocketpack: "), err
    return lines[0]


def first_lines(voice: str, n: int, folder: Path) -> Path:
    """``folder/VOICE.txt``: the first ``n`` training lines of a shipped voice."""
    lines = (REPO / "pocketpack" / "adapters" / "corpora" / f"{voice}.train.txt").read_text(encoding="utf-8").splitlines()
    path = folder / f"{voice}.txt"
    path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """models/tiny.gguf (a Gemma 3 GGUF) with its Transformers copy already cached beside it."""
    models = tmp_path_factory.mktemp("models")
    gguf = write_gemma3_gguf(tiny_gemma3(), models / "tiny.gguf")
    hf_base_from_gguf(gguf)
    return gguf


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return first_lines("pirate", 40, tmp_path_factory.mktemp("data"))


def test_training_on_a_gguf_writes_both_forms_that_llama_cpp_applies(tiny, corpus, tmp_path, capsys):
    """Train on the .gguf itself; the GGUF LoRA lands inside the adapter's folder, is listed as
    the same adapter, and in llama.cpp reproduces PEFT on the dequantised copy."""
    out = tmp_path / "loras" / "voice"
    rc, stdout, err = run_cli(capsys, "adapters", "train", "--base", str(tiny), "--data", str(corpus),
                              "--output", str(out), "--rank", "4", "--seq-len", "32", "--max-steps", "4",
                              "--save-every", "2", "--lr", "1e-2")
    assert rc == 0, err
    assert "steps/s" in stdout and "eta" in stdout and "step 4/4" in stdout
    assert f"llama.cpp LoRA: {out / 'voice.gguf'}" in stdout
    assert {p.name for p in out.iterdir()} >= {"adapter_model.safetensors", "adapter_config.json",
                                               "training_metadata.json", "loss.png", "voice.gguf"}
    meta = json.loads((out / "training_metadata.json").read_text())
    assert meta["targets"] == ["q_proj", "v_proj"] and meta["quant"] == "nf4" and len(meta["losses"]) == 4
    assert meta["base_gguf"]["file"] == "tiny.gguf" and meta["base_gguf"]["architecture"] == "gemma3"
    assert meta["base_gguf"]["sha256"] == hashlib.sha256(tiny.read_bytes()).hexdigest()
    gguf_info = inspect_adapter(out / "voice.gguf")
    assert gguf_info.architecture == "gemma3" and gguf_info.rank == 4
    assert gguf_info.training["gguf_base"]["name"] == "tiny-gemma3"

    rc, listing, _ = run_cli(capsys, "adapters", "list", str(out.parent), "--json")
    rows = json.loads(listing)
    assert sorted((r["name"], r["format"], r["status"]) for r in rows) == [("voice", "gguf", "ok"), ("voice", "peft", "ok")]

    llm = llama_cpp.Llama(str(tiny), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    try:
        plain = llama_cpp_logits(llm)
        mgr = AdapterManager(llm, [out.parent])
        assert mgr.switch("voice") == ["voice"] and mgr.resident()[0].info.path == out / "voice.gguf"
        voiced = llama_cpp_logits(llm)
        assert np.abs(voiced - plain).max() > 1e-3
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from tests.helpers.tiny_adapters import IDS, logits

        hf = AutoModelForCausalLM.from_pretrained(str(cache_folder(tiny)))
        want = logits(PeftModel.from_pretrained(hf, str(out)), IDS)[0, -1].numpy()
        assert np.abs(voiced - want).max() < 2e-3  # Gemma 3 names and layout converted right
        assert mgr.switch(None) == [] and np.abs(llama_cpp_logits(llm) - plain).max() == 0.0
        mgr.unload()
    finally:
        llm.close()


def test_the_transformers_copy_is_reused_and_rebuilt_when_the_gguf_changes(tmp_path):
    """The cache is keyed by the GGUF's sha256 and size in its manifest: same file, same cache;
    another file under the same name, a new cache."""
    gguf = write_gemma3_gguf(tiny_gemma3(seed=0), tmp_path / "m.gguf")
    folder = hf_base_from_gguf(gguf)
    assert folder == tmp_path / ".pocketpack-hf" / "m"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert manifest["size"] == gguf.stat().st_size and manifest["architecture"] == "gemma3"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert hf_base_from_gguf(gguf) == folder and (folder / "model.safetensors").stat().st_mtime_ns == stamp
    write_gemma3_gguf(tiny_gemma3(seed=1), gguf)  # another model under the same name
    assert hf_base_from_gguf(gguf) == folder
    rebuilt = json.loads((folder / MANIFEST).read_text())
    assert rebuilt["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest() != manifest["sha256"]


def test_a_killed_training_resumes_where_it_stopped(tiny, corpus, tmp_path, capsys):
    """kill -9 after the step-4 checkpoint; the same command again resumes at step 5 and ends
    with the losses of an uninterrupted run."""
    args = ["--base", str(tiny), "--data", str(corpus), "--rank", "4", "--seq-len", "32", "--max-steps", "8",
            "--save-every", "4", "--lr", "1e-2", "--compute-dtype", "fp32"]
    killed = tmp_path / "killed"
    driver = ("import os, signal, sys\n"
              "from pocketpack.cli import main\n"
              "from pocketpack.adapters import train as t\n"
              "real = t.train\n"
              "def train(cfg, progress=None, **kw):\n"
              "    def cb(p):\n"
              "        progress(p)\n"
              "        if p.step == 6:\n"
              "            os.kill(os.getpid(), signal.SIGKILL)\n"
              "    return real(cfg, cb, **kw)\n"
              "t.train = train\n"
              "sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", driver, "adapters", "train", *args, "--output", str(killed)],
                            cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == -9, result.stderr
    assert "step 6/8" in result.stdout
    state = json.loads((killed / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 4 and not (killed / "adapter_model.safetensors").exists()

    rc, stdout, err = run_cli(capsys, "adapters", "train", *args, "--output", str(killed))
    assert rc == 0, err
    steps = [line.split("step ")[1].split()[0] for line in stdout.splitlines() if "steps/s" in line]
    assert steps == ["5/8", "6/8", "7/8", "8/8"]
    rc, _, err = run_cli(capsys, "adapters", "train", *args, "--output", str(tmp_path / "straight"))
    assert rc == 0, err
    resumed = json.loads((killed / "training_metadata.json").read_text())
    straight = json.loads((tmp_path / "straight" / "training_metadata.json").read_text())
    assert resumed["losses"] == straight["losses"] and resumed["finished"]
    assert (killed / "killed.gguf").is_file() and not (killed / "checkpoint").exists()


def _kl_to_base(base_model, adapter_dir: Path, blocks: list[list[int]]) -> float:
    """Mean KL(base || base+adapter) per token over ``blocks``: how far the adapter moved the
    base model's next-token predictions there."""
    import torch
    from peft import PeftModel

    with torch.no_grad():
        base = [torch.log_softmax(base_model(torch.tensor([b])).logits.float(), -1) for b in blocks]
        tuned_model = PeftModel.from_pretrained(base_model, str(adapter_dir))
        tuned = [torch.log_softmax(tuned_model(torch.tensor([b])).logits.float(), -1) for b in blocks]
        tuned_model.unload()
    kl = [float((p.exp() * (p - q)).sum(-1).sum()) for p, q in zip(base, tuned)]
    return sum(kl) / sum(len(b) for b in blocks)


def test_preserve_keeps_the_base_predictions_on_the_text_it_names(tiny, corpus, tmp_path, capsys):
    """`--preserve FILE`: the voice still learns its own text, but on the preserved text the
    base model's predictions move much less than in the same run without it ("not better on
    the other styles' lines" needs a voice that leaves other text alone)."""
    from transformers import AutoModelForCausalLM

    from pocketpack.adapters.train import base_tokenizer, load_examples

    other = first_lines("formal", 40, tmp_path)
    args = ["--base", str(tiny), "--data", str(corpus), "--rank", "4", "--seq-len", "32", "--max-steps", "12",
            "--batch-size", "2", "--lr", "1e-2", "--compute-dtype", "fp32"]
    rc, _, err = run_cli(capsys, "adapters", "train", *args, "--output", str(tmp_path / "plain"))
    assert rc == 0, err
    rc, stdout, err = run_cli(capsys, "adapters", "train", *args, "--output", str(tmp_path / "kept"),
                              "--preserve", str(other), "--preserve-weight", "4")
    assert rc == 0, err
    meta = json.loads((tmp_path / "kept" / "training_metadata.json").read_text())
    assert meta["preserve"] == [str(other)] and meta["preserve_weight"] == 4.0 and len(meta["preserve_kl"]) == 12
    assert (tmp_path / "kept" / "kept.gguf").is_file()

    tokenizer = base_tokenizer(tiny)
    kept_text = load_examples(other, tokenizer, 32)
    own_text = load_examples(corpus, tokenizer, 32)
    base = AutoModelForCausalLM.from_pretrained(str(cache_folder(tiny)), dtype="float32").eval()
    plain_other, kept_other = (_kl_to_base(base, tmp_path / n, kept_text) for n in ("plain", "kept"))
    assert kept_other < 0.5 * plain_other, (kept_other, plain_other)
    assert _kl_to_base(base, tmp_path / "kept", own_text) > 0.0
    assert sum(meta["losses"][-3:]) < sum(meta["losses"][:3])  # and it still learned its own text


def _nll(model, blocks: list[list[int]]) -> float:
    """Mean next-token negative log-likelihood per token over ``blocks``."""
    import torch

    with torch.no_grad():
        total = sum(float(model(torch.tensor([b]), labels=torch.tensor([b])).loss) * (len(b) - 1) for b in blocks)
    return total / sum(len(b) - 1 for b in blocks)


def test_the_hinge_charges_a_voice_only_for_making_the_preserved_text_likelier(tiny, corpus, tmp_path, capsys):
    """`--preserve-hinge H`: H x max(0, NLL_base - NLL_tuned) on the preserved text. Untouched
    (learning rate 0), the adapter gains nothing there. Trained, where the same run without the
    term makes the preserved text much likelier (on a tiny random model most of what 12 steps
    learn is shared by any English), with it the preserved text gains under a tenth of that,
    and the voice still moves its own text more than the preserved one. (The hinge charges each
    step's 2-block batch, so the whole preserved text can end a little below the base.)"""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pocketpack.adapters.train import base_tokenizer, load_examples

    other = first_lines("formal", 40, tmp_path)
    args = ["--base", str(tiny), "--data", str(corpus), "--rank", "4", "--seq-len", "32", "--max-steps", "12",
            "--batch-size", "2", "--compute-dtype", "fp32", "--quant", "none"]
    hinge = ["--preserve", str(other), "--preserve-weight", "0", "--preserve-hinge", "3"]
    rc, _, err = run_cli(capsys, "adapters", "train", *args, "--lr", "0", *hinge, "--output", str(tmp_path / "still"))
    assert rc == 0, err
    still = json.loads((tmp_path / "still" / "training_metadata.json").read_text())
    assert still["preserve_hinge"] == 3.0 and still["preserve_gain"] == [0.0] * 12

    rc, _, err = run_cli(capsys, "adapters", "train", *args, "--lr", "1e-2", "--output", str(tmp_path / "plain"))
    assert rc == 0, err
    rc, _, err = run_cli(capsys, "adapters", "train", *args, "--lr", "1e-2", *hinge, "--output", str(tmp_path / "hinged"))
    assert rc == 0, err
    meta = json.loads((tmp_path / "hinged" / "training_metadata.json").read_text())
    assert meta["preserve_weight"] == 0.0 and len(meta["preserve_gain"]) == 12

    tokenizer = base_tokenizer(tiny)
    texts = {"kept": load_examples(other, tokenizer, 32), "own": load_examples(corpus, tokenizer, 32)}
    base = AutoModelForCausalLM.from_pretrained(str(cache_folder(tiny)), dtype="float32").eval()
    base_nll = {k: _nll(base, t) for k, t in texts.items()}
    gain = {}  # nats a token the adapter made each text likelier by
    for name in ("plain", "hinged"):
        model = PeftModel.from_pretrained(base, str(tmp_path / name)).eval()
        gain[name] = {k: base_nll[k] - _nll(model, t) for k, t in texts.items()}
        model.unload()
    assert gain["plain"]["kept"] > 0.3, gain  # without the term: far likelier than under the base
    assert gain["hinged"]["kept"] < 0.1 * gain["plain"]["kept"], gain  # with it: hardly
    assert gain["hinged"]["own"] > max(0.05, 2 * gain["hinged"]["kept"]), gain  # and its own text still moves


def test_a_hinge_per_preserved_file_keeps_each_file_from_getting_likelier(tiny, corpus, tmp_path, capsys):
    """`--preserve-each`: with two preserved files, the hinge is charged on each file's own batch
    (logged per file a step; nothing at learning rate 0), and after training neither file is
    much likelier than under the base, where the same run without the term makes both so. A
    run of the pooled hinge is another run: its checkpoint does not resume this one."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pocketpack.adapters.train import base_tokenizer, load_examples

    others = [first_lines(voice, 30, tmp_path) for voice in ("formal", "poet")]
    args = ["--base", str(tiny), "--data", str(corpus), "--rank", "4", "--seq-len", "32", "--max-steps", "12",
            "--batch-size", "2", "--compute-dtype", "fp32", "--quant", "none", "--save-every", "6"]
    each = [x for f in others for x in ("--preserve", str(f))] + ["--preserve-weight", "0", "--preserve-hinge", "3",
                                                                  "--preserve-each"]
    rc, _, err = run_cli(capsys, "adapters", "train", *args, "--lr", "0", *each, "--output", str(tmp_path / "still"))
    assert rc == 0, err
    still = json.loads((tmp_path / "still" / "training_metadata.json").read_text())
    assert still["preserve_each"] is True and still["preserve_gain_each"] == [[0.0, 0.0]] * 12

    rc, _, err = run_cli(capsys, "adapters", "train", *args, "--lr", "1e-2", "--output", str(tmp_path / "plain"))
    assert rc == 0, err
    rc, _, err = run_cli(capsys, "adapters", "train", *args, "--lr", "1e-2", *each, "--output", str(tmp_path / "each"))
    assert rc == 0, err
    meta = json.loads((tmp_path / "each" / "training_metadata.json").read_text())
    assert len(meta["preserve_gain_each"]) == 12 and all(len(g) == 2 for g in meta["preserve_gain_each"])
    assert meta["preserve_gain"] == pytest.approx([sum(g) / 2 for g in meta["preserve_gain_each"]], abs=1e-5)

    tokenizer = base_tokenizer(tiny)
    texts = {f.stem: load_examples(f, tokenizer, 32) for f in others}
    base = AutoModelForCausalLM.from_pretrained(str(cache_folder(tiny)), dtype="float32").eval()
    base_nll = {k: _nll(base, t) for k, t in texts.items()}
    gain = {}
    for name in ("plain", "each"):
        model = PeftModel.from_pretrained(base, str(tmp_path / name)).eval()
        gain[name] = {k: base_nll[k] - _nll(model, t) for k, t in texts.items()}
        model.unload()
    for voice in ("formal", "poet"):
        assert gain["plain"][voice] > 0.3, gain
        assert gain["each"][voice] < 0.1 * gain["plain"][voice], gain

    # a stopped pooled run's checkpoint is not resumed by the per-file run, and the flag needs a hinge
    from pocketpack.adapters.train import TrainConfig, train

    pooled = TrainConfig(base=str(tiny), data=str(corpus), output=str(tmp_path / "mixed"), rank=4, seq_len=32,
                         max_steps=12, batch_size=2, compute_dtype="fp32", quant="none", lr=1e-2,
                         preserve=[str(f) for f in others], preserve_weight=0.0, preserve_hinge=3.0)
    assert train(pooled, lambda pr: pr.step < 3)["steps"] == 3
    rc, _, err = run_cli(capsys, "adapters", "train", *args, "--lr", "1e-2", *each, "--output", str(tmp_path / "mixed"))
    assert rc == 2 and "a checkpoint of a different run" in err.splitlines()[-1], err   # after the model loads
    line = one_line(*run_cli(capsys, "adapters", "train", *args, "--preserve", str(others[0]), "--preserve-each",
                             "--output", str(tmp_path / "nohinge"))[::2])
    assert "a hinge per preserved file needs the hinge itself (--preserve-hinge H)" in line


def test_a_margin_makes_the_preserved_text_less_likely_than_under_the_base(tiny, corpus, tmp_path, capsys):
    """`--preserve-margin M`: the hinge charges H x max(0, gain + M), so training goes on pushing
    until the preserved text is about M nats a token less likely than under the base, where the
    hinge without a margin stops at "no likelier". (On a tiny random model any text moves with
    any other, so the own text goes down with it here; on the embedded model it is measured by
    bench/adapters_select.py --grid margin.)"""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pocketpack.adapters.train import base_tokenizer, load_examples

    other = first_lines("formal", 40, tmp_path)
    args = ["--base", str(tiny), "--data", str(corpus), "--rank", "4", "--seq-len", "32", "--max-steps", "12",
            "--batch-size", "2", "--compute-dtype", "fp32", "--quant", "none", "--lr", "1e-2",
            "--preserve", str(other), "--preserve-weight", "0", "--preserve-hinge", "3"]
    rc, _, err = run_cli(capsys, "adapters", "train", *args, "--preserve-margin", "0.2",
                         "--output", str(tmp_path / "margin"))
    assert rc == 0, err
    meta = json.loads((tmp_path / "margin" / "training_metadata.json").read_text())
    assert meta["preserve_margin"] == 0.2

    tokenizer = base_tokenizer(tiny)
    texts = {"kept": load_examples(other, tokenizer, 32)}
    base = AutoModelForCausalLM.from_pretrained(str(cache_folder(tiny)), dtype="float32").eval()
    base_nll = {k: _nll(base, t) for k, t in texts.items()}
    model = PeftModel.from_pretrained(base, str(tmp_path / "margin")).eval()
    gain = {k: base_nll[k] - _nll(model, t) for k, t in texts.items()}
    assert gain["kept"] < -0.1, gain    # pushed below the base, not just held at it
    capsys.readouterr()                  # the loading bars of the models above

    for bad, line_has in (("-1", "preserve margin -1.0: a number of nats >= 0"),
                          ("nan", "preserve margin nan: a number of nats >= 0")):
        line = one_line(*run_cli(capsys, "adapters", "train", *args, "--preserve-margin", bad,
                                 "--output", str(tmp_path / "bad"))[::2])
        assert line_has in line
    plain = [a for a in args if a not in ("--preserve-hinge", "3")]
    line = one_line(*run_cli(capsys, "adapters", "train", *plain, "--preserve-margin", "0.2",
                             "--output", str(tmp_path / "bad"))[::2])
    assert "a margin is the hinge's (--preserve-hinge H)" in line
    # the demo says so before it announces anything
    rc, out, err = run_cli(capsys, "adapters", "demo", "--base", str(tiny), "--styles", "pirate",
                           "--preserve-margin", "-1", "--dir", str(tmp_path / "demo"))
    assert "preserve margin -1.0: a number of nats >= 0" in one_line(rc, err) and out == ""


def _finish(writer) -> None:
    """Write a GGUFWriter's header, metadata and tensors, and close it."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_bad_inputs_are_one_line(tiny, tmp_path, capsys):
    import gguf

    data = tmp_path / "notes.txt"
    data.write_text("Arr, the kettle be whistlin'.\nAye, the tide be turnin'.\n", encoding="utf-8")
    # an architecture transformers cannot dequantise: named, with what to do instead
    odd = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(odd), "rwkv6")
    w.add_name("odd")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    _finish(w)
    line = one_line(*run_cli(capsys, "adapters", "train", "--base", str(odd), "--data", str(data),
                             "--output", str(tmp_path / "a"))[::2])
    assert "a rwkv6 GGUF; transformers cannot dequantise rwkv6" in line and "gemma3" in line
    assert "Hugging Face folder" in line
    # a corpus with fewer lines than one batch
    line = one_line(*run_cli(capsys, "adapters", "train", "--base", str(tiny), "--data", str(data),
                             "--output", str(tmp_path / "b"), "--batch-size", "4")[::2])
    assert "too little text" in line and "fewer than one batch of 4" in line
    assert not (tmp_path / "b").exists()
    # a GGUF LoRA given as the base
    lora = tmp_path / "lora.gguf"
    w = gguf.GGUFWriter(str(lora), "gemma3")
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((2, 64), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((128, 2), dtype=np.float32))
    _finish(w)
    line = one_line(*run_cli(capsys, "adapters", "train", "--base", str(lora), "--data", str(data),
                             "--output", str(tmp_path / "c"))[::2])
    assert "a GGUF LoRA adapter, not a model" in line
    # a hinge that is no weight, or one with no text to keep
    for bad in ("-1", "nan"):
        line = one_line(*run_cli(capsys, "adapters", "train", "--base", str(tiny), "--data", str(data),
                                 "--output", str(tmp_path / "d"), "--preserve", str(data),
                                 "--preserve-hinge", bad)[::2])
        assert f"preserve hinge {float(bad)}: a number >= 0" in line
    line = one_line(*run_cli(capsys, "adapters", "train", "--base", str(tiny), "--data", str(data),
                             "--output", str(tmp_path / "d"), "--preserve-hinge", "2")[::2])
    assert "preserve hinge 2: name the text it keeps (--preserve FILE)" in line
    assert not (tmp_path / "d").exists()


def test_an_adapter_converted_for_another_base_is_refused_on_switch(tmp_path, capsys):
    """Same architecture and shapes, another model: the switch is refused with a line naming
    both, and the model keeps the adapters it had."""
    from tests.helpers.tiny_adapters import make_adapter

    base = tiny_gemma3(seed=0)
    a = write_gemma3_gguf(base, tmp_path / "a.gguf", name="tiny-gemma3")
    b = write_gemma3_gguf(tiny_gemma3(seed=5), tmp_path / "b.gguf", name="other-gemma3")
    make_adapter(base, tmp_path / "peft" / "voice", r=4, seed=1)
    loras = tmp_path / "loras"
    loras.mkdir()
    rc, _, err = run_cli(capsys, "adapters", "to-gguf", str(tmp_path / "peft" / "voice"), str(loras / "voice.gguf"),
                         "--base", str(a))
    assert rc == 0, err
    llm = llama_cpp.Llama(str(b), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    try:
        plain = llama_cpp_logits(llm)
        mgr = AdapterManager(llm, [loras])
        with pytest.raises(AdapterError) as exc:
            mgr.switch("voice")
        message = exc.value.one_line()
        assert "voice: made for a.gguf (tiny-gemma3); the loaded model is b.gguf (other-gemma3)" in message
        assert mgr.lora_names == [] and np.abs(llama_cpp_logits(llm) - plain).max() == 0.0
        assert [i.problem for i in mgr.library()] == [message]  # the library row says the same
    finally:
        llm.close()
    llm = llama_cpp.Llama(str(a), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    try:
        assert AdapterManager(llm, [loras]).switch("voice") == ["voice"]  # its own base takes it
    finally:
        llm.close()


def test_demo_voices_train_only_on_their_train_lines():
    """The shipped corpora: a few hundred self-written lines a voice, fixed dev (settings are
    chosen on it) and held-out (reported) splits that are never trained on; a voice keeps the
    base model's predictions on the other voices' training lines only."""
    from pocketpack.adapters import demo

    never = set()
    for style in demo.STYLES:
        train, dev, held = (demo.lines(style, split) for split in ("train", "dev", "heldout"))
        assert len(train) >= 150 and len(dev) == 30 and len(held) >= 40
        assert not set(train) & set(held) and not set(train) & set(dev) and not set(dev) & set(held)
        never |= set(dev) | set(held)
    for style in demo.STYLES:
        cfg = demo.config(style, "models/gemma-3-270m-q4_k_m.gguf", "user_data/loras")
        assert cfg.data.endswith(f"{style}.train.txt") and cfg.output.endswith(f"loras/{style}")
        assert cfg.targets == ["q_proj", "v_proj"] and cfg.quant == "nf4"
        others = sorted(f"{o}.train.txt" for o in demo.STYLES if o != style)
        assert sorted(Path(p).name for p in cfg.preserve) == others
        assert cfg.preserve_weight > 0 or cfg.preserve_hinge > 0
        hinged = demo.config(style, "m.gguf", "loras", preserve_weight=0.0, preserve_hinge=2.0)
        assert sorted(Path(p).name for p in hinged.preserve) == others  # the hinge alone keeps them too
        # a hinge per other voice by default; training without the hinge drops that too
        assert cfg.preserve_each and not demo.config(style, "m.gguf", "loras", preserve_hinge=0.0).preserve_each
        used = {ln.strip() for p in [cfg.data, *cfg.preserve] for ln in Path(p).read_text(encoding="utf-8").splitlines()}
        assert not used & never
        assert demo.config(style, "m.gguf", "loras", preserve=[]).preserve == []


@pytest.mark.slow
def test_a_voice_trained_on_the_embedded_model_changes_what_it_says(default_model, tmp_path, capsys):
    """A handful of steps on the real Gemma 3 270M Q4_K_M: the GGUF LoRA changes llama.cpp's
    output; a character bound to it speaks with it; unbinding gives the base back exactly."""
    from pocketpack.adapters.binding import Bindings
    from pocketpack.adapters.session import AdapterSession

    data = first_lines("pirate", 24, tmp_path)
    loras = tmp_path / "loras"
    rc, _, err = run_cli(capsys, "adapters", "train", "--base", str(default_model), "--data", str(data),
                              "--output", str(loras / "pirate"), "--rank", "4", "--seq-len", "48",
                              "--batch-size", "2", "--max-steps", "3", "--lr", "5e-3")
    assert rc == 0, err
    assert (loras / "pirate" / "pirate.gguf").is_file() and (loras / "pirate" / "loss.png").is_file()
    llm = llama_cpp.Llama(str(default_model), n_ctx=256, n_threads=2, logits_all=True, verbose=False)
    try:
        ids = [llm.tokenize(b"The kettle on the stove", add_bos=True)]
        plain = llama_cpp_logits(llm, ids)
        session = AdapterSession([loras], tmp_path / "bindings.yaml")
        Bindings(tmp_path / "bindings.yaml").bind("Flint", {"pirate": 1.0})
        assert session.apply_state(llm, {"character_menu": "Flint"}) == ["pirate"]
        voiced = llama_cpp_logits(llm, ids)
        assert np.abs(voiced - plain).max() > 0.05
        Bindings(tmp_path / "bindings.yaml").unbind("Flint")
        assert session.apply_state(llm, {"character_menu": "Flint"}) == []
        assert np.abs(llama_cpp_logits(llm, ids) - plain).max() == 0.0
    finally:
        llm.close()


def test_the_tab_tells_the_story_of_a_new_voice(tiny, corpus, tmp_path, monkeypatch):
    """Issue 13, 4: "an empty library offers 'train a voice from a text file or a character's
    chats' with the embedded model preselected; during training, steps/s, eta and the live loss
    curve; after it, the adapter is listed with rank, size, base model and the loss it reached"."""
    import importlib.util
    from types import SimpleNamespace

    import gradio as gr

    from pocketpack.host import shared

    llm = llama_cpp.Llama(str(tiny), n_ctx=64, n_threads=1, verbose=False)
    monkeypatch.setattr(shared, "user_data_dir", tmp_path / "user_data")
    monkeypatch.setattr(shared, "args", SimpleNamespace(lora_dir=str(tmp_path / "user_data" / "loras")))
    monkeypatch.setattr(shared, "backend", SimpleNamespace(model=llm), raising=False)
    monkeypatch.setattr(shared, "model", None)
    monkeypatch.setattr(shared, "lora_names", [])
    spec = importlib.util.spec_from_file_location("adapter_switcher_story",
                                                  REPO / "extensions" / "adapter-switcher" / "script.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    try:
        lib, _, _, hint = script.engine().tables()
        assert lib == [] and "**train a voice from a text file or a character's chats**" in hint
        with gr.Blocks() as blocks:
            script.ui()
        boxes = {c.label: c for c in blocks.blocks.values() if isinstance(c, gr.Textbox)}
        assert boxes["Base model"].value == str(tiny)  # the loaded model, preselected
        accordion = next(c for c in blocks.blocks.values() if isinstance(c, gr.Accordion)
                         and c.label.startswith("Train a voice from a text file or a character's chats"))
        assert accordion.open  # open while the library is empty

        updates = list(script.engine().train(str(tiny), str(corpus), "voice", 4, 8, "q_proj,v_proj", 30, 32, "nf4", False))
        running = [msg for msg, _ in updates[:-1] if "steps/s" in msg]
        assert running and all(" · eta " in m and " · loss " in m for m in running)
        curves = [img for _, img in updates if isinstance(img, np.ndarray)]
        assert curves and curves[-1].ndim == 3 and curves[-1].shape[2] == 3
        final, image = updates[-1]
        assert final.startswith("Saved **voice**: 30 steps") and "rank 4" in final and "base tiny.gguf" in final
        assert isinstance(image, np.ndarray)

        lib, _, _, hint = script.engine().tables()
        from pocketpack.adapters.session import LIBRARY_HEADERS

        rows = {r[1]: dict(zip(LIBRARY_HEADERS, r)) for r in lib if r[0] == "voice"}
        assert set(rows) == {"gguf"}  # a llama.cpp model: the voice's GGUF LoRA
        row = rows["gguf"]
        meta = json.loads((tmp_path / "user_data" / "loras" / "voice" / "training_metadata.json").read_text())
        assert row["rank"] == "4" and row["base model"] == "tiny.gguf" and row["size"].endswith("KB")
        assert row["loss"] == f"{meta['final_loss']:.3f}" and row["status"] == "ready"
        assert "No voices yet" not in hint
    finally:
        llm.close()
