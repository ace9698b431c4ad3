"""`pocketpack adapters list|inspect|train|to-gguf|bind`: the adapter library from the shell."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from pocketpack.adapters.library import AdapterError, human_size

DEFAULT_DIR = "user_data/loras"


def register(subparsers) -> None:
    parser = subparsers.add_parser("adapters", help="list, inspect, train and convert LoRA adapters")
    sub = parser.add_subparsers(dest="adapters_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    ls = sub.add_parser("list", help="adapters in a folder (default user_data/loras), read from headers only")
    ls.add_argument("dirs", nargs="*", metavar="DIR")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--allow-pickle", action="store_true", help="also read .bin/.pt adapters (unsafe)")
    ls.set_defaults(func=_list)

    ins = sub.add_parser("inspect", help="rank, alpha, targets, base model and training metadata of one adapter")
    ins.add_argument("path", metavar="PATH", help="a PEFT adapter folder or a GGUF LoRA")
    ins.add_argument("--json", action="store_true")
    ins.add_argument("--tensors", action="store_true", help="include every tensor's shape")
    ins.set_defaults(func=_inspect)

    tr = sub.add_parser("train", help="QLoRA: train a LoRA on a 4-bit NF4 base (resumes an interrupted run)")
    tr.add_argument("--base", required=True, metavar="MODEL",
                    help="a .gguf model (its weights are dequantised once and cached beside it) "
                         "or a Hugging Face model folder")
    tr.add_argument("--data", required=True, metavar="FILE",
                    help=".txt, .jsonl of chats, or memory:CHARACTER (that character's stored conversations)")
    tr.add_argument("--memory-dir", default="user_data/pocketpack/memory", metavar="DIR",
                    help="the memory store, for --data memory:CHARACTER (default: %(default)s)")
    tr.add_argument("--output", required=True, metavar="DIR", help="adapter folder to write")
    tr.add_argument("--rank", type=int, default=8)
    tr.add_argument("--alpha", type=float, default=16.0)
    tr.add_argument("--dropout", type=float, default=0.05)
    tr.add_argument("--targets", default="q_proj,v_proj", metavar="LIST", help="module names or all-linear")
    tr.add_argument("--quant", choices=("nf4", "int8", "none"), default="nf4")
    tr.add_argument("--compute-dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto")
    tr.add_argument("--seq-len", type=int, default=256)
    tr.add_argument("--batch-size", type=int, default=1)
    tr.add_argument("--grad-accum", type=int, default=1)
    tr.add_argument("--lr", type=float, default=2e-4)
    tr.add_argument("--epochs", type=float, default=1.0)
    tr.add_argument("--max-steps", type=int, default=None)
    tr.add_argument("--save-every", type=int, default=50, metavar="N", help="checkpoint every N steps")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                    help="recompute activations in the backward pass: less memory, slower (default: on; "
                         "--no-grad-checkpointing is faster where the plan says it fits, as the demo does)")
    tr.add_argument("--preserve", action="append", default=[], metavar="FILE",
                    help="text (like --data; repeatable) on which the base model's predictions are kept: each step "
                         "adds --preserve-weight x KL(base || base+adapter) there, so the voice changes its own "
                         "kind of text and leaves this one alone (two more forward passes a step: about twice the time)")
    tr.add_argument("--preserve-weight", type=float, default=1.0, metavar="W",
                    help="weight of the --preserve term (default: %(default)s)")
    tr.add_argument("--preserve-hinge", type=float, default=0.0, metavar="H",
                    help="also add H x max(0, NLL_base - NLL_tuned) on the --preserve text: charges the voice only "
                         "for making that text likelier than the base does (default: %(default)s, off)")
    tr.add_argument("--preserve-each", action="store_true",
                    help="with several --preserve files, charge the hinge on each file's own batch, so the voice "
                         "cannot make one of them likelier by making another less likely (one more block of "
                         "--batch-size a file in the preserve forwards)")
    tr.add_argument("--preserve-margin", type=float, default=0.0, metavar="M",
                    help="the hinge charges until the --preserve text is M nats a token less likely than under "
                         "the base (default: %(default)s: until it is no likelier)")
    tr.add_argument("--device", default="auto")
    tr.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    tr.add_argument("--plan", action="store_true", help="only show the memory the run needs")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=_train)

    dm = sub.add_parser("demo", help="train the three shipped demo voices (pirate, formal, poet) on the embedded model")
    dm.add_argument("--base", default="models/gemma-3-270m-q4_k_m.gguf", metavar="MODEL",
                    help="base model (default: %(default)s, the embedded model)")
    dm.add_argument("--dir", default=DEFAULT_DIR, metavar="DIR", help="adapter library (default: %(default)s)")
    dm.add_argument("--styles", default="pirate,formal,poet", metavar="LIST")
    dm.add_argument("--steps", type=int, default=None, help="optimiser steps a voice (default: the demo's, "
                    "pocketpack.adapters.demo.DEMO_SETTINGS)")
    dm.add_argument("--preserve-weight", type=float, default=None, metavar="W",
                    help="weight of the term that keeps the base model's predictions on the other voices' "
                         "training lines (default: the demo's, 0: off; the hinge does that job)")
    dm.add_argument("--preserve-hinge", type=float, default=None, metavar="H",
                    help="weight of the term that charges a voice for making the other voices' training lines "
                         "likelier than the base does (default: the demo's; 0 trains without it)")
    dm.add_argument("--preserve-each", action=argparse.BooleanOptionalAction, default=None,
                    help="charge that hinge on each other voice's lines apart (default: the demo's)")
    dm.add_argument("--preserve-margin", type=float, default=None, metavar="M",
                    help="the hinge charges until the other voices' lines are M nats a token less likely than "
                         "under the base (default: the demo's)")
    dm.add_argument("--quant", choices=("nf4", "none"), default=None, help="NF4 base (QLoRA, default) or float32")
    dm.add_argument("--force", action="store_true", help="train again even if a voice is already trained")
    dm.set_defaults(func=_demo)

    cv = sub.add_parser("to-gguf", help="convert a PEFT LoRA to a GGUF LoRA for llama.cpp")
    cv.add_argument("peft_dir", metavar="PEFT_DIR")
    cv.add_argument("out", metavar="OUT.gguf")
    cv.add_argument("--base", metavar="MODEL", help="the base model: a .gguf, an HF folder or config.json "
                                                   "(default: the adapter's base_model_name_or_path)")
    cv.add_argument("--outtype", choices=("f32", "f16"), default="f32")
    cv.set_defaults(func=_to_gguf)

    bd = sub.add_parser("bind", help="bind a character (or chat) to adapters: NAME a=1.0 b=0.5; none for base")
    bd.add_argument("name", metavar="NAME")
    bd.add_argument("adapters", nargs="*", metavar="ADAPTER[=WEIGHT]")
    bd.add_argument("--chat", action="store_true", help="NAME is a chat id, not a character")
    bd.add_argument("--remove", action="store_true", help="remove the binding")
    bd.add_argument("--combination", choices=("live", "cat", "svd", "linear"), default="live")
    bd.add_argument("--file", default="user_data/adapter_bindings.yaml")
    bd.add_argument("--dir", dest="dirs", action="append", metavar="DIR",
                    help="adapter folder the names are checked in (repeatable; default user_data/loras): "
                         "an adapter there that cannot be used is refused")
    bd.set_defaults(func=_bind)


def _list(args) -> int:
    from pocketpack.adapters.library import scan

    dirs = args.dirs or [DEFAULT_DIR]
    missing = [d for d in dirs if not Path(d).is_dir()]
    if missing:
        raise AdapterError(f"{missing[0]}: no such folder")
    infos = scan(dirs, allow_pickle=args.allow_pickle)
    if args.json:
        print(json.dumps([i.to_json() for i in infos], indent=2))
        return 0
    if not infos:
        print(f"no adapters in {', '.join(dirs)} (PEFT folders with adapter_config.json, or GGUF LoRA files)")
        return 0
    rows = [("NAME", "FORMAT", "RANK", "ALPHA", "TARGETS", "SIZE", "BASE / PROBLEM")]
    for i in infos:
        rank = ",".join(str(r) for r in i.ranks) if i.ranks else "-"
        rows.append((i.name, i.format, rank, f"{i.alpha:g}" if i.alpha is not None else "-",
                     ",".join(i.target_modules) or "-", human_size(i.size_bytes) if i.size_bytes else "-",
                     f"! {i.problem}" if i.problem else (i.base_model or "-")))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in range(len(widths))) + "  " + r[-1])
    return 0


def _inspect(args) -> int:
    from pocketpack.adapters.library import inspect_adapter

    info = inspect_adapter(args.path)
    if args.json:
        print(json.dumps(info.to_json(tensors=args.tensors), indent=2))
        return 0
    print(f"{info.name}  ({info.format} LoRA, {human_size(info.size_bytes)}, {info.n_params:,} parameters)")
    print(f"  rank        {', '.join(map(str, info.ranks)) or info.rank}")
    print(f"  alpha       {info.alpha if info.alpha is not None else '-'}"
          + (f"  (scale {info.scale:.3g})" if info.scale else ""))
    print(f"  targets     {', '.join(info.target_modules) or '-'}")
    print(f"  layers      {info.n_layers}")
    print(f"  base model  {info.base_model or '-'}")
    if info.architecture:
        print(f"  arch        {info.architecture}")
    flags = [n for n, on in (("rsLoRA", info.use_rslora), ("DoRA", info.use_dora)) if on]
    if flags:
        print(f"  variants    {', '.join(flags)}")
    if info.training:
        shown = {k: v for k, v in info.training.items() if k not in ("losses",)}
        print("  training    " + json.dumps(shown, sort_keys=True)[:600])
    if args.tensors:
        for name, shape in sorted(info.tensors.items()):
            print(f"    {name}  {shape}")
    return 0


def _train(args) -> int:
    from pocketpack.adapters.train import TrainConfig, base_tokenizer, load_examples, plan, train

    cfg = TrainConfig(base=args.base, data=args.data, output=args.output, rank=args.rank, alpha=args.alpha,
                      dropout=args.dropout, targets=[t.strip() for t in args.targets.split(",") if t.strip()],
                      quant=args.quant, compute_dtype=args.compute_dtype, seq_len=args.seq_len,
                      batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, epochs=args.epochs,
                      max_steps=args.max_steps, save_every=args.save_every, seed=args.seed, device=args.device,
                      memory_dir=args.memory_dir, grad_checkpointing=args.grad_checkpointing,
                      preserve=list(args.preserve), preserve_weight=args.preserve_weight,
                      preserve_hinge=args.preserve_hinge, preserve_each=args.preserve_each,
                      preserve_margin=args.preserve_margin)
    if args.plan:
        n = len(load_examples(cfg.data, base_tokenizer(cfg.base), cfg.seq_len,
                              memory_dir=cfg.memory_dir))
        p = plan(cfg, n)
        print(json.dumps({"fits": p.fits, "need_gib": p.need_gib, "have_gib": p.have_gib, "source": p.source,
                          "breakdown": p.breakdown, "steps": p.steps, "notes": p.notes}, indent=2)
              if args.json else ("fits: " if p.fits else "DOES NOT FIT: ") + p.describe())
        return 0 if p.fits else 1

    meta = train(cfg, None if args.json else _progress_bar(), resume=not args.no_resume)
    if args.json:
        print(json.dumps(meta, indent=2))
    else:
        if not meta["finished"]:
            print(f"stopped at step {meta['steps']}; run the same command again to resume")
            return 0
        print(f"saved {args.output} ({meta['steps']} steps, final loss {meta['final_loss']}); {meta['memory_plan']}")
        if meta.get("gguf"):
            print(f"llama.cpp LoRA: {meta['gguf']}")
        for note in meta["notes"]:
            print(f"note: {note}")
    return 0


def _progress_bar(stream=None):
    """A progress callback: one redrawn line on a terminal, a line a step otherwise."""
    stream = stream or sys.stdout
    tty = stream.isatty()

    def show(pr) -> None:
        width = 24
        done = int(width * pr.step / max(pr.total, 1))
        line = f"[{'#' * done}{'.' * (width - done)}] {pr.describe()}"
        if tty:
            stream.write("\r" + line + ("\n" if pr.step >= pr.total else ""))
        else:
            stream.write(line + "\n")
        stream.flush()

    return show


def _demo(args) -> int:
    from pocketpack.adapters import demo

    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    for style in styles:
        demo.corpus(style)
    if not Path(args.base).is_file():
        raise AdapterError(f"{args.base}: base model not found (make setup puts the embedded model there)")
    results = demo.run(args.base, args.dir, styles, force=args.force, progress=_progress_bar(),
                       max_steps=args.steps, quant=args.quant, preserve_weight=args.preserve_weight,
                       preserve_hinge=args.preserve_hinge, preserve_each=args.preserve_each,
                       preserve_margin=args.preserve_margin)
    done = [r for r in results if r.get("finished")]
    print(f"{len(done)} of {len(styles)} voices ready in {args.dir}: pocketpack adapters list {args.dir}")
    return 0 if len(done) == len(styles) else 1


def _to_gguf(args) -> int:
    from pocketpack.adapters.gguf_convert import peft_to_gguf
    from pocketpack.adapters.library import inspect_adapter

    out = peft_to_gguf(args.peft_dir, args.out, base=args.base, outtype=args.outtype)
    info = inspect_adapter(out)
    print(f"wrote {out} ({info.architecture} LoRA, rank {info.rank}, {len(info.tensors) // 2} layers adapted, "
          f"{human_size(info.size_bytes)})")
    return 0


def _bind(args) -> int:
    from pocketpack.adapters.binding import Bindings
    from pocketpack.adapters.library import check_bindable

    b = Bindings(args.file)
    key = {"chat": args.name} if args.chat else {"character": args.name}
    if args.remove:
        found = b.unbind(args.name, chat=args.name if args.chat else None)
        print(f"removed the binding of {args.name}" if found else f"{args.name} had no binding")
        return 0
    weights = {}
    for item in args.adapters:
        if item == "none":
            continue
        name, _, w = item.partition("=")
        try:
            weights[name] = float(w) if w else 1.0
            if not math.isfinite(weights[name]):
                raise ValueError(w)
        except ValueError:
            raise AdapterError(f"{item}: weight must be a number") from None
    check_bindable(args.dirs or [DEFAULT_DIR], weights)
    b.bind(adapters=weights, combination=args.combination, **key)
    shown = ", ".join(f"{k}={v:g}" for k, v in weights.items()) or "the base model (no adapters)"
    print(f"{args.name} -> {shown}")
    return 0
