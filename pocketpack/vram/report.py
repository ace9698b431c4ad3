"""What the vram-advisor tab shows, computed here so that the extension script stays thin."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pocketpack.vram.errors import VramError
from pocketpack.vram.estimate import Estimate, estimate
from pocketpack.vram.inspect import ModelInfo
from pocketpack.vram.machine import Machine


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


# The formats the tab compares: 16-bit, bitsandbytes 8/4-bit, GPTQ and the common GGUF types
COMPARE_FORMATS = ("fp16", "int8", "nf4", "gptq-4bit-g128", "gguf-Q8_0", "gguf-Q6_K", "gguf-Q5_K_M",
                   "gguf-Q4_K_M", "gguf-Q3_K_M")
PART_LABELS = {"weights": "weights", "kv_cache": "KV cache", "compute": "compute buffers",
               "overhead": "CUDA context + runtime", "runtime": "runtime", "loading": "loading",
               "adapter": "adapter", "gradients": "gradients", "optimizer": "optimizer states",
               "activations": "activations", "other": "other"}
STATUS = {"gpu": "fits on the GPU", "partial": "fits, some layers in RAM", "cpu": "runs on the CPU",
          "no-fit": "does not fit", "needs-gpu": "needs a GPU"}


@dataclass
class Row:
    """One format on one machine: the estimate the chart draws and the table lists."""

    format: str
    status: str                       # a key of STATUS
    estimate: Estimate | None         # None only for "needs-gpu"
    quality_loss_pct: float
    cache_type: str = "fp16"
    gpu_layers: int | None = None
    time_vs_fp16: float | None = None
    why: str = ""
    rank: int | None = None
    option: object | None = None      # the advise.Option of a row that fits

    @property
    def ctx(self) -> int | None:
        return self.estimate.ctx if self.estimate else None

    @property
    def fits(self) -> bool:
        return self.status in ("gpu", "partial", "cpu")

    @property
    def vram_gib(self) -> float:
        return self.estimate.total_gib if self.estimate else 0.0

    @property
    def ram_gib(self) -> float:
        return self.estimate.ram_gib if self.estimate else 0.0


@dataclass
class Comparison:
    """Formats of one model on one machine at one context: the one result the tab's chart, table
    and summary (and ``vram advise --ctx``) are all drawn from."""

    info: ModelInfo
    machine: Machine
    ctx_asked: int | None
    ctx: int | None                   # the context every row is estimated at; None: each its largest
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def memory(self) -> str:
        """What the chart draws: the VRAM column on a GPU machine, the RAM column without one."""
        return "VRAM" if self.machine.has_gpu else "RAM"

    def chart_total(self, row: Row) -> float:
        return row.vram_gib if self.memory == "VRAM" else row.ram_gib

    def chart_rows(self) -> list[dict]:
        """{format, part, GiB} for a stacked bar per format; a bar's parts sum to its table column."""
        out = []
        for row in self.rows:
            if row.estimate is None:
                continue
            parts = row.estimate.parts() if self.memory == "VRAM" else row.estimate.ram_parts()
            for part, gib in parts.items():
                out.append({"format": row.format, "part": PART_LABELS.get(part, part), "GiB": round(gib, 3)})
        return out


def machine_label(m: Machine) -> str:
    """The machine in words: a tier, what was detected, or what was given."""
    if m.source.startswith("tier "):
        return f"{m.gpu_name} (tier {m.source[5:]})"
    gpu = f"{m.gpu_name or 'GPU'} {m.vram_gib:.1f} GiB" if m.has_gpu else "no GPU"
    if m.source == "given":
        return f"{gpu}, {m.ram_gib:.1f} GiB RAM (as given)"
    return f"this machine: {gpu}, {m.ram_gib:.1f} GiB RAM"


def tier_machine(tier: str) -> Machine:
    """A hardware tier of :mod:`pocketpack.presets` as a machine ("8 GB GPU, 16 GB RAM")."""
    from pocketpack.presets import TIERS

    if tier not in TIERS:
        raise VramError(f"unknown tier {tier!r}; use one of {', '.join(TIERS)}")
    vram, ram, _ = TIERS[tier]
    return Machine(tier_label(tier), float(vram), None, float(ram), None, f"tier {tier}")


def tier_label(tier: str) -> str:
    """"8 GB GPU (RTX 3060 Ti, 3070, 4060), 16 GB RAM"; "CPU only, 16 GB RAM"."""
    import re

    from pocketpack.presets import TIERS

    vram, ram, description = TIERS[tier]
    if not vram:
        return description
    examples = re.search(r"\(([^)]*)\)", description)
    return f"{vram} GB GPU{f' ({examples.group(1)})' if examples else ''}, {ram} GB RAM"


def compare(info: ModelInfo, machine: Machine, ctx: int | None, formats: tuple[str, ...] = COMPARE_FORMATS
            ) -> Comparison:
    """Every format in ``formats`` for this model and machine at context ``ctx`` (capped at the
    model's own limit; None: each format at the largest context that fits): the configurations
    that fit, ranked as :func:`advise` ranks them, then the ones that do not, each with what it
    would need (at ``ctx``, or 4096 tokens)."""
    from pocketpack.vram.advise import advise, native_float_format, quality_loss, relative_time
    from pocketpack.vram.formats import parse_format

    if ctx is not None and int(ctx) <= 0:
        raise VramError("the context must be a positive number of tokens")
    used = None if ctx is None else min(int(ctx), info.arch.max_context)
    result = Comparison(info, machine, ctx, used)
    if used is not None and used < ctx:
        result.notes.append(f"{info.name} takes at most {info.arch.max_context} tokens "
                            f"(max_position_embeddings): estimated at {used}, not {ctx}")
    if info.native:
        formats = (info.native,)
    else:
        native_float = native_float_format(info)
        formats = tuple(dict.fromkeys(native_float if f in ("bf16", "fp16") else f for f in formats))
    if used is None:
        advice = advise(info, machine, formats=formats)
    else:
        advice = advise(info, machine, min_ctx=used, max_ctx=used, formats=formats)
    for rank, option in enumerate(advice.options, 1):
        share = 1.0 if option.placement == "cpu" else option.ram_share
        result.rows.append(Row(option.format, option.placement, option.estimate, option.quality_loss_pct,
                               option.cache_type, option.gpu_layers,
                               relative_time(info, option.format, share, machine), rank=rank, option=option))
    need_ctx = used or min(4096, info.arch.max_context)
    for name, why in advice.rejected.items():
        fmt = parse_format(name)
        e = None
        try:
            if machine.has_gpu:
                e = estimate(info, fmt, ctx=need_ctx)           # what it would need, all on the GPU
            elif fmt.kind == "gguf":
                e = estimate(info, fmt, ctx=need_ctx, device="cpu")
        except VramError:
            e = None
        status = "needs-gpu" if not machine.has_gpu and fmt.kind != "gguf" else "no-fit"
        result.rows.append(Row(name, status, e, quality_loss(name), why=why))
    return result


CUSTOM_MACHINE = "Custom: the VRAM and RAM boxes"


def machine_choices(detected: Machine) -> list[str]:
    """The tab's Machine menu: this machine, each hardware tier, and custom sizes."""
    from pocketpack.presets import TIERS

    return [f"This machine ({machine_label(detected).split(': ', 1)[-1]})", *(tier_label(t) for t in TIERS),
            CUSTOM_MACHINE]


def machine_for_choice(choice: str | None, vram_gib=None, ram_gib=None) -> Machine:
    """The machine a Machine-menu entry names (custom: the VRAM/RAM boxes, 0 VRAM = no GPU)."""
    from pocketpack.presets import TIERS
    from pocketpack.vram.machine import detect

    for tier in TIERS:
        if choice == tier_label(tier):
            return tier_machine(tier)
    if choice == CUSTOM_MACHINE:
        return detect(float(vram_gib or 0), float(ram_gib) if ram_gib else None)
    return detect(use_torch=False)


def model_for_tab(name: str | None, pasted: str | None, models_dir: str | Path | None) -> ModelInfo:
    """The tab's model: a pasted config.json when there is one, else the Model box's name (a file
    in the models folder or anywhere, else the catalogue)."""
    from pocketpack.vram.catalogue import info_from_text, resolve_model

    if pasted and pasted.strip():
        return info_from_text(pasted)
    if not name or not str(name).strip():
        raise VramError("choose a model, type a name such as 'Mistral 7B', or paste a config.json")
    return resolve_model(str(name), search_dirs=(models_dir,) if models_dir else ())


def analyse_for_tab(name, pasted, ctx, choice, vram_gib, ram_gib, models_dir) -> tuple[Comparison | None, str]:
    """(comparison, markdown) for the tab; a bad input is one line in the markdown."""
    try:
        info = model_for_tab(name, pasted, models_dir)
        result = compare(info, machine_for_choice(choice, vram_gib, ram_gib), int(ctx or 4096))
    except (VramError, ValueError, TypeError) as exc:
        message = exc.one_line() if hasattr(exc, "one_line") else str(exc)
        return None, f"**Cannot estimate:** {message}"
    return result, comparison_markdown(result)


def chart_title(c: Comparison | None) -> str:
    """The chart's title: which column it draws, at which context, against which budget."""
    if c is None:
        return "Memory by format (GiB)"
    if c.memory == "VRAM":
        return f"GPU memory by format at {c.ctx} tokens (GiB; this GPU: {c.machine.vram_gib:g} GiB)"
    return f"System RAM by format at {c.ctx} tokens (GiB; no GPU; RAM: {c.machine.ram_gib:.1f} GiB)"


def tier_for_choice(choice: str | None) -> str | None:
    """The hardware tier a Machine-menu entry names, if it names one."""
    from pocketpack.presets import TIERS

    return next((t for t in TIERS if choice == tier_label(t)), None)


def _fmt_time(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def comparison_markdown(c: Comparison) -> str:
    """The answer (which formats fit), the table and what its columns mean; the chart draws the
    table's VRAM column on a GPU machine and its RAM column without one."""
    m, info = c.machine, c.info
    fit = [r for r in c.rows if r.status == "gpu" or (r.status == "cpu" and not m.has_gpu)]
    partial = [r for r in c.rows if r.status == "partial" or (r.status == "cpu" and m.has_gpu)]
    source = f"config.json values of `{info.path}` (catalogue)" if info.source == "catalogue" else f"`{info.path.name}`"
    lines = [f"### {info.name} on {machine_label(m)}, " + (f"{c.ctx} tokens of context" if c.ctx else
                                                             "each format at its largest context"),
             f"{info.n_params / 1e9:.2f} B parameters; sizes from the {source}.", ""]
    where = "on the GPU" if m.has_gpu else "in RAM (CPU only)"
    lines.append(f"- **Fits {where}:** " + (", ".join(f"`{r.format}`" for r in fit) or "nothing"))
    if partial:
        lines.append("- **Fits with layers in system RAM (slower):** "
                     + ", ".join(f"`{r.format}` ({r.gpu_layers or 0}/{info.arch.num_layers} layers on the GPU)"
                                 for r in partial))
    no_fit = [r for r in c.rows if r.status == "no-fit"]
    if no_fit:
        lines.append("- **Does not fit:** " + ", ".join(
            f"`{r.format}` (needs {c.chart_total(r):.1f} GiB {c.memory})" if r.estimate else f"`{r.format}` ({r.why})"
            for r in no_fit))
    need_gpu = [r for r in c.rows if r.status == "needs-gpu"]
    if need_gpu:
        lines.append("- **Needs a GPU:** " + ", ".join(f"`{r.format}`" for r in need_gpu)
                     + " (Transformers formats run on CUDA)")
    best = next((r for r in c.rows if r.fits), None)
    if best:
        lines.append(f"- **Best here:** `{best.format}` — {STATUS[best.status]}, {c.memory} "
                     f"{c.chart_total(best):.2f} GiB, +{best.quality_loss_pct:.1f}% perplexity.")
    lines += [f"- _{n}_" for n in c.notes]
    lines += ["", "| # | format | runs | ctx | KV cache | gpu-layers | VRAM GiB | RAM GiB | ppl loss | time/token vs 16-bit |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in c.rows:
        e = r.estimate
        layers = "-" if r.gpu_layers is None else str(r.gpu_layers)
        lines.append(f"| {r.rank or '-'} | {r.format} | {STATUS[r.status]} | {r.ctx or '-'} | "
                     f"{r.cache_type if e else '-'} | {layers} | {r.vram_gib:.2f} | {r.ram_gib:.2f} | "
                     f"+{r.quality_loss_pct:.1f}% | {_fmt_time(r.time_vs_fp16)} |")
    from pocketpack.vram.advise import TIME_NOTE

    chart = ("the chart stacks the **VRAM** column (what nvidia-smi would show: weights, KV cache, compute "
             "buffers, CUDA context and runtime)" if c.memory == "VRAM" else
             "no GPU: the chart stacks the **RAM** column (weights, KV cache, compute buffers, runtime); "
             "no CUDA context is counted")
    lines += ["", (f"_Rows that do not fit show what they would need. {chart[0].upper() + chart[1:]}. "
                   f"RAM: system RAM the model takes beyond the OS (llama.cpp maps the file; weights not on "
                   f"the GPU are read from it). ppl loss: expected perplexity increase over 16-bit. {TIME_NOTE}_")]
    return "\n".join(lines)


def measured_usage() -> dict | None:
    """Peak memory torch allocated and what nvidia-smi shows in use (GiB); None without a GPU."""
    out: dict = {}
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            out["torch_max_allocated_gib"] = torch.cuda.max_memory_allocated() / 1024 ** 3
            out["torch_reserved_gib"] = torch.cuda.memory_reserved() / 1024 ** 3
    except Exception:  # noqa: BLE001 - the measured figures are optional; a CUDA error leaves them out
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
