"""`pocketpack vram estimate|advise`: the advisor from the command line (scripts read --json)."""

from __future__ import annotations

import json
import sys

from pocketpack.vram.errors import VramError

GIB_FIELDS = ("total_gib", "weights_gib", "kv_cache_gib", "compute_gib", "overhead_gib", "cuda_context_gib",
              "ram_gib", "file_gib")
TRAIN_FIELDS = ("adapter_gib", "gradients_gib", "optimizer_gib", "activations_gib")
MODEL_HELP = ("a model folder, a config.json or a .gguf; else a catalogue name or Hugging Face repo id "
              "('Mistral 7B', 'Qwen/Qwen2.5-7B-Instruct'), resolved offline (`pocketpack vram models`)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("vram", help="estimate memory and advise formats before loading a model")
    sub = parser.add_subparsers(dest="vram_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    est = sub.add_parser("estimate", help="memory of one configuration, with its breakdown")
    est.add_argument("model", metavar="MODEL", nargs="?", help=MODEL_HELP)
    est.add_argument("--config-json", metavar="FILE|-", default=None,
                     help="size the model from this config.json (- reads a pasted one from stdin)")
    est.add_argument("--cpu", action="store_true",
                     help="a machine without a GPU: llama.cpp formats, everything in RAM, no CUDA context")
    est.add_argument("--format", required=True, metavar="FMT",
                     help="fp32 fp16 bf16 int8 nf4 nf4-dq fp4, gptq-<bits>bit-g<group>, awq-4bit-g128, "
                          "gguf-<TYPE>, exl2-<bpw>bpw")
    est.add_argument("--ctx", type=int, default=None, metavar="N", help="context length (default 4096, training 512)")
    est.add_argument("--batch", type=int, default=1, metavar="B")
    est.add_argument("--cache-type", default="fp16", metavar="T", help="fp16, q8_0 or q4_0 (llama.cpp/ExLlama)")
    est.add_argument("--gpu-layers", type=int, default=None, metavar="N", help="llama.cpp layers on the GPU")
    est.add_argument("--mode", choices=("inference", "training"), default="inference")
    est.add_argument("--lora-rank", type=int, default=8, metavar="R")
    est.add_argument("--lora-targets", default="all-linear", metavar="q_proj,v_proj|all-linear",
                     help="PEFT target modules, all-linear, or with the output layer / embeddings: "
                          "all-linear,lm_head,embed_tokens")
    est.add_argument("--grad-checkpointing", dest="grad_checkpointing", action="store_true", default=True)
    est.add_argument("--no-grad-checkpointing", dest="grad_checkpointing", action="store_false")
    est.add_argument("--optimizer", default="adamw", metavar="NAME",
                     help="adamw, adamw8bit, paged_adamw8bit, sgd or lion (Trainer's names too)")
    est.add_argument("--dora", action="store_true", help="DoRA (PEFT's use_dora) instead of plain LoRA")
    est.add_argument("--modules-to-save", default=None, metavar="LIST",
                     help="modules trained whole beside the adapters (PEFT's modules_to_save): embed_tokens, "
                          "wte, lm_head")
    est.add_argument("--gpu-split", type=float, default=None, metavar="GiB",
                     help="Transformers formats: GiB of weights on the GPU, the rest offloaded to RAM "
                          "(TGWUI's --gpu-split; --gpu-memory before 2025-04-20)")
    est.add_argument("--json", action="store_true", help="print the estimate as JSON")
    est.set_defaults(func=_estimate)

    adv = sub.add_parser("advise", help="the configurations that fit this machine, best first")
    adv.add_argument("model", metavar="MODEL", nargs="?", help=MODEL_HELP)
    adv.add_argument("--config-json", metavar="FILE|-", default=None,
                     help="size the model from this config.json (- reads a pasted one from stdin)")
    adv.add_argument("--tier", default=None, metavar="TIER",
                     help="a hardware tier instead of this machine (gpu-8gb, cpu-16gb, ...: `pocketpack presets list`)")
    adv.add_argument("--ctx", type=int, default=None, metavar="N",
                     help="compare the formats at exactly this context (default: each at the largest that fits)")
    adv.add_argument("--vram", type=float, default=None, metavar="GiB", help="GPU memory (default: detected; 0 = CPU)")
    adv.add_argument("--ram", type=float, default=None, metavar="GiB", help="system RAM (default: detected)")
    adv.add_argument("--json", action="store_true")
    adv.set_defaults(func=_advise)

    lst = sub.add_parser("models", help="the catalogue of model shapes that resolve by name (offline)")
    lst.add_argument("query", nargs="?", default="", metavar="QUERY", help="only names containing this")
    lst.set_defaults(func=_models)


def _model_info(args):
    """The model a command names: --config-json, else a local path, else the catalogue."""
    from pocketpack.vram.catalogue import info_from_config_file, info_from_text, resolve_model

    if args.config_json is not None:
        if args.model:
            raise VramError("give a MODEL or --config-json, not both")
        if args.config_json == "-":
            return info_from_text(sys.stdin.buffer.read(), "config.json from stdin")
        return info_from_config_file(args.config_json)
    if not args.model:
        raise VramError("name a model: a folder, config.json or .gguf, a catalogue name ('Mistral 7B'), "
                        "or --config-json FILE|-")
    return resolve_model(args.model)


def _models(args) -> int:
    from pocketpack.vram.catalogue import entries, normalise

    want = normalise(args.query)
    for e in entries():
        if want in normalise(" ".join((e.name, *e.aliases, *e.repos))):
            print(f"{e.name:<32} {e.repo}")
    return 0


def _estimate(args) -> int:
    from pocketpack.vram.estimate import estimate

    info = _model_info(args)
    e = estimate(info, args.format, ctx=args.ctx, batch=args.batch, cache_type=args.cache_type,
                 gpu_layers=args.gpu_layers, mode=args.mode, lora_rank=args.lora_rank,
                 lora_targets=args.lora_targets, grad_checkpointing=args.grad_checkpointing,
                 optimizer=args.optimizer, device="cpu" if args.cpu else "gpu", dora=args.dora,
                 modules_to_save=args.modules_to_save, gpu_split_gib=args.gpu_split)
    if args.json:
        print(json.dumps(e.to_dict(), indent=2))
        return 0
    print(format_estimate(e))
    return 0


def format_estimate(e) -> str:
    """A human-readable breakdown."""
    head = f"{e.model}  {e.format} ({e.loader}, {e.mode})  ctx {e.ctx}  batch {e.batch}"
    if e.loader == "llama.cpp":
        head += f"  cache {e.cache_type}  " + ("no GPU" if e.device == "cpu" else f"gpu-layers {e.gpu_layers}/{e.n_layers + 1}")
    lines = [head, f"  parameters      {e.params_b:8.2f} B"]
    if e.device == "cpu":  # no VRAM and no CUDA context: the RAM's parts instead
        for name, value in e.ram_parts().items():
            lines.append(f"  {name:<15} {value:8.2f} GiB")
        lines.append(f"  {'RAM total':<15} {e.ram_gib:8.2f} GiB")
    else:
        for name, value in e.parts().items():
            lines.append(f"  {name:<15} {value:8.2f} GiB")
        if e.cuda_context_gib:
            lines.append(f"    cuda context  {e.cuda_context_gib:8.2f} GiB (in overhead)")
        lines.append(f"  {'VRAM total':<15} {e.total_gib:8.2f} GiB")
        lines.append(f"  {'RAM':<15} {e.ram_gib:8.2f} GiB")
    lines.append(f"  {'file on disk':<15} {e.file_gib:8.2f} GiB")
    lines += [f"  note: {n}" for n in e.notes]
    return "\n".join(lines)


def _advise(args) -> int:
    from pocketpack.vram.advise import CANDIDATE_FORMATS, TIME_NOTE
    from pocketpack.vram.machine import detect
    from pocketpack.vram.report import STATUS, compare, machine_label, tier_machine

    info = _model_info(args)
    if args.tier and (args.vram is not None or args.ram is not None):
        raise VramError("give --tier or --vram/--ram, not both")
    machine = tier_machine(args.tier) if args.tier else detect(args.vram, args.ram)
    result = compare(info, machine, args.ctx, CANDIDATE_FORMATS)
    fits = [r for r in result.rows if r.fits]
    if args.json:
        print(json.dumps({
            "model": info.name, "ctx": result.ctx,
            "machine": {"gpu": machine.gpu_name, "vram_gib": round(machine.vram_gib, 2),
                        "ram_gib": round(machine.ram_gib, 2), "source": machine.source},
            "options": [dict(r.option.to_dict(), time_vs_16bit=round(r.time_vs_fp16, 3)) for r in fits],
            "rejected": {r.format: r.why for r in result.rows if not r.fits},
        }, indent=2))
        return 0
    print(f"{info.name} on {machine_label(machine)}"
          + (f", ctx {result.ctx}" if result.ctx else ", each format at its largest context"))
    for note in result.notes:
        print(f"  note: {note}")
    if not fits:
        print("  nothing fits:")
    for r in fits:
        layers = f" gpu-layers {r.gpu_layers}" if r.gpu_layers is not None else ""
        print(f"  {r.rank:2}. {r.format:<16} ctx {r.ctx:<6} cache {r.cache_type:<5}{layers:<15} "
              f"VRAM {r.vram_gib:6.2f} GiB  RAM {r.ram_gib:6.2f} GiB  ~+{r.quality_loss_pct:.1f}% ppl  "
              f"[{STATUS[r.status]}, time/token {r.time_vs_fp16:.2f}x 16-bit]")
    for r in result.rows:
        if not r.fits:
            need = f" (needs {result.chart_total(r):.1f} GiB {result.memory})" if r.estimate else ""
            print(f"      {r.format:<16} {r.why}{need}")
    print(f"  {TIME_NOTE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``vram ...`` alone (``python -m pocketpack.vram.cli estimate ...``): the same as
    ``pocketpack vram ...``, errors included (one line from ``pocketpack.cli.main``)."""
    from pocketpack.cli import main as pocketpack_main

    return pocketpack_main(["vram", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
