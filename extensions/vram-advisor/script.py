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


def _analyse(model, pasted, ctx, machine, vram, ram):
    """Chart rows and the answer, both from one pocketpack comparison."""
    import pandas as pd

    from pocketpack.vram.report import analyse_for_tab, chart_title

    result, text = analyse_for_tab(model, pasted, ctx, machine, vram, ram, _models_dir())
    rows = result.chart_rows() if result else []
    frame = pd.DataFrame(rows or {"format": [], "part": [], "GiB": []})
    best = next((r for r in result.rows if r.fits), None) if result else None
    _state["last_estimate"] = best.estimate if best else None
    return _chart_update(frame, chart_title(result)), text


def _preset_tier(choice):
    """Choosing a tier as the machine chooses it as the preset to apply too."""
    import gradio as gr

    from pocketpack.vram.report import tier_for_choice

    tier = tier_for_choice(choice)
    return gr.update(value=tier) if tier else gr.update()


def _chart_update(frame, title):
    import gradio as gr

    return gr.update(value=frame, title=title)


def _in_tgwui() -> bool:
    """TGWUI is the host (its modules.shared is loaded); else the standalone ``pocketpack serve``."""
    from pocketpack.host import shared as standalone
    from pocketpack.tgwui import shared

    return shared() is not standalone


def _apply(tier, model):
    """Apply the tier to the chosen model's own files: TGWUI's config-user.yaml inside TGWUI, the
    host's model-settings.yaml in ``pocketpack serve`` (used at the model's next load there)."""
    from pocketpack.presets.apply import apply_preset
    from pocketpack.vram import VramError

    if not model:
        return "**Not applied:** choose a model in the models folder first."
    try:
        if _in_tgwui():
            done = apply_preset(tier, model, None, Path.cwd(), user_data=_user_data(), models_dir=_models_dir())
        else:
            from pocketpack.tgwui import shared

            done = apply_preset(tier, model, None, host=True, models_dir=_models_dir(),
                                user_data=Path(shared().user_data_dir))
    except (VramError, ValueError) as exc:
        return f"**Not applied:** {exc}"
    notes = "".join(f"\n\n_{n}_" for n in done.notes)
    what = (f"`{model}` has {done.source} files: {done.entry.format}, ctx {done.entry.ctx_size} "
            f"({done.model_class} on {tier}, preset `{done.preset_source}`)")
    if done.host:
        return (f"Saved in `{done.written}`: {what}. Used the next time `{model}` loads (Model tab or "
                f"`pocketpack serve --model {model}`); flags you give there win.\n\n`{done.command}`{notes}")
    return f"Wrote `{done.written}` for {what}.\n\n`{done.command}`{notes}"


def _measure():
    from pocketpack.vram.report import compare_markdown, measured_usage

    return compare_markdown(_state["last_estimate"], measured_usage())


def ui():
    import gradio as gr

    from pocketpack.presets import list_tiers, tier_for
    from pocketpack.vram.catalogue import names
    from pocketpack.vram.machine import detect
    from pocketpack.vram.report import list_models, machine_choices

    local = list_models(_models_dir())
    loaded = _loaded_model()
    machine = detect(use_torch=False)
    machines = machine_choices(machine)
    with gr.Row():
        model = gr.Dropdown(choices=local + names(), value=loaded if loaded in local else None,
                            allow_custom_value=True, filterable=True, label="Model",
                            info="a file in the models folder, or any catalogue model (e.g. Mistral 7B)",
                            elem_id="vram-model")
        ctx = gr.Number(value=4096, label="Context (tokens)", precision=0, elem_id="vram-ctx")
        where = gr.Dropdown(choices=machines, value=machines[0], label="Machine", elem_id="vram-machine")
        go = gr.Button("Estimate", variant="primary", elem_id="vram-estimate")
    with gr.Accordion("Custom machine", open=False), gr.Row():
        vram = gr.Number(value=0, label="VRAM GiB (0 = no GPU)")
        ram = gr.Number(value=16, label="RAM GiB")
    pasted = gr.Textbox(lines=2, label="...or paste a config.json (used instead of the Model box when filled)",
                        placeholder='{"model_type": "llama", "hidden_size": 4096, ...}', elem_id="vram-config")
    chart = gr.BarPlot(x="format", y="GiB", color="part", title="Memory by format (GiB)", elem_id="vram-chart")
    advice = gr.Markdown(elem_id="vram-answer")
    with gr.Row():
        tier = gr.Dropdown(choices=list_tiers(), value=tier_for(machine.vram_gib, machine.ram_gib),
                           label="Hardware-tier preset")
        apply = gr.Button("Apply preset to this model")
    applied = gr.Markdown()
    measure = gr.Button("Predicted vs measured (after loading)")
    measured = gr.Markdown()
    go.click(_analyse, [model, pasted, ctx, where, vram, ram], [chart, advice])
    where.change(_preset_tier, where, tier)
    apply.click(_apply, [tier, model], applied)
    measure.click(_measure, None, measured)
