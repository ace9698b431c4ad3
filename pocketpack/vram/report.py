"""What the vram-advisor tab shows, computed here so that the extension script stays thin."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pocketpack.vram.advise import Advice
from pocketpack.vram.errors import VramError
from pocketpack.vram.estimate import Estimate, estimate
from pocketpack.vram.inspect import ModelInfo

CHART_FORMATS = ("bf16", "int8", "nf4-dq", "gptq-4bit-g128", "gguf-Q8_0", "gguf-Q6_K", "gguf-Q4_K_M",
                 "gguf-Q3_K_M")


def list_models(models_dir: str | Path) -> list[str]:
    """Model folders and .gguf files in TGWUI's models folder (names, as its menu shows them)."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    names = []
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or p.name in ("config.yaml", "config-user.yaml", "place-your-models-here.txt"):
            continue
        if (p.is_dir() and ((p / "config.json").is_file() or any(p.glob("*.gguf")))) or p.suffix == ".gguf":
            names.append(p.name)
    return names


def breakdown_rows(info: ModelInfo, ctx: int, formats: tuple[str, ...] = CHART_FORMATS) -> tuple[list[dict], list[Estimate]]:
    """Rows {format, part, GiB} for a stacked bar per format (formats the model cannot take are skipped)."""
    if info.native:
        formats = (info.native,)
    rows, estimates = [], []
    for name in formats:
        try:
            e = estimate(info, name, ctx=ctx)
        except VramError:
            continue
        estimates.append(e)
        for part, gib in e.parts().items():
            rows.append({"format": e.format, "part": part, "GiB": round(gib, 3)})
    return rows, estimates


def advice_markdown(advice: Advice, limit: int = 8) -> str:
    """The ranked options as a table; time/token is relative to the same format fully on the GPU."""
    m = advice.machine
    where = f"{m.gpu_name or 'GPU'}, {m.vram_gib:.1f} GiB" if m.has_gpu else "no GPU"
    lines = [f"**{advice.model}** on {where} and {m.ram_gib:.1f} GiB RAM ({m.source})", "",
             "| # | format | ctx | cache | gpu-layers | VRAM GiB | RAM GiB | ppl loss | where | time/token |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, o in enumerate(advice.options[:limit], 1):
        lines.append(f"| {i} | {o.format} | {o.ctx} | {o.cache_type} | {o.gpu_layers if o.gpu_layers is not None else '-'}"
                     f" | {o.estimate.total_gib:.2f} | {o.estimate.ram_gib:.2f} | +{o.quality_loss_pct:.1f}% | {o.placement}"
                     f" | {o.slowdown:.1f}x |")
    if not advice.options:
        lines.append("| - | nothing fits | | | | | | | | |")
    return "\n".join(lines)


def measured_usage() -> dict | None:
    """Peak memory torch allocated and what nvidia-smi shows in use (GiB); None without a GPU."""
    out: dict = {}
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            out["torch_max_allocated_gib"] = torch.cuda.max_memory_allocated() / 1024 ** 3
            out["torch_reserved_gib"] = torch.cuda.memory_reserved() / 1024 ** 3
    except Exception:
        pass
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            used = subprocess.run([exe, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=10, check=True).stdout
            out["nvidia_smi_used_gib"] = float(used.strip().splitlines()[0]) / 1024
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    return out or None


def compare_markdown(predicted: Estimate | None, measured: dict | None) -> str:
    """Predicted beside measured, with the difference; says "no GPU" when nothing can be measured."""
    if measured is None:
        return "Measured: **no GPU** (nothing to measure on this machine)."
    if predicted is None:
        return "Measured: " + ", ".join(f"{k} {v:.2f} GiB" for k, v in measured.items())
    lines = ["| | GiB | vs predicted |", "|---|---|---|",
             f"| predicted total (nvidia-smi view) | {predicted.total_gib:.2f} | |"]
    # torch's max_memory_allocated sees neither the CUDA context nor the allocator's slack;
    # memory_reserved includes the slack; nvidia-smi sees everything
    views = {"torch_max_allocated_gib": predicted.allocated_gib,
             "torch_reserved_gib": predicted.total_gib - predicted.cuda_context_gib}
    for key, value in measured.items():
        ref = views.get(key, predicted.total_gib)
        lines.append(f"| {key} | {value:.2f} | {value - ref:+.2f} ({(value - ref) / ref * 100:+.0f}%) |")
    return "\n".join(lines)
