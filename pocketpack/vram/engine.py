"""What the vram-advisor tab does, without TGWUI or gradio: the vram engine.

``extensions/vram-advisor/script.py`` builds one :class:`VramEngine`, handing it the host's
models folder and user data folder (callables, asked at the time of use) and whether TGWUI is
the host; each button of the tab is one method taking and returning plain data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


class VramEngine:
    """Estimate (chart rows and the answer), apply a preset to a model's own files, and compare
    the last estimate with what the loaded model really uses."""

    def __init__(self, *, models_dir: Callable[[], Path], user_data_dir: Callable[[], Path | None],
                 in_tgwui: Callable[[], bool]):
        self.models_dir = models_dir
        self.user_data_dir = user_data_dir   # the host's user_data_dir (None before TGWUI v3.1)
        self.in_tgwui = in_tgwui
        self.last_estimate = None            # the best fitting estimate of the last analysis

    def analyse(self, model, pasted, ctx, machine, vram, ram):
        """(chart frame, chart title, Markdown answer), all from one pocketpack comparison."""
        import pandas as pd

        from pocketpack.vram.report import analyse_for_tab, chart_title

        result, text = analyse_for_tab(model, pasted, ctx, machine, vram, ram, self.models_dir())
        rows = result.chart_rows() if result else []
        frame = pd.DataFrame(rows or {"format": [], "part": [], "GiB": []})
        best = next((r for r in result.rows if r.fits), None) if result else None
        self.last_estimate = best.estimate if best else None
        return frame, chart_title(result), text

    def apply(self, tier, model) -> str:
        """Apply the tier to the chosen model's own files: TGWUI's config-user.yaml inside TGWUI,
        the host's model-settings.yaml in ``pocketpack serve`` (used at the model's next load)."""
        from pocketpack.presets.apply import apply_preset
        from pocketpack.vram import VramError

        if not model:
            return "**Not applied:** choose a model in the models folder first."
        try:
            if self.in_tgwui():
                folder = self.user_data_dir()  # where the installer put the presets; none before v3.1
                installed = Path(folder) if folder and Path(folder).is_dir() else None
                done = apply_preset(tier, model, None, Path.cwd(), user_data=installed, models_dir=self.models_dir())
            else:
                done = apply_preset(tier, model, None, host=True, models_dir=self.models_dir(),
                                    user_data=Path(self.user_data_dir()))
        except (VramError, ValueError) as exc:
            return f"**Not applied:** {exc}"
        notes = "".join(f"\n\n_{n}_" for n in done.notes)
        what = (f"`{model}` has {done.source} files: {done.entry.format}, ctx {done.entry.ctx_size} "
                f"({done.model_class} on {tier}, preset `{done.preset_source}`)")
        if done.host:
            return (f"Saved in `{done.written}`: {what}. Used the next time `{model}` loads (Model tab or "
                    f"`pocketpack serve --model {model}`); flags you give there win.\n\n`{done.command}`{notes}")
        return f"Wrote `{done.written}` for {what}.\n\n`{done.command}`{notes}"

    def measure(self) -> str:
        """The last estimate beside what the loaded model really uses (Markdown)."""
        from pocketpack.vram.report import compare_markdown, measured_usage

        return compare_markdown(self.last_estimate, measured_usage())
