"""Three demo voices trained on the embedded model: `pocketpack adapters demo` / `make adapters`.

Each voice is a self-written corpus shipped in ``pocketpack/adapters/corpora`` (see its
README): ``NAME.train.txt`` is trained on; ``NAME.dev.txt`` (what these settings were chosen
on) and ``NAME.heldout.txt`` (what ``bench/adapters_quality.py`` reports) never are. The
settings are sized to take a few minutes a voice on 2 CPU cores: QLoRA (NF4 base, float32
compute on CPU), rank 8 on q_proj and v_proj, short 64-token blocks, a high learning rate.
A voice should change its own kind of text and leave others alone: each step also charges the
adapter for making each other voice's training lines likelier than the base does, with a margin
(the hinge max(0, NLL_base - NLL_tuned + 0.3) on a batch of each, the base's side with the
adapter off: what holds on those training lines holds only partly on unseen ones), since
without it pirate and poet, both casual everyday English, made each other's lines likelier too; the earlier KL to the
base on those lines barely charged for that (README "adapter-switcher"). Each voice lands in ``DIR/NAME/`` as a PEFT folder with
``NAME.gguf`` (llama.cpp) beside its files; a voice already trained with the same settings is
kept, and an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pocketpack.adapters.library import METADATA_NAME, AdapterError

CORPORA = Path(__file__).resolve().parent / "corpora"
STYLES = ("pirate", "formal", "poet")
SPLITS = ("train", "dev", "heldout")

# about 2.5 s a step on 2 idle cores without the preservation term, about twice that with it (4.6 s
# with a hinge per voice on this machine's idle cores, 30-75 s under heavy load); a hinge of 3
# charged on each other voice apart with a margin of 0.3 nats a token (KL weight 0) and 30 steps
# were chosen on the dev lines by bench/adapters_select.py's fixed grids and rules (--grid margin;
# README "adapter-switcher"), over the margin-free hinge of --grid each, the pooled hinge of
# --grid hinge and the KL weight 10 of the first grid
DEMO_SETTINGS = {"rank": 8, "alpha": 16.0, "dropout": 0.05, "targets": ["q_proj", "v_proj"], "quant": "nf4",
                 "seq_len": 64, "batch_size": 2, "grad_accum": 1, "lr": 1e-3, "max_steps": 30, "epochs": 100.0,
                 "save_every": 10, "seed": 0, "grad_checkpointing": False, "preserve_weight": 0.0,
                 "preserve_hinge": 3.0, "preserve_each": True, "preserve_margin": 0.3}


def corpus(style: str, split: str = "train") -> Path:
    """The shipped corpus file of ``style`` (``split``: train, dev or heldout)."""
    if split not in SPLITS:
        raise AdapterError(f"split {split!r}: {', '.join(SPLITS)}")
    path = CORPORA / f"{style}.{split}.txt"
    if not path.is_file():
        raise AdapterError(f"no voice called {style!r} (shipped voices: {', '.join(STYLES)})")
    return path


def lines(style: str, split: str = "heldout") -> list[str]:
    return [ln.strip() for ln in corpus(style, split).read_text(encoding="utf-8").splitlines() if ln.strip()]


def preserved(style: str) -> list[str]:
    """The text a voice keeps the base model's predictions on: the other shipped voices'
    training lines (never their dev or held-out lines)."""
    return [str(corpus(other)) for other in STYLES if other != style]


def config(style: str, base: str | Path, out_dir: str | Path, **overrides):
    """The TrainConfig of one demo voice (``overrides``: any TrainConfig field; ``preserve=[]``
    trains without the preservation term)."""
    from pocketpack.adapters.train import TrainConfig

    settings = dict(DEMO_SETTINGS, **{k: v for k, v in overrides.items() if v is not None})
    if not settings["preserve_hinge"]:
        settings["preserve_each"] = False   # no hinge: none per voice either, and no margin
        settings["preserve_margin"] = 0.0
    settings.setdefault("preserve", preserved(style) if settings["preserve_weight"] or settings["preserve_hinge"]
                        else [])
    return TrainConfig(base=str(base), data=str(corpus(style)), output=str(Path(out_dir) / style), **settings)


def already_trained(cfg) -> bool:
    """The voice's folder holds a finished run of these settings, with its GGUF LoRA."""
    out = Path(cfg.output)
    try:
        meta = json.loads((out / METADATA_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same = all(meta.get(k) == getattr(cfg, k) for k in ("rank", "alpha", "seq_len", "batch_size", "lr", "seed"))
    same = same and meta.get("preserve", []) == [str(p) for p in cfg.preserve] and (
        not cfg.preserve or (meta.get("preserve_weight") == cfg.preserve_weight
                             and meta.get("preserve_hinge", 0.0) == cfg.preserve_hinge
                             and meta.get("preserve_each", False) == cfg.preserve_each
                             and meta.get("preserve_margin", 0.0) == cfg.preserve_margin))
    return (same and meta.get("finished") and meta.get("steps") == cfg.max_steps and meta.get("data") == cfg.data
            and (out / f"{out.name}.gguf").is_file())


def _kept(cfg) -> str:
    """What the preservation term asks of the other voices' lines, for the start line."""
    if not cfg.preserve_hinge:
        return "keeping the base predictions"
    if cfg.preserve_margin:
        return f"at least {cfg.preserve_margin:g} nats a token less likely than under the base"
    return "never likelier than the base"


def run(base: str | Path, out_dir: str | Path, styles=STYLES, *, force: bool = False,
        progress: Callable | None = None, announce: Callable[[str], object] = print, **overrides) -> list[dict]:
    """Train each voice in turn (never two at once); returns their training metadata."""
    from pocketpack.adapters.train import check_preservation, train

    results = []
    for style in styles:
        cfg = config(style, base, out_dir, **overrides)
        check_preservation(cfg)
        if not force and already_trained(cfg):
            meta = json.loads((Path(cfg.output) / METADATA_NAME).read_text(encoding="utf-8"))
            announce(f"{style}: already trained ({meta['steps']} steps, final loss {meta['final_loss']:.3f}) "
                     f"in {cfg.output}")
            results.append(dict(meta, skipped=True))
            continue
        announce(f"{style}: training on {Path(cfg.data).name} ({cfg.max_steps} steps of {cfg.batch_size} x "
                 f"{cfg.seq_len} tokens, rank {cfg.rank}, {cfg.quant}"
                 + (f"; {_kept(cfg)}"
                    f"{' on each of' if cfg.preserve_each else ' on'} "
                    f"{', '.join(Path(p).name for p in cfg.preserve)}"
                    if cfg.preserve and (cfg.preserve_weight or cfg.preserve_hinge) else "") + ")")
        meta = train(cfg, progress)
        if not meta.get("finished"):
            announce(f"{style}: stopped at step {meta['steps']}; run again to resume")
            results.append(meta)
            break
        announce(f"{style}: done in {meta['elapsed_s']:.0f} s, final loss {meta['final_loss']:.3f}; "
                 f"{cfg.output}/{style}.gguf")
        results.append(meta)
    return results
