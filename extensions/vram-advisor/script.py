"""vram-advisor: a TGWUI tab over pocketpack.vram (estimate, advise, presets, measured usage).

Thin adapter: the models folder and the loaded model come from TGWUI's shared module; every
number comes from pocketpack. Works with --nowebui too: nothing here runs until ui() is called.
"""

from pathlib import Path

params = {
    "display_name": "VRAM advisor",
    "is_tab": True,
}

_state = {"last_estimate": None}


def setup():
    import pocketpack.vram  # noqa: F401  (fails early with a clear ModuleNotFoundError if not installed)


def _models_dir() -> Path:
    from pocketpack.tgwui import shared

    s = shared()
    return Path(getattr(s.args, "model_dir", None) or Path(getattr(s, "user_data_dir", "user_data")) / "models")


def _user_data():
    """TGWUI's user data folder (v3.1+), where the installer put the presets; None before v3.1."""
    from pocketpack.tgwui import shared

    folder = getattr(shared(), "user_data_dir", None)
    return Path(folder) if folder and Path(folder).is_dir() else None


def _loaded_model() -> str | None:
    from pocketpack.tgwui import shared

    name = getattr(shared(), "model_name", "None")
    return None if name in (None, "None", "") else name


def _analyse(model, ctx, vram, ram):
    import pandas as pd

    from pocketpack.vram import VramError, inspect_model
    from pocketpack.vram.advise import advise
    from pocketpack.vram.machine import detect
    from pocketpack.vram.report import advice_markdown, breakdown_rows

    empty = pd.DataFrame({"format": [], "part": [], "GiB": []})
    if not model:
        return empty, "Choose a model."
    try:
        info = inspect_model(_models_dir() / model)
        rows, estimates = breakdown_rows(info, int(ctx or 4096))
        machine = detect(vram if vram else None, ram if ram else None)
        advice = advise(info, machine)
    except VramError as exc:
        return empty, f"**Cannot estimate:** {exc}"
    _state["last_estimate"] = advice.best.estimate if advice.best else (estimates[0] if estimates else None)
    return pd.DataFrame(rows), advice_markdown(advice)


def _apply(tier, model):
    from pocketpack.presets.apply import apply_preset
    from pocketpack.vram import VramError

    try:
        done = apply_preset(tier, model, None, Path.cwd(), user_data=_user_data())
    except VramError as exc:
        return f"**Not applied:** {exc}"
    notes = "".join(f"\n\n_{n}_" for n in done.notes)
    return (f"Wrote `{done.written}` for `{model}` ({done.model_class} on {tier}, preset `{done.preset_source}`)."
            f"\n\n`{done.command}`{notes}")


def _measure():
    from pocketpack.vram.report import compare_markdown, measured_usage

    return compare_markdown(_state["last_estimate"], measured_usage())


def ui():
    import gradio as gr

    from pocketpack.presets import list_tiers, tier_for
    from pocketpack.vram.machine import detect
    from pocketpack.vram.report import list_models

    choices = list_models(_models_dir())
    loaded = _loaded_model()
    machine = detect(use_torch=False)
    with gr.Row():
        model = gr.Dropdown(choices=choices, value=loaded if loaded in choices else None, label="Model")
        ctx = gr.Number(value=4096, label="Context", precision=0)
        vram = gr.Number(value=0, label="VRAM GiB (0 = detect)")
        ram = gr.Number(value=0, label="RAM GiB (0 = detect)")
        go = gr.Button("Estimate", variant="primary")
    chart = gr.BarPlot(x="format", y="GiB", color="part", title="Memory by format (GiB)")
    advice = gr.Markdown()
    with gr.Row():
        tier = gr.Dropdown(choices=list_tiers(), value=tier_for(machine.vram_gib, machine.ram_gib),
                           label="Hardware-tier preset")
        apply = gr.Button("Apply preset to this model")
    applied = gr.Markdown()
    measure = gr.Button("Predicted vs measured (after loading)")
    measured = gr.Markdown()
    go.click(_analyse, [model, ctx, vram, ram], [chart, advice])
    apply.click(_apply, [tier, model], applied)
    measure.click(_measure, None, measured)
