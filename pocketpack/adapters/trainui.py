"""What the Adapters tab shows about training a voice, kept out of the extension script.

``default_base`` picks the model a new voice is trained on (the loaded GGUF — in ``pocketpack
serve`` the embedded model — else the embedded model file when it is on disk); ``tab_config``
turns the tab's fields into a :class:`~pocketpack.adapters.train.TrainConfig` with the demo's
CPU-sized settings; :class:`TrainingRun` runs it in a thread and reports steps/s, eta and the
loss curve while it runs, and what was made when it ends.
"""

from __future__ import annotations

import threading
from pathlib import Path

from pocketpack.adapters.library import AdapterError, human_size

EMPTY_HINT = ("No voices yet: **train a voice from a text file or a character's chats** below (the model is "
              "preselected), or put PEFT adapter folders or GGUF LoRA files in `{lora_dir}`.")


def default_base(model=None, models_dir: str | Path = "models") -> str:
    """The base a new voice is trained on: the loaded model's file or folder, else the
    embedded default model when it is on disk, else ''."""
    path = getattr(model, "model_path", None)  # llama_cpp.Llama, llama-server
    if path and Path(str(path)).is_file():
        return str(path)
    config = getattr(getattr(model, "get_base_model", lambda: model)(), "config", None)
    folder = getattr(config, "_name_or_path", None)
    if folder and (Path(str(folder)) / "config.json").is_file():
        return str(folder)
    from pocketpack.host.default_model import default_model_path

    embedded = default_model_path(models_dir)
    return str(embedded) if embedded.is_file() else ""


def shipped_corpora() -> list[str]:
    """The demo voices' training files, for the tab's data hint."""
    from pocketpack.adapters.demo import STYLES, corpus

    return [str(corpus(s)) for s in STYLES]


def tab_config(base: str, data: str, name: str, lora_dir: str | Path, *, rank=8, alpha=16.0,
               targets="q_proj,v_proj", steps=60, seq_len=64, quant="nf4", memory_dir=None):
    """The tab's fields as a TrainConfig; batch, learning rate and checkpointing are the demo's,
    sized for a few minutes on a CPU."""
    from pocketpack.adapters.demo import DEMO_SETTINGS
    from pocketpack.adapters.train import TrainConfig

    name = (name or "").strip()
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise AdapterError("name the new voice (a folder name inside the loras folder)")
    if not str(base or "").strip():
        raise AdapterError("choose the base model (a .gguf or a Hugging Face model folder)")
    if not str(data or "").strip():
        raise AdapterError("choose the text: a .txt (one line per utterance), a .jsonl of chats, or memory:CHARACTER")
    return TrainConfig(base=str(base).strip(), data=str(data).strip(), output=str(Path(lora_dir) / name),
                       rank=int(rank), alpha=float(alpha), seq_len=int(seq_len), quant=str(quant),
                       targets=[t.strip() for t in str(targets).split(",") if t.strip()],
                       max_steps=int(steps) if steps else None, epochs=DEMO_SETTINGS["epochs"],
                       batch_size=DEMO_SETTINGS["batch_size"], lr=DEMO_SETTINGS["lr"],
                       save_every=DEMO_SETTINGS["save_every"], grad_checkpointing=False,
                       memory_dir=str(memory_dir) if memory_dir else None)


def loss_image(losses: list[float], title: str = ""):
    """The loss curve as an RGB array (what gr.Image shows), or None before the first step."""
    if not losses:
        return None
    import numpy as np

    from pocketpack.adapters.train import loss_figure

    fig = loss_figure(losses, title)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


class TrainingRun:
    """One training in a background thread; ``stop()`` ends it after a checkpoint."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.losses: list[float] = []
        self.last = None          # the latest Progress
        self.meta: dict | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.done = threading.Event()

    def start(self) -> TrainingRun:
        threading.Thread(target=self._run, name="adapter-train", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _progress(self, p) -> bool:
        self.last = p
        self.losses.append(float(p.loss))
        return not self._stop.is_set()

    def _run(self) -> None:
        from pocketpack.adapters.train import train

        try:
            self.meta = train(self.cfg, self._progress)
        except BaseException as exc:  # noqa: BLE001 - reported by status()
            self.error = exc
        finally:
            self.done.set()

    def status(self) -> str:
        """One Markdown line: loading, step/steps/s/eta/loss, or what was made."""
        if self.error is not None:
            exc = self.error
            line = exc.one_line() if hasattr(exc, "one_line") else (str(exc).splitlines() or [type(exc).__name__])[0]
            return f"**{'Not started' if isinstance(exc, AdapterError) and self.last is None else 'Training failed'}:** {line}"
        if self.meta is not None:
            return self.summary()
        if self.last is None:
            return ("Loading the base model… (a GGUF is dequantised for training the first time: a few minutes, "
                    "then kept beside it)")
        return self.last.describe().replace("  ", " · ")

    def summary(self) -> str:
        meta = self.meta or {}
        out = Path(self.cfg.output)
        if not meta.get("finished"):
            return f"Stopped at step {meta.get('steps')}; train again with the same settings to resume."
        gguf = out / f"{out.name}.gguf"
        size = human_size(gguf.stat().st_size) if gguf.is_file() else "no GGUF"
        first = meta["losses"][0] if meta.get("losses") else None
        base = (meta.get("base_gguf") or {}).get("file") or Path(str(meta.get("base_model", ""))).name
        notes = "".join(f" _{n}_" for n in meta.get("notes", []))
        return (f"Saved **{out.name}**: {meta['steps']} steps in {meta['elapsed_s']:.0f} s, loss "
                f"{first:.3f} → {meta['final_loss']:.3f}; rank {meta['rank']}, {size}, base {base}. "
                f"It is in the library: choose it above and press Switch, or bind it to a character.{notes}")

    def image(self):
        return loss_image(self.losses, Path(self.cfg.output).name)
