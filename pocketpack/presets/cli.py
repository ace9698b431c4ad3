"""`pocketpack presets list|show|apply`: hardware-tier presets from the command line."""

from __future__ import annotations

import json

from pocketpack.vram.errors import VramError


def register(subparsers) -> None:
    parser = subparsers.add_parser("presets", help="hardware-tier load presets (not TGWUI sampler presets)")
    sub = parser.add_subparsers(dest="presets_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    ls = sub.add_parser("list", help="the tiers, where each is read from, and the one this machine matches")
    ls.add_argument("--tgwui", metavar="PATH", help="TGWUI checkout whose installed presets to read "
                    "(default: the working directory, when it is a checkout)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)

    show = sub.add_parser("show", help="what each model class uses on a tier")
    show.add_argument("tier")
    show.add_argument("--source", metavar="gguf|gptq|hf|awq|exl2", default=None,
                      help="the kind of files you have: a .gguf, a GPTQ checkpoint, fp16/bf16 safetensors, AWQ, "
                           "EXL2 (default: the best format whatever the files)")
    show.add_argument("--model", metavar="NAME", default=None,
                      help="take the source from this model's files (in the models folder of --tgwui, or --model-dir)")
    show.add_argument("--model-dir", metavar="DIR", default=None, help="models folder for --model (default: the "
                      "checkout's, else models)")
    show.add_argument("--tgwui", metavar="PATH", help="TGWUI checkout: its installed presets and the flags it accepts")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_show)

    ap = sub.add_parser("apply", help="write the model's config-user.yaml entry (TGWUI) or model-settings.yaml "
                        "(--host), or print the command line")
    ap.add_argument("tier")
    ap.add_argument("model", help="folder or file name inside the models folder")
    ap.add_argument("--class", dest="model_class", metavar="CLASS", help="3B, 7-8B, 13-14B, 30-34B or 70B "
                    "(default: from the model's size)")
    ap.add_argument("--tgwui", metavar="PATH", help="TGWUI checkout to write <models>/config-user.yaml in "
                    "(default: the working directory, when it is a checkout)")
    ap.add_argument("--print", dest="print_only", action="store_true", help="only print the command line")
    ap.add_argument("--source", metavar="gguf|gptq|hf|awq|exl2", default=None,
                    help="the kind of files the model has (default: read from its files)")
    ap.add_argument("--host", action="store_true",
                    help="apply to the standalone host (pocketpack serve): write USER_DATA/pocketpack/model-settings.yaml")
    ap.add_argument("--model-dir", metavar="DIR", default=None, help="models folder (--host default: models)")
    ap.add_argument("--user-data-dir", metavar="DIR", default=None, help="--host: user data folder (default: user_data)")
    ap.add_argument("--json", action="store_true")
    ap.set_defaults(func=_apply)


def _checkout(path: str | None) -> str | None:
    """``--tgwui``, or the working directory when it is a TGWUI checkout (TGWUI runs from its root)."""
    from pathlib import Path

    from pocketpack.presets import is_checkout

    if path:
        return path
    return str(Path.cwd()) if is_checkout(Path.cwd()) else None


def _list(args) -> int:
    from pocketpack.presets import TIERS, find_preset, tier_for
    from pocketpack.vram.machine import detect

    if args.tgwui is not None:
        from pocketpack.presets.tgwui import detect_version

        detect_version(args.tgwui)  # not a TGWUI checkout: one line from pocketpack.cli.main
    m = detect(use_torch=False)
    mine = tier_for(m.vram_gib, m.ram_gib)
    sources = {name: str(find_preset(name, args.tgwui) or "generated") for name in TIERS}
    if args.json:
        print(json.dumps({"tiers": {k: v[2] for k, v in TIERS.items()}, "sources": sources, "this_machine": mine},
                         indent=2))
        return 0
    for name, (_, _, desc) in TIERS.items():
        print(f"{'*' if name == mine else ' '} {name:<10} {desc:<62} {sources[name]}")
    print(f"(* this machine: {m.gpu_name or 'no GPU'}, {m.ram_gib:.0f} GiB RAM)")
    return 0


def _show(args) -> int:
    from pathlib import Path

    from pocketpack.presets import load_preset
    from pocketpack.presets.apply import pick_source
    from pocketpack.presets.tgwui import (
        SOURCES,
        CannotLoad,
        detect_version,
        load_settings,
        model_sources,
        sources_from_name,
    )

    tgwui = _checkout(args.tgwui)
    version = detect_version(tgwui)
    preset = load_preset(args.tier, tgwui=tgwui)
    source = args.source
    if source is not None and source not in SOURCES:
        raise VramError(f"unknown source {source!r}; sources: {', '.join(SOURCES)}")
    if args.model:
        folder = Path(args.model_dir) if args.model_dir else (version.models_dir if tgwui else Path("models"))
        path = folder / args.model
        source = pick_source(args.model, model_sources(path) if path.exists() else sources_from_name(args.model),
                             source)

    def rows(entries: dict, src: str | None):
        out = {}
        for name, entry in entries.items():
            if entry is None:
                out[name] = None
                continue
            try:
                flags, _, notes = load_settings(entry, version, src, ram_gib=preset.ram_gib - 2)
            except CannotLoad as exc:
                flags, notes = [], [str(exc)]
            out[name] = (entry, flags, notes)
        return out

    if args.json:
        out = preset.to_dict()
        out["source"] = preset.source
        for name, row in rows(preset.models, None).items():
            if row:
                out["models"][name]["flags"] = row[1]
        for src, entries in preset.sources.items():
            for name, row in rows(entries, src).items():
                if row:
                    out["sources"][src][name].update(flags=row[1], notes=row[2])
        if source:
            out["source_format"] = source
            out["models"] = out["sources"].get(source, {})
        print(json.dumps(out, indent=2))
        return 0
    shown = preset.sources.get(source, {}) if source else preset.models
    what = f", {source} files ({args.model})" if args.model else (f", {source} files" if source else "")
    print(f"{preset.tier}: {preset.description}  (from {preset.source}{what})")
    for name, row in rows(shown, source).items():
        if row is None:
            print(f"  {name:<7} " + ("needs a GPU" if preset.vram_gib <= 0 and source not in (None, "gguf")
                                     else "does not fit"))
            continue
        entry, flags, notes = row
        print(f"  {name:<7} {entry.format:<15} ctx {entry.ctx_size:<6} ~{entry.vram_gib:5.2f} GiB VRAM "
              f"{entry.ram_gib:5.2f} GiB RAM [{entry.placement}]  {' '.join(flags)}")
        for note in notes:
            print(f"          note: {note}")
    if not source:
        print("  (the best format whatever your files; --source gguf|gptq|hf|awq|exl2 for the files you have)")
    return 0


def _apply(args) -> int:
    from pocketpack.presets.apply import apply_preset

    if args.host and args.tgwui:
        raise VramError("give --host (the standalone host) or --tgwui PATH (a TGWUI checkout), not both")
    done = apply_preset(args.tier, args.model, args.model_class, None if args.host else _checkout(args.tgwui),
                        write=not args.print_only, source=args.source, host=args.host,
                        models_dir=args.model_dir, user_data=args.user_data_dir if args.host else None)
    if args.json:
        print(json.dumps({"tier": done.tier, "model": done.model, "class": done.model_class,
                          "preset": done.preset_source, "source_format": done.source, "format": done.entry.format,
                          "flags": done.flags, "settings": done.settings, "command": done.command,
                          "written": str(done.written) if done.written else None, "notes": done.notes}, indent=2))
        return 0
    if done.written:
        print(f"wrote {done.written}: {done.model}$ -> {done.settings}  (preset from {done.preset_source})")
    print(done.command)
    for note in done.notes:
        print(f"note: {note}")
    return 0
