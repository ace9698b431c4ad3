"""The standalone web UI (``pocketpack serve``): chat, character, model and extension tabs.

It is deliberately a small cousin of TGWUI's UI: the same state keys, the same component
names in ``shared.gradio`` (``character_menu``, ``interface_state``, ``model_menu``,
``lora_menu``...), extension tabs built by calling each extension's ``ui()`` inside a
``gr.Tab`` exactly as ``create_extensions_tabs`` does. Only gradio APIs that exist in both
TGWUI's gradio 4.37 fork and current gradio are used here and in the extensions.
"""

from __future__ import annotations

import copy
import html
import json
import logging
import uuid
from datetime import datetime
from pathlib import Path

from pocketpack.host import shared
from pocketpack.host.backends.llamacpp import DEFAULT_CTX
from pocketpack.host.characters import list_characters, load_character
from pocketpack.host.chat import default_state, new_history
from pocketpack.host.flags import CACHE_TYPES, COMPUTE_DTYPES, QUANT_TYPES
from pocketpack.host.runtime import Runtime

log = logging.getLogger("pocketpack.host")

def _messages(history: dict) -> list[dict]:
    """gradio Chatbot messages from TGWUI's visible history (rows may be longer than pairs)."""
    messages = []
    for row in history.get("visible", []):
        if row[0]:
            messages.append({"role": "user", "content": row[0]})
        if len(row) > 1 and row[1]:
            messages.append({"role": "assistant", "content": row[1]})
    return messages


def list_models(models_dir: Path) -> list[str]:
    """Model names in the models folder, as TGWUI lists them: .gguf files and model folders."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    names = [p.name for p in models_dir.glob("*.gguf")]
    names += [p.name for p in models_dir.iterdir() if p.is_dir() and (
        (p / "config.json").exists() or any(p.glob("*.gguf")))]
    return sorted(names, key=str.lower)


def _resolve_model(models_dir: Path, name: str) -> Path:
    """The path of a listed model; a name that is not listed is refused, never joined blindly."""
    listed = list_models(models_dir)
    if name not in listed:
        raise ValueError(f"no model named {name!r} in {models_dir} (put the .gguf file or model folder "
                         f"there first; listed: {', '.join(listed) or 'none'})")
    return Path(models_dir) / name


def build_ui(runtime: Runtime, models_dir: Path, characters_dir: Path, model_name: str | None = None):
    """The gradio Blocks of the whole UI (not launched)."""
    import gradio as gr

    host = runtime.host
    css = host.apply("css")
    js = host.apply("js")
    blocks_kwargs = {"title": "Pocket Pack", "analytics_enabled": False}  # gradio's telemetry: off, whatever the env says
    with gr.Blocks(**blocks_kwargs) as demo:
        initial = default_state()
        state = gr.State(initial)
        shared.gradio["interface_state"] = state
        notices = gr.Markdown("", elem_id="pp-notices")
        with gr.Tab("Chat", elem_id="chat-tab"):
            model_banner = gr.Markdown(_model_banner(), elem_id="model-banner")
            chatbot = gr.Chatbot(label=initial["name2"], elem_id="chat", height=480)
            with gr.Row():
                textbox = gr.Textbox(placeholder="Send a message", show_label=False, elem_id="chat-input", scale=8)
                send = gr.Button("Send", variant="primary", elem_id="Generate", scale=1)
            with gr.Row():
                regenerate = gr.Button("Regenerate", elem_id="Regenerate")
                cont = gr.Button("Continue", elem_id="Continue")
                remove_last = gr.Button("Remove last reply", elem_id="Remove-last")
                new_chat = gr.Button("New chat", elem_id="new-chat-btn")
            mode = gr.Radio(["chat", "chat-instruct", "instruct"], value=initial["mode"], label="Mode", elem_id="mode")
            with gr.Accordion("Parameters", open=False):
                with gr.Row():
                    max_new_tokens = gr.Slider(16, 2048, value=initial["max_new_tokens"], step=1,
                                               label="max_new_tokens", elem_id="max-new-tokens")
                    temperature = gr.Slider(0.0, 2.0, value=initial["temperature"], step=0.05,
                                            label="temperature", elem_id="temperature")
                    seed = gr.Number(value=initial["seed"], precision=0, label="seed (-1 = random)", elem_id="seed")
            shared.gradio.update({"textbox": textbox, "Generate": send, "mode": mode, "display": chatbot})
            block = host.block_extensions()
            if block:
                with gr.Column(elem_id="extensions"):
                    for name, module in block:
                        host.build_ui(name, module)
        with gr.Tab("Character", elem_id="character-tab"):
            character_menu = gr.Dropdown(list_characters(characters_dir), value=initial["character_menu"],
                                         label="Character", elem_id="character-menu")
            name1 = gr.Textbox(value=initial["name1"], label="Your name")
            name2 = gr.Textbox(value=initial["name2"], label="Character's name")
            context = gr.Textbox(value=initial["context"], label="Context", lines=4)
            greeting = gr.Textbox(value=initial["greeting"], label="Greeting", lines=2)
            custom_system_message = gr.Textbox(value="", label="System message (instruct mode)", lines=2)
            shared.gradio.update({"character_menu": character_menu, "name1": name1, "name2": name2,
                                  "context": context, "greeting": greeting,
                                  "custom_system_message": custom_system_message})
        with gr.Tab("Model", elem_id="model-tab"):
            with gr.Row():
                # a typed name reaches do_load, which names what is wrong instead of reverting silently
                model_menu = gr.Dropdown(list_models(models_dir), value=model_name, label="Model", elem_id="model-menu",
                                         allow_custom_value=True)
                load_button = gr.Button("Load", elem_id="load-model")
                unload_button = gr.Button("Unload")
            with gr.Row():
                gpu_layers = gr.Number(value=-1, precision=0, label="gpu-layers (-1 = all)")
                # 0 asks for nothing, like an unset --ctx-size: the model's context, at most DEFAULT_CTX
                ctx_size = gr.Number(value=0, precision=0, label=f"ctx-size (0 = the model's, at most {DEFAULT_CTX})")
                cache_type = gr.Dropdown(list(CACHE_TYPES), value="fp16", label="cache-type")
                threads = gr.Number(value=0, precision=0, label="threads (0 = auto)")
            with gr.Row():
                load_in_8bit = gr.Checkbox(label="load-in-8bit")
                load_in_4bit = gr.Checkbox(label="load-in-4bit")
                quant_type = gr.Dropdown(list(QUANT_TYPES), value=FORM_QUANT_TYPE, label="quant_type")
                use_double_quant = gr.Checkbox(label="use_double_quant")
                compute_dtype = gr.Dropdown(list(COMPUTE_DTYPES), value=FORM_COMPUTE_DTYPE, label="compute_dtype")
                cpu = gr.Checkbox(label="cpu", value=False)
            lora_menu = gr.Dropdown([], value=[], multiselect=True, label="LoRA(s)", elem_id="lora-menu")
            model_status = gr.Markdown(_model_status(), elem_id="model-status")
            shared.gradio.update({"model_menu": model_menu, "lora_menu": lora_menu, "model_status": model_status})
        for display_name, module in host.tab_extensions():
            name = next(n for m, n in host.iterator() if m is module)
            with gr.Tab(display_name, elem_classes="extension-tab", elem_id=f"{name}-tab"):
                host.build_ui(name, module)

        # -- events --------------------------------------------------------------------------

        state_inputs = [state, name1, name2, context, greeting, custom_system_message, mode, character_menu,
                        max_new_tokens, temperature, seed]

        def gather(current, n1, n2, ctx, greet, system, chosen_mode, character, tokens, temp, chosen_seed):
            """The turn's state: the session's history plus the visible fields (gather_interface_values)."""
            current = dict(current)
            current.update(name1=n1, name2=n2, context=ctx, greeting=greet, custom_system_message=system,
                           mode=chosen_mode, character_menu=character, max_new_tokens=int(tokens),
                           temperature=float(temp), seed=int(chosen_seed if chosen_seed is not None else -1))
            return current

        def run_turn(text, *values, regenerate=False, _continue=False):
            current = gather(*values)
            if not (regenerate or _continue) and not text.strip():
                yield current, _messages(current["history"]), text, gr.update()
                return
            if runtime.backend is None and runtime.host.apply("custom_generate_reply") is None:
                yield current, _messages(current["history"]), text, "⚠️ No model is loaded: load one in the Model tab."
                return
            if (regenerate or _continue) and not current["history"]["internal"]:
                yield current, _messages(current["history"]), text, gr.update()
                return
            history = current["history"]
            try:
                for history in runtime.chat(text, current, regenerate=regenerate, _continue=_continue):
                    yield current, _messages(history), "", gr.update()
            except Exception as exc:  # the model failed mid-reply: keep what streamed so far
                log.exception("generation failed")
                current["history"] = history
                yield current, _messages(history), "", f"⚠️ Generation failed: {type(exc).__name__}: {exc}"
                return
            current["history"] = history
            failures = runtime.host.take_failures()
            message = "\n".join(f"⚠️ {f.notice()}" for f in failures)
            yield current, _messages(history), "", message

        outputs = [state, chatbot, textbox, notices]
        # every event that writes the chat's history waits for the one before it: a New chat
        # clicked while a reply's last step (output hooks, memory storing) still runs would
        # otherwise be overwritten by that reply's final update, bringing the old chat back
        in_turn = {"concurrency_id": "chat-history", "concurrency_limit": 1}
        textbox.submit(run_turn, [textbox] + state_inputs, outputs, **in_turn)
        send.click(run_turn, [textbox] + state_inputs, outputs, **in_turn)
        regenerate.click(lambda *v: (yield from run_turn("", *v, regenerate=True)), [textbox] + state_inputs, outputs,
                         **in_turn)
        cont.click(lambda *v: (yield from run_turn("", *v, _continue=True)), [textbox] + state_inputs, outputs,
                   **in_turn)

        def drop_last(current):
            current = copy.deepcopy(current)
            for key in ("internal", "visible"):
                if current["history"][key]:
                    current["history"][key].pop()
            return current, _messages(current["history"])

        remove_last.click(drop_last, [state], [state, chatbot], **in_turn)

        def start_new_chat(current):
            current = dict(current)
            current["history"] = new_history()
            current["unique_id"] = datetime.now().strftime("%Y%m%d-%H-%M-%S-") + uuid.uuid4().hex[:6]
            if current.get("greeting"):
                current["history"]["internal"].append(["<|BEGIN-VISIBLE-CHAT|>", current["greeting"]])
                current["history"]["visible"].append(["", html.escape(current["greeting"])])
            return current, _messages(current["history"])

        new_chat.click(start_new_chat, [state], [state, chatbot], **in_turn)

        def pick_character(current, character):
            try:
                values = load_character(characters_dir, character)
            except ValueError as exc:
                return (current, gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), f"⚠️ {exc}")
            current = dict(current, **values)
            current, messages = start_new_chat(current)
            return (current, values["name2"], values["context"], values["greeting"], messages,
                    gr.update(label=values["name2"]), "")

        character_menu.change(pick_character, [state, character_menu],
                              [state, name2, context, greeting, chatbot, chatbot, notices], **in_turn)

        def do_load(name, layers, ctx, cache, nthreads, in8, in4, qtype, dq, dtype, on_cpu):
            from pocketpack.host.backends.base import ModelLoadError
            from pocketpack.host.flags import FlagConflict

            if not name:
                return "⚠️ Choose a model first.", gr.update()
            from pocketpack.host.flags import _given
            from pocketpack.host.model_settings import with_saved_settings

            try:
                path = _resolve_model(models_dir, name)
                settings = load_settings_from_form(path, layers, ctx, cache, nthreads, in8, in4, qtype, dq,
                                                   dtype, on_cpu)
                # what "Apply preset" saved for this model fills every field the form leaves untouched
                settings, used = with_saved_settings(settings, runtime.host.user_data_dir, path,
                                                     given=lambda dest: _given(settings, dest))
                runtime.load_model(path, settings)
            except (ModelLoadError, FlagConflict, ValueError) as exc:
                return f"⚠️ {exc}", _model_banner()
            saved = ("\n\nWith its saved settings (Apply preset): "
                     + ", ".join(f"`{k}={v}`" for k, v in used.items())) if used else ""
            return _model_status() + saved, _model_banner()

        load_button.click(do_load, [model_menu, gpu_layers, ctx_size, cache_type, threads, load_in_8bit,
                                    load_in_4bit, quant_type, use_double_quant, compute_dtype, cpu],
                          [model_status, model_banner])
        unload_button.click(lambda: (runtime.unload_model(), _model_status(), _model_banner())[1:], [],
                            [model_status, model_banner])
        if css or js:
            # extensions' custom_css/custom_js, added when the page loads (current gradio renders no
            # invisible component, so a hidden <style> block never reached the page)
            add_css = (f"const style = document.createElement('style'); style.textContent = {json.dumps(css)}; "
                       "document.head.appendChild(style);") if css else ""
            demo.load(None, None, None, js=f"() => {{ {add_css} {js or ''} }}")
    return demo


# the form's own starting values for the 4-bit options: unchanged, they ask for nothing
FORM_QUANT_TYPE = "nf4"
FORM_COMPUTE_DTYPE = "float32"


def load_settings_from_form(path: Path, layers, ctx, cache, nthreads, in8, in4, qtype, dq, dtype, on_cpu):
    """LoadSettings holding every field of the form the user set, for ``check_flags`` to judge.

    Why not just drop what the model's loader does not use: a ticked load-in-8bit on a GGUF
    would then load "fine" while doing nothing. The form's untouched values (gpu-layers -1,
    cache fp16, the 4-bit dropdowns' starting values) ask for nothing, as TGWUI's own
    defaults do on the command line, so they never raise a false conflict.
    """
    from pocketpack.host.flags import LoadSettings, infer_loader

    loader = infer_loader(path)
    layers = int(layers) if layers is not None else None
    settings = LoadSettings(
        ctx_size=int(ctx) if ctx else None,
        threads=int(nthreads) if nthreads else None,
        cache_type=cache or None,
        gpu_layers=layers,
        cpu=bool(on_cpu),
        load_in_8bit=bool(in8),
        load_in_4bit=bool(in4),
        use_double_quant=bool(dq),
        quant_type=qtype if (in4 or qtype != FORM_QUANT_TYPE) else None,
        compute_dtype=dtype if (in4 or dtype != FORM_COMPUTE_DTYPE) else None,
    )
    if loader == "llama.cpp" and on_cpu and layers in (None, -1, 0):
        settings.cpu, settings.gpu_layers = False, 0  # the cpu box means no GPU layers
    if loader != "llama.cpp":
        settings.cache_type = None if cache == "fp16" else cache  # fp16 is the form's untouched value
    return settings


EMBEDDED_MODEL_NOTE = (
    "This is the embedded default: **Gemma 3 270M, a small *base* model** (not instruction-tuned). "
    "It is here so that every feature can be tried offline; it continues text rather than follows "
    "requests, so poems or answers will be weak. For real use put an instruction-tuned GGUF in "
    "`models/` (e.g. Qwen2.5 3B/7B Instruct or Llama 3.2 3B Instruct at Q4_K_M; the VRAM advisor "
    "tab tells what fits this machine) and load it here."
)


def _model_banner() -> str:
    """One line above the chat: which model answers, and what the embedded one is."""
    from pocketpack.host.default_model import DEFAULT_MODEL_FILENAME

    if shared.backend is None:
        return "No model is loaded: load one in the Model tab."
    if shared.model_name == DEFAULT_MODEL_FILENAME:
        return (f"Model: **{shared.model_name}**, the embedded Gemma 3 270M *base* model: enough to try "
                "memory, documents and adapters, weak at following requests (see the Model tab).")
    return f"Model: **{shared.model_name}** ({shared.backend.loader})"


def _model_status() -> str:
    from pocketpack.host.default_model import DEFAULT_MODEL_FILENAME

    if shared.backend is None:
        return "No model loaded."
    status = f"Loaded **{shared.model_name}** with the {shared.backend.loader} loader."
    if shared.model_name == DEFAULT_MODEL_FILENAME:
        status += "\n\n" + EMBEDDED_MODEL_NOTE
    return status
