"""Three demo voices trained on the embedded model: `pocketpack adapters demo` / `make adapters`.

Each voice is a self-written corpus shipped in ``pocketpack/adapters/corpora`` (see its
README): ``NAME.train.txt`` is trained on, ``NAME.heldout.txt`` never is (it is what
``bench/adapters_quality.py`` measures). The settings are sized to take a few minutes a voice
on 2 CPU cores: QLoRA (NF4 base, float32 compute on CPU), rank 8 on q_proj and v_proj, short
64-token blocks, a high learning rate. Each voice lands in ``DIR/NAME/`` as a PEFT folder with
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

# measured on 2 shared cores (see README "adapter-switcher"): about 2.5 s a step
DEMO_SETTINGS = {"rank": 8, "alpha": 16.0, "dropout": 0.05, "targets": ["q_proj", "v_proj"], "quant": "nf4",
                 "seq_len": 64, "batch_size": 2, "grad_accum": 1, "lr": 1e-3, "max_steps": 60, "epochs": 100.0,
                 "save_every": 10, "seed": 0, "grad_checkpointing": False}


def corpus(style: str, split: str = "train") -> Path:
    """The shipped corpus file of ``style`` (``split``: train or heldout)."""
    if split not in ("train", "heldout"):
        raise AdapterError(f"split {split!r}: train or heldout")
    path = CORPORA / f"{style}.{split}.txt"
    if not path.is_file():
        raise AdapterError(f"no voice called {style!r} (shipped voices: {', '.join(STYLES)})")
    return path


def lines(style: str, split: str = "heldout") -> list[str]:
    return [ln.strip() for ln in corpus(style, split).read_text(encoding="utf-8").splitlines() if ln.strip()]


def config(style: str, base: str | Path, out_dir: str | Path, **overrides):
    """The TrainConfig of one demo voice (``overrides``: any TrainConfig field)."""
    from pocketpack.adapters.train import TrainConfig

    settings = dict(DEMO_SETTINGS, **{k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(base=str(base), data=str(corpus(style)), output=str(Path(out_dir) / style), **settings)


def already_trained(cfg) -> bool:
    """The voice's folder holds a finished run of these settings, with its GGUF LoRA."""
    out = Path(cfg.output)
    try:
        meta = json.loads((out / METADATA_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same = all(meta.get(k) == getattr(cfg, k) for k in ("rank", "seq_len", "batch_size", "lr", "seed"))
    return (same and meta.get("finished") and meta.get("steps") == cfg.max_steps and meta.get("data") == cfg.data
            and (out / f"{out.name}.gguf").is_file())


def run(base: str | Path, out_dir: str | Path, styles=STYLES, *, force: bool = False,
        progress: Callable | None = None, announce: Callable[[str], object] = print, **overrides) -> list[dict]:
    """Train each voice in turn (never two at once); returns their training metadata."""
    results = []
    for style in styles:
        cfg = config(style, base, out_dir, **overrides)
        if not force and already_trained(cfg):
            meta = json.loads((Path(cfg.output) / METADATA_NAME).read_text(encoding="utf-8"))
            announce(f"{style}: already trained ({meta['steps']} steps, final loss {meta['final_loss']:.3f}) "
                     f"in {cfg.output}")
            results.append(dict(meta, skipped=True))
            continue
        from pocketpack.adapters.train import train

        announce(f"{style}: training on {Path(cfg.data).name} ({cfg.max_steps} steps of {cfg.batch_size} x "
                 f"{cfg.seq_len} tokens, rank {cfg.rank}, {cfg.quant})")
        meta = train(cfg, progress)
        if not meta.get("finished"):
            announce(f"{style}: stopped at step {meta['steps']}; run again to resume")
            results.append(meta)
            break
        announce(f"{style}: done in {meta['elapsed_s']:.0f} s, final loss {meta['final_loss']:.3f}; "
                 f"{cfg.output}/{style}.gguf")
        results.append(meta)
    return results
