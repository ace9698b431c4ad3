"""adapter-switcher: LoRA adapters switched per character without reloading the model.

Thin TGWUI adapter over ``pocketpack.adapters.engine.AdapterEngine`` (the hook's logic and every
button of the tab live there; see docs/extensions.md). The model comes from TGWUI's
``shared.model`` (Transformers / PeftModel, or ``LlamaServer`` — TGWUI's llama.cpp loader, a
llama-server process reached over HTTP at its port) or, in ``pocketpack serve``, from the
host's backend (a ``llama_cpp.Llama`` or a transformers model). ``shared.lora_names`` is kept
equal to the adapters really applied, and TGWUI's LoRA menu shows them after a change made
from this tab. ``state_modifier`` activates the character's (or chat's) binding before each
turn. A failure is logged and the turn goes on with the adapters the model had.
"""

from pathlib import Path

from pocketpack import tgwui
from pocketpack.hooks import never_break

params = {
    "display_name": "Adapters",
    "is_tab": True,
    "folders": "",                 # extra adapter folders, comma-separated (user_data/loras is always scanned)
    "budget_mb": 1024,             # memory for resident adapters; least recently used are evicted
    "allow_pickle": False,         # .bin/.pt adapters run code when loaded: off unless you trust them
    "auto_bind": True,             # switch to the character's adapters before each turn
    "combination": "live",         # live | cat | svd | linear
}

_engine = None


def setup():
    import pocketpack.adapters  # noqa: F401  (fails early with a clear ModuleNotFoundError if not installed)
    from pocketpack.adapters.settings import AdapterParams

    AdapterParams.warn_unknown_settings(getattr(tgwui.shared(), "settings", None), "adapter-switcher")


# -- the edge: TGWUI's (or the host's) globals, handed to the engine -----------------------------

def _user_data() -> Path:
    return Path(getattr(tgwui.shared(), "user_data_dir", "user_data"))


def _lora_dir() -> Path:
    args = getattr(tgwui.shared(), "args", None)
    return Path(getattr(args, "lora_dir", None) or _user_data() / "loras")


def _loaded_model():
    """The host backend's model (``pocketpack serve``), else TGWUI's shared.model."""
    s = tgwui.shared()
    backend = getattr(s, "backend", None)
    model = getattr(backend, "model", None) if backend is not None else None
    return model if model is not None else getattr(s, "model", None)


def _publish(names, model) -> None:
    """Keep TGWUI's view truthful: shared.lora_names, and shared.model once PEFT wrapped it."""
    s = tgwui.shared()
    s.lora_names = list(names)
    if model is not None:
        s.model = model


def engine():
    """The process-wide AdapterEngine (pocketpack.adapters.engine)."""
    global _engine
    if _engine is None:
        from pocketpack.adapters.engine import AdapterEngine, AdapterHost

        _engine = AdapterEngine(params, AdapterHost(
            loaded_model=_loaded_model, shared_model=lambda: getattr(tgwui.shared(), "model", None),
            user_data_dir=_user_data, lora_dir=_lora_dir, publish=_publish))
    return _engine


# -- hooks -----------------------------------------------------------------------------------------

@never_break("adapter-switcher", without="a change of adapters", logger="pocketpack.adapters")
def state_modifier(state):
    return engine().on_state(state, tgwui.turn(state))


# -- UI -------------------------------------------------------------------------------------------

def _menu_update():
    """TGWUI's LoRA menu, showing the adapters applied now (see session.lora_menu)."""
    import gradio as gr

    from pocketpack.adapters.session import lora_menu

    choices, value = lora_menu(getattr(tgwui.shared(), "lora_names", []) or [], _lora_dir())
    return gr.Dropdown(choices=choices, value=value, multiselect=True)


def _lora_menu_component():
    """TGWUI's own LoRA menu (Model tab), when this UI is built inside a page that has one."""
    components = getattr(tgwui.shared(), "gradio", None)
    return components.get("lora_menu") if isinstance(components, dict) else None


def _refresh():
    import gradio as gr

    lib, res, binds, hint = engine().tables(tgwui.viewer())
    names = [r[0] for r in lib]
    return lib, res, binds, hint, gr.Dropdown(choices=names)


def _train(*fields):
    """The engine's training updates, its UNCHANGED image as gradio's "leave it"."""
    from pocketpack.adapters.engine import UNCHANGED

    for message, image in engine().train(*fields):
        yield message, gr_skip() if image is UNCHANGED else image


def gr_skip():
    """Leave an output as it is (gr.skip() where gradio has it, else an empty update)."""
    import gradio as gr

    return gr.skip() if hasattr(gr, "skip") else gr.update()


def ui():
    import gradio as gr

    from pocketpack.adapters.session import BINDING_HEADERS, LIBRARY_HEADERS, RESIDENT_HEADERS
    from pocketpack.adapters.trainui import shipped_corpora

    eng = engine()
    lib, res, binds, hint = eng.tables(tgwui.viewer())  # at build: no one signed in, no one's bindings
    names = [r[0] for r in lib]

    hint_md = gr.Markdown(hint)
    library = gr.Dataframe(value=lib, headers=LIBRARY_HEADERS, label="Library", interactive=False, wrap=True)
    with gr.Row():
        selected = gr.Dropdown(choices=names, value=[], multiselect=True, label="Adapters",
                               info="weight 1 each, unless weights are given")
        weights = gr.Textbox(label="Blend weights", placeholder="pirate=1.0, formal=0.5", lines=1)
        combination = gr.Radio(choices=["live", "cat", "svd", "linear"], value=params.get("combination", "live"),
                               label="Blend", info="live: exact, nothing built; cat/svd/linear: merged adapter")
    with gr.Row():
        switch_btn = gr.Button("Switch", variant="primary")
        base_btn = gr.Button("Base model")
        load_btn = gr.Button("Load (keep resident)")
        unload_btn = gr.Button("Unload")
        refresh_btn = gr.Button("Refresh")
    status = gr.Markdown("")
    resident = gr.Dataframe(value=res, headers=RESIDENT_HEADERS, label="In memory", interactive=False)

    with gr.Accordion("Per-character binding", open=False):
        with gr.Row():
            character = gr.Textbox(label="Character", placeholder="a character name, or chat:<id>")
            bind_weights = gr.Textbox(label="Adapters", placeholder="pirate=1.0, terse=0.5 (empty: base model)")
            bind_comb = gr.Radio(choices=["live", "cat", "svd", "linear"], value="live", label="Blend")
        with gr.Row():
            bind_btn = gr.Button("Bind")
            unbind_btn = gr.Button("Remove binding")
        bind_status = gr.Markdown("")
        bindings = gr.Dataframe(value=binds, headers=BINDING_HEADERS, label="Bindings", interactive=False)

    with gr.Accordion("Train a voice from a text file or a character's chats (QLoRA, 4-bit base)", open=not lib):
        gr.Markdown("A `.txt` with one line per utterance, a `.jsonl` of chats, or `memory:CHARACTER` (that "
                    "character's chats as the memory extension stored them). Shipped voices to try: "
                    + ", ".join(f"`{c}`" for c in shipped_corpora()) + ". About 5 minutes on 2 CPU cores "
                    "for 60 steps on the embedded model.")
        with gr.Row():
            t_base = gr.Textbox(label="Base model", value=eng.default_base(),
                                placeholder="a .gguf or a Transformers model folder")
            t_data = gr.Textbox(label="Data", placeholder=".txt, .jsonl of chats, or memory:CHARACTER")
            t_out = gr.Textbox(label="New voice name")
        with gr.Row():
            t_rank = gr.Number(value=8, precision=0, label="Rank")
            t_alpha = gr.Number(value=16, label="Alpha")
            t_targets = gr.Textbox(value="q_proj,v_proj", label="Target modules")
            t_steps = gr.Number(value=60, precision=0, label="Max steps")
            t_seq = gr.Number(value=64, precision=0, label="Sequence length")
            t_quant = gr.Radio(choices=["nf4", "int8", "none"], value="nf4", label="Base")
        with gr.Row():
            plan_btn = gr.Button("Check memory")
            train_btn = gr.Button("Train", variant="primary")
            stop_btn = gr.Button("Stop (keeps a checkpoint)")
        t_status = gr.Markdown("")
        t_plot = gr.Image(label="Loss", interactive=False)

    with gr.Accordion("llama-server (TGWUI's llama.cpp loader)", open=False):
        gr.Markdown("llama-server takes adapters only when the model loads. Choose adapters above, then get the "
                    "flags that start it with them (PEFT adapters are converted to GGUF for the loaded model).")
        flags_btn = gr.Button("llama-server flags")
        flags_out = gr.Textbox(label="extra-flags", lines=2, interactive=False)
        flags_status = gr.Markdown("")

    acts = [selected, weights, combination]
    outs = [library, resident, status]
    lora_menu = _lora_menu_component()
    if lora_menu is not None:  # keep TGWUI's LoRA menu showing what is applied
        outs = outs + [lora_menu]

        def act(action):
            return lambda *a: (*engine().act(action, *a), _menu_update())
    else:
        def act(action):
            return lambda *a: engine().act(action, *a)

    switch_btn.click(act("switch"), acts, outs)
    base_btn.click(act("base"), acts, outs)
    load_btn.click(act("load"), acts, outs)
    unload_btn.click(act("unload"), acts, outs)
    flags_btn.click(lambda *a: engine().server_flags(*a), [selected, weights], [flags_out, flags_status])
    refresh_btn.click(_refresh, None, [library, resident, bindings, hint_md, selected])
    bind_btn.click(lambda c, w, m: engine().bind(c, w, m, False, who=tgwui.viewer()), [character, bind_weights, bind_comb],
                   [bindings, bind_status])
    unbind_btn.click(lambda c, w, m: engine().bind(c, w, m, True, who=tgwui.viewer()), [character, bind_weights, bind_comb],
                     [bindings, bind_status])
    t_inputs = [t_base, t_data, t_out, t_rank, t_alpha, t_targets, t_steps, t_seq, t_quant]

    def _plan(*a):
        yield from _train(*a, True)

    def _run(*a):
        yield from _train(*a, False)

    plan_btn.click(_plan, t_inputs, [t_status, t_plot])
    train_btn.click(_run, t_inputs, [t_status, t_plot]).then(_refresh, None,
                                                               [library, resident, bindings, hint_md, selected])
    stop_btn.click(lambda: engine().stop_training(), None, None)
