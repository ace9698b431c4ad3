"""adapter-switcher: LoRA adapters switched per character without reloading the model.

Thin TGWUI adapter over ``pocketpack.adapters``: the model comes from TGWUI's
``shared.model`` (Transformers / PeftModel, or ``LlamaServer`` — TGWUI's llama.cpp loader, a
llama-server process reached over HTTP at its port) or, in ``pocketpack serve``, from the
host's backend (a ``llama_cpp.Llama`` or a transformers model). ``shared.lora_names`` is kept
equal to the adapters really applied, and TGWUI's LoRA menu shows them after a change made
from this tab. ``state_modifier`` activates the character's (or chat's) binding before each
turn. A failure is logged and the turn goes on with the adapters the model had.
"""

import logging
import threading
import weakref
from pathlib import Path

params = {
    "display_name": "Adapters",
    "is_tab": True,
    "folders": "",                 # extra adapter folders, comma-separated (user_data/loras is always scanned)
    "budget_mb": 1024,             # memory for resident adapters; least recently used are evicted
    "allow_pickle": False,         # .bin/.pt adapters run code when loaded: off unless you trust them
    "auto_bind": True,             # switch to the character's adapters before each turn
    "combination": "live",         # live | cat | svd | linear
}

log = logging.getLogger("pocketpack.adapters")
_lock = threading.Lock()
_session = None
_server = (None, None)  # (weakref to TGWUI's LlamaServer, its LlamaServerModel)
_train_stop = threading.Event()


def setup():
    import pocketpack.adapters  # noqa: F401  (fails early with a clear ModuleNotFoundError if not installed)


# -- the edge: TGWUI's (or the host's) globals ---------------------------------------------------

def _shared():
    from pocketpack.tgwui import shared

    return shared()


def _user_data() -> Path:
    return Path(getattr(_shared(), "user_data_dir", "user_data"))


def _lora_dir() -> Path:
    args = getattr(_shared(), "args", None)
    return Path(getattr(args, "lora_dir", None) or _user_data() / "loras")


def _model():
    """The model adapters apply to: the host backend's model, else TGWUI's shared.model."""
    s = _shared()
    backend = getattr(s, "backend", None)
    model = getattr(backend, "model", None) if backend is not None else None
    if model is None:
        model = getattr(s, "model", None)
    if model is not None and type(model).__name__ == "LlamaServer":
        return _server_model(model)  # TGWUI's llama.cpp loader runs llama-server in another process
    return model


def _server_model(server):
    """The pocketpack handle of TGWUI's llama-server, one per server. Only a weak reference to
    TGWUI's object is kept: its __del__ stops the process when TGWUI unloads the model."""
    global _server
    ref, handle = _server
    if ref is None or ref() is not server:
        from pocketpack.adapters.llamaserver_driver import LlamaServerModel

        handle = LlamaServerModel.at_port(server.port, model_path=getattr(server, "model_path", None) or None)
        _server = (weakref.ref(server), handle)
    return handle


def _publish(names) -> None:
    """Keep TGWUI's view truthful: shared.lora_names, and shared.model once PEFT wrapped it."""
    s = _shared()
    s.lora_names = list(names)
    mgr = session().manager(_model(), create=False)
    current = getattr(s, "model", None)
    if mgr is not None and current is not None and current is not mgr.model:
        from pocketpack.adapters.compat import base_model_of

        if base_model_of(current) is base_model_of(mgr.model):
            s.model = mgr.model  # a PeftModel while LoRAs are applied (as TGWUI does), the base after


def session():
    global _session
    from pocketpack.adapters.session import AdapterSession

    dirs = [_lora_dir()] + [Path(p.strip()).expanduser() for p in str(params.get("folders") or "").split(",")
                            if p.strip()]
    with _lock:
        if _session is None or _session.dirs != dirs:
            budget = params.get("budget_mb")
            _session = AdapterSession(dirs, _user_data() / "adapter_bindings.yaml",
                                      budget_bytes=int(float(budget) * 1024 * 1024) if budget else None,
                                      allow_pickle=bool(params.get("allow_pickle")),
                                      convert_dir=_user_data() / "pocketpack" / "gguf-loras")
        return _session


# -- hooks -----------------------------------------------------------------------------------------

def state_modifier(state):
    if not params.get("auto_bind", True):
        return state
    try:
        names = session().apply_state(_model(), state)
        if names is not None:
            _publish(names)
    except Exception as exc:  # noqa: BLE001 - never break a chat: keep the adapters the model had
        log.warning("adapter-switcher: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return state


# -- UI -------------------------------------------------------------------------------------------

def _tables():
    from pocketpack.adapters import AdapterError

    s = session()
    model = _model()
    lib = s.library_rows(model)
    from pocketpack.adapters.trainui import EMPTY_HINT

    hint = "" if lib else EMPTY_HINT.format(lora_dir=_lora_dir())
    if model is None:
        hint += " No model is loaded: load one to apply adapters."
    elif s.manager(model, create=False) is None:
        try:
            s.manager(model)
        except AdapterError as exc:
            hint += f" Adapters cannot be applied to this model: {exc}"
    hint += " " + s.server_note(model)
    return lib, s.resident_rows(model), s.binding_rows(), hint.strip()


def _menu_update():
    """TGWUI's LoRA menu, showing the adapters applied now (see session.lora_menu)."""
    import gradio as gr

    from pocketpack.adapters.session import lora_menu

    choices, value = lora_menu(getattr(_shared(), "lora_names", []) or [], _lora_dir())
    return gr.Dropdown(choices=choices, value=value, multiselect=True)


def _lora_menu_component():
    """TGWUI's own LoRA menu (Model tab), when this UI is built inside a page that has one."""
    components = getattr(_shared(), "gradio", None)
    return components.get("lora_menu") if isinstance(components, dict) else None


def _refresh():
    import gradio as gr

    lib, res, binds, hint = _tables()
    names = [r[0] for r in lib]
    return lib, res, binds, hint, gr.Dropdown(choices=names)


def _do(action, selected, weights_text, combination):
    from pocketpack.adapters import AdapterError
    from pocketpack.adapters.session import format_weights, parse_weights

    s = session()
    model = _model()
    try:
        weights = parse_weights(weights_text) or {n: 1.0 for n in (selected or [])}
        if action == "switch":
            names = s.switch(model, weights, combination or "live")
            _publish(names)
            msg = f"Active: {format_weights(s.manager(model).active) or 'base model'}"
        elif action == "base":
            _publish(s.switch(model, {}, "live"))
            msg = "Active: base model (adapters stay loaded)"
        elif action == "load":
            mgr = s.manager(model)
            if mgr is None:
                raise AdapterError("no model is loaded")
            for name in weights:
                mgr.load(name)
            msg = f"Loaded {', '.join(weights)}" if weights else "Choose adapters to load."
        else:  # unload
            mgr = s.manager(model, create=False)
            for name in weights:
                if mgr is not None:
                    mgr.unload(name)
            if mgr is not None:
                _publish(mgr.lora_names)
            msg = f"Unloaded {', '.join(weights)}" if weights else "Choose adapters to unload."
    except AdapterError as exc:
        msg = f"**Not done:** {exc}"
    lib, res, binds, hint = _tables()
    if s.cache_note(model):
        msg += f" — note: {s.cache_note(model)}."
    return lib, res, msg


def _server_flags(selected, weights_text):
    """The extra-flags that start TGWUI's llama-server with the chosen adapters."""
    from pocketpack.adapters import AdapterError
    from pocketpack.adapters.session import parse_weights

    try:
        names = list(parse_weights(weights_text)) or list(selected or [])
        slots = _user_data() / "pocketpack" / "llama-slots"
        slots.mkdir(parents=True, exist_ok=True)
        flags = session().server_flags(_model(), names, slot_save_dir=slots)
    except AdapterError as exc:
        return "", f"**Not done:** {exc}"
    return flags, ("Add these to TGWUI's extra-flags (Model tab, or `--extra-flags '...'` on the command line; "
                   "they replace the adapters llama-server has now) and reload the model. Only what you choose here "
                   "(or a character's binding) is applied; until then, the base model.")


def _bind(character, weights_text, combination, remove):
    from pocketpack.adapters import AdapterError
    from pocketpack.adapters.session import parse_weights

    s = session()
    try:
        if not (character or "").strip():
            raise AdapterError("type a character name (or chat:<id>)")
        name = character.strip()
        chat = name[5:] if name.startswith("chat:") else None
        b = s.bindings()
        if remove:
            b.unbind(None if chat else name, chat=chat)
            msg = f"Removed the binding of {name}."
        else:
            weights = parse_weights(weights_text)
            s.check_bindable(weights)
            b.bind(None if chat else name, weights, chat=chat, combination=combination or "live")
            msg = f"{name} now uses {weights_text.strip() or 'the base model'}; applied at its next turn."
    except AdapterError as exc:
        msg = f"**Not done:** {exc}"
    return s.binding_rows(), msg


def _train(base, data, output, rank, alpha, targets, steps, seq_len, quant, plan_only):
    from pocketpack.adapters import AdapterError

    _train_stop.clear()
    try:
        from pocketpack.adapters.train import base_tokenizer, load_examples, plan
        from pocketpack.adapters.trainui import TrainingRun, tab_config

        cfg = tab_config(base, data, output, _lora_dir(), rank=rank, alpha=alpha, targets=targets, steps=steps,
                         seq_len=seq_len, quant=quant,
                         memory_dir=_user_data() / "pocketpack" / "memory")  # the memory extension's store
        if plan_only:
            p = plan(cfg, len(load_examples(cfg.data, base_tokenizer(cfg.base), cfg.seq_len,
                                            memory_dir=cfg.memory_dir)))
            yield ("Fits: " if p.fits else "**Will not fit:** ") + p.describe(), None
            return
        run = TrainingRun(cfg).start()
        shown = -1
        while not run.done.wait(1.0):  # steps/s, eta and the loss curve while it trains
            if _train_stop.is_set():
                run.stop()
            image = run.image() if len(run.losses) != shown else gr_skip()
            shown = len(run.losses)
            yield run.status(), image
        yield run.status(), run.image()
    except AdapterError as exc:
        yield f"**Not started:** {exc}", None
    except Exception as exc:  # noqa: BLE001 - a UI action never breaks the tab: the failure is shown
        yield f"**Training failed:** {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", None


def gr_skip():
    """Leave an output as it is (gr.skip() where gradio has it, else an empty update)."""
    import gradio as gr

    return gr.skip() if hasattr(gr, "skip") else gr.update()


def ui():
    import gradio as gr

    lib, res, binds, hint = _tables()
    names = [r[0] for r in lib]
    from pocketpack.adapters.session import BINDING_HEADERS, LIBRARY_HEADERS, RESIDENT_HEADERS

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

    from pocketpack.adapters.trainui import default_base, shipped_corpora

    with gr.Accordion("Train a voice from a text file or a character's chats (QLoRA, 4-bit base)", open=not lib):
        gr.Markdown("A `.txt` with one line per utterance, a `.jsonl` of chats, or `memory:CHARACTER` (that "
                    "character's chats as the memory extension stored them). Shipped voices to try: "
                    + ", ".join(f"`{c}`" for c in shipped_corpora()) + ". About 5 minutes on 2 CPU cores "
                    "for 60 steps on the embedded model.")
        with gr.Row():
            t_base = gr.Textbox(label="Base model", value=default_base(_model()),
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
            return lambda *a: (*_do(action, *a), _menu_update())
    else:
        def act(action):
            return lambda *a: _do(action, *a)

    switch_btn.click(act("switch"), acts, outs)
    base_btn.click(act("base"), acts, outs)
    load_btn.click(act("load"), acts, outs)
    unload_btn.click(act("unload"), acts, outs)
    flags_btn.click(_server_flags, [selected, weights], [flags_out, flags_status])
    refresh_btn.click(_refresh, None, [library, resident, bindings, hint_md, selected])
    bind_btn.click(lambda c, w, m: _bind(c, w, m, False), [character, bind_weights, bind_comb], [bindings, bind_status])
    unbind_btn.click(lambda c, w, m: _bind(c, w, m, True), [character, bind_weights, bind_comb],
                     [bindings, bind_status])
    t_inputs = [t_base, t_data, t_out, t_rank, t_alpha, t_targets, t_steps, t_seq, t_quant]

    def _plan(*a):
        yield from _train(*a, True)

    def _run(*a):
        yield from _train(*a, False)

    plan_btn.click(_plan, t_inputs, [t_status, t_plot])
    train_btn.click(_run, t_inputs, [t_status, t_plot]).then(_refresh, None,
                                                               [library, resident, bindings, hint_md, selected])
    stop_btn.click(lambda: _train_stop.set(), None, None)
