"""`pocketpack vram estimate|advise`: the advisor from the command line (scripts read --json)."""

from __future__ import annotations

import json
import sys

from pocketpack.vram.errors import VramError

GIB_FIELDS = ("total_gib", "weights_gib", "kv_cache_gib", "compute_gib", "overhead_gib", "cuda_context_gib",
              "ram_gib", "file_gib")
TRAIN_FIELDS = ("adapter_gib", "gradients_gib", "optimizer_gib", "activations_gib")


def register(subparsers) -> None:
    parser = subparsers.add_parser("vram", help="estimate memory and advise formats before loading a model")
    sub = parser.add_subparsers(dest="vram_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    est = sub.add_parser("estimate", help="memory of one configuration, with its breakdown")
    est.add_argument("model", metavar="MODEL", help="a model folder, a config.json or a .gguf")
    est.add_argument("--format", required=True, metavar="FMT",
                     help="fp32 fp16 bf16 int8 nf4 nf4-dq fp4, gptq-<bits>bit-g<group>, awq-4bit-g128, "
                          "gguf-<TYPE>, exl2-<bpw>bpw")
    est.add_argument("--ctx", type=int, default=None, metavar="N", help="context length (default 4096, training 512)")
    est.add_argument("--batch", type=int, default=1, metavar="B")
    est.add_argument("--cache-type", default="fp16", metavar="T", help="fp16, q8_0 or q4_0 (llama.cpp/ExLlama)")
    est.add_argument("--gpu-layers", type=int, default=None, metavar="N", help="llama.cpp layers on the GPU")
    est.add_argument("--mode", choices=("inference", "training"), default="inference")
    est.add_argument("--lora-rank", type=int, default=8, metavar="R")
    est.add_argument("--lora-targets", default="all-linear", metavar="q_proj,v_proj|all-linear")
    est.add_argument("--grad-checkpointing", dest="grad_checkpointing", action="store_true", default=True)
    est.add_argument("--no-grad-checkpointing", dest="grad_checkpointing", action="store_false")
    est.add_argument("--optimizer", choices=("adamw", "adamw8bit", "paged_adamw8bit"), default="adamw")
    est.add_argument("--json", action="store_true", help="print the estimate as JSON")
    est.set_defaults(func=_estimate)

    adv = sub.add_parser("advise", help="the configurations that fit this machine, best first")
    adv.add_argument("model", metavar="MODEL", help="a model folder, a config.json or a .gguf")
    adv.add_argument("--vram", type=float, default=None, metavar="GiB", help="GPU memory (default: detected; 0 = CPU)")
    adv.add_argument("--ram", type=float, default=None, metavar="GiB", help="system RAM (default: detected)")
    adv.add_argument("--json", action="store_true")
    adv.set_defaults(func=_advise)


def _fail(exc: Exception) -> int:
    print(f"pocketpack vram: error: {exc}", file=sys.stderr)
    return 2


def _estimate(args) -> int:
    from pocketpack.vram.estimate import estimate
    from pocketpack.vram.inspect import inspect_model

    try:
        info = inspect_model(args.model)
        e = estimate(info, args.format, ctx=args.ctx, batch=args.batch, cache_type=args.cache_type,
                     gpu_layers=args.gpu_layers, mode=args.mode, lora_rank=args.lora_rank,
                     lora_targets=args.lora_targets, grad_checkpointing=args.grad_checkpointing,
                     optimizer=args.optimizer)
    except VramError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(e.to_dict(), indent=2))
        return 0
    print(format_estimate(e))
    return 0


def format_estimate(e) -> str:
    """A human-readable breakdown."""
    head = f"{e.model}  {e.format} ({e.loader}, {e.mode})  ctx {e.ctx}  batch {e.batch}"
    if e.loader == "llama.cpp":
        head += f"  cache {e.cache_type}  gpu-layers {e.gpu_layers}/{e.n_layers + 1}"
    lines = [head, f"  parameters      {e.params_b:8.2f} B"]
    for name, value in e.parts().items():
        lines.append(f"  {name:<15} {value:8.2f} GiB")
    lines.append(f"    cuda context  {e.cuda_context_gib:8.2f} GiB (in overhead)")
    lines.append(f"  {'VRAM total':<15} {e.total_gib:8.2f} GiB")
    lines.append(f"  {'RAM':<15} {e.ram_gib:8.2f} GiB")
    lines.append(f"  {'file on disk':<15} {e.file_gib:8.2f} GiB")
    lines += [f"  note: {n}" for n in e.notes]
    return "\n".join(lines)


def _advise(args) -> int:
    from pocketpack.vram.advise import advise, sizes_that_fit
    from pocketpack.vram.inspect import inspect_model
    from pocketpack.vram.machine import detect

    try:
        info = inspect_model(args.model)
        machine = detect(args.vram, args.ram)
        result = advise(info, machine)
    except VramError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps({
            "model": info.name,
            "machine": {"gpu": machine.gpu_name, "vram_gib": round(machine.vram_gib, 2),
                        "ram_gib": round(machine.ram_gib, 2), "source": machine.source},
            "options": [o.to_dict() for o in result.options],
            "rejected": result.rejected,
        }, indent=2))
        return 0
    gpu = f"{machine.gpu_name or 'GPU'} {machine.vram_gib:.1f} GiB" if machine.has_gpu else "no GPU"
    print(f"{info.name} on {gpu}, {machine.ram_gib:.1f} GiB RAM ({machine.source})")
    if not result.options:
        print("  nothing fits:")
    for rank, o in enumerate(result.options, 1):
        layers = f" gpu-layers {o.gpu_layers}" if o.gpu_layers is not None else ""
        print(f"  {rank:2}. {o.format:<16} ctx {o.ctx:<6} cache {o.cache_type:<5}{layers:<15} "
              f"VRAM {o.estimate.total_gib:6.2f} GiB  RAM {o.estimate.ram_gib:6.2f} GiB  "
              f"~+{o.quality_loss_pct:.1f}% ppl  [{o.placement}"
              + (f", ~{o.slowdown:.1f}x time/token" if o.placement != "gpu" else "") + "]")
    for name, why in result.rejected.items():
        print(f"      {name:<16} {why}")
    del sizes_that_fit
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``vram ...`` alone (``python -m pocketpack.vram.cli estimate ...``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="pocketpack")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["vram", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
