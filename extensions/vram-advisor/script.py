"""vram-advisor: a TGWUI tab over pocketpack.vram (estimate, advise, presets, measured usage).

Thin adapter over ``pocketpack.vram.engine.VramEngine``: the models folder and the loaded model
come from TGWUI's shared module; every number comes from pocketpack. Works with --nowebui too:
nothing here runs until ui() is called.
"""

from pathlib import Path

from pocketpack import tgwui

params = {
    "display_name": "VRAM advisor",
    "is_tab": True,
}

_engine = None


def setup():
    import pocketpack.vram  # noqa: F401  (fails early with a clear ModuleNotFoundError if not installed)


# -- the edge: the models folder and user data folder of TGWUI (or of the standalone host) --------

def _models_dir() -> Path:
    s = tgwui.shared()
    return Path(getattr(s.args, "model_dir", None) or Path(getattr(s, "user_data_dir", "user_data")) / "models")


def _loaded_model() -> str | None:
    name = getattr(tgwui.shared(), "model_name", "None")
    return None if name in (None, "None", "") else name


def engine():
    """The process-wide VramEngine (pocketpack.vram.engine)."""
    global _engine
    if _engine is None:
        from pocketpack.vram.engine import VramEngine

        _engine = VramEngine(models_dir=_models_dir, user_data_dir=lambda: getattr(tgwui.shared(), "user_data_dir", None),
                             in_tgwui=tgwui.in_tgwui)
    return _engine


# -- UI -------------------------------------------------------------------------------------------

def _analyse(*fields):
    import gradio as gr

    frame, title, text = engine().analyse(*fields)
    return gr.update(value=frame, title=title), text


def _preset_tier(choice):
    """Choosing a tier as the machine chooses it as the preset to apply too."""
    import gradio as gr

    from pocketpack.vram.report import tier_for_choice

    tier = tier_for_choice(choice)
    return gr.update(value=tier) if tier else gr.update()


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
    apply.click(lambda t, m: engine().apply(t, m), [tier, model], applied)
    measure.click(lambda: engine().measure(), None, measured)
