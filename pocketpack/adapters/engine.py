"""What adapter-switcher does at its hook and its tab's buttons, without TGWUI: the adapter engine.

``extensions/adapter-switcher/script.py`` builds one :class:`AdapterEngine` and hands it what it
needs from the host as small callables (:class:`AdapterHost`): the loaded model, the user data
and LoRA folders, and ``publish``, which keeps the host's own view truthful (TGWUI's
``shared.lora_names``, and ``shared.model`` once PEFT wrapped it). The engine never reads or
writes a host's globals itself. Its actions take and return plain data (names, weights text,
table rows, Markdown lines); the script turns them into gradio components.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from pocketpack.adapters.library import AdapterError
from pocketpack.turnstate import TurnState

UNCHANGED = object()  # train(): leave the loss image as it is (the script says so to gradio)


@dataclass
class AdapterHost:
    """What the engine asks of its host; each callable is asked at the time of use, as a model
    may be loaded or unloaded, and a test may point the host at another folder, at any time."""

    loaded_model: Callable[[], Any]          # the host's loaded model object, or None
    shared_model: Callable[[], Any]          # what the host's loader holds (TGWUI's shared.model)
    user_data_dir: Callable[[], Path]
    lora_dir: Callable[[], Path]
    publish: Callable[[list, Any], None]     # (applied adapter names, model to put in shared.model or None)


class AdapterEngine:
    """One adapter session per set of folders, the binding hook, and the Adapters tab's actions."""

    def __init__(self, params: dict, host: AdapterHost):
        self.params = params
        self.host = host
        self._lock = threading.Lock()
        self._session = None
        self._server = (None, None)  # (weakref to TGWUI's LlamaServer, its LlamaServerModel)
        self._train_stop = threading.Event()

    # -- the model and the session ------------------------------------------------------------
    def model(self):
        """The model adapters apply to: the host's loaded model, as a llama-server handle when it
        is TGWUI's ``LlamaServer`` (its llama.cpp loader runs llama-server in another process)."""
        model = self.host.loaded_model()
        if model is not None and type(model).__name__ == "LlamaServer":
            return self._server_model(model)
        return model

    def _server_model(self, server):
        """The pocketpack handle of TGWUI's llama-server, one per server. Only a weak reference to
        TGWUI's object is kept: its __del__ stops the process when TGWUI unloads the model."""
        ref, handle = self._server
        if ref is None or ref() is not server:
            from pocketpack.adapters.llamaserver_driver import LlamaServerModel

            handle = LlamaServerModel.at_port(server.port, model_path=getattr(server, "model_path", None) or None)
            self._server = (weakref.ref(server), handle)
        return handle

    def session(self):
        from pocketpack.adapters.session import AdapterSession
        from pocketpack.adapters.settings import AdapterParams

        user_data = Path(self.host.user_data_dir())
        settings = AdapterParams.from_params(self.params)
        dirs = [Path(self.host.lora_dir())] + settings.folder_paths()
        with self._lock:
            if self._session is None or self._session.dirs != dirs:
                self._session = AdapterSession(dirs, user_data / "adapter_bindings.yaml",
                                               budget_bytes=settings.budget_bytes,
                                               allow_pickle=settings.allow_pickle,
                                               convert_dir=user_data / "pocketpack" / "gguf-loras")
            return self._session

    def _publish(self, names) -> None:
        """Hand the host the adapters really applied, and the model its loader should now hold
        (a PeftModel while LoRAs are applied, as TGWUI does, the base after) when that changed."""
        mgr = self.session().manager(self.model(), create=False)
        current = self.host.shared_model()
        replacement = None
        if mgr is not None and current is not None and current is not mgr.model:
            from pocketpack.adapters.compat import base_model_of

            if base_model_of(current) is base_model_of(mgr.model):
                replacement = mgr.model
        self.host.publish(list(names), replacement)

    # -- the hook -------------------------------------------------------------------------------
    def on_state(self, state: dict, turn: TurnState | None = None) -> dict:
        """Before a turn: the chat's or character's binding becomes active. A failure is logged
        and the turn goes on with the adapters the model had."""
        import logging

        from pocketpack.adapters.settings import AdapterParams

        if not AdapterParams.from_params(self.params).auto_bind:
            return state
        try:
            names = self.session().apply_state(self.model(), turn or TurnState.of(state))
            if names is not None:
                self._publish(names)
        except Exception as exc:  # noqa: BLE001 - never break a chat: keep the adapters the model had
            logging.getLogger("pocketpack.adapters").warning(
                "adapter-switcher: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return state

    # -- the tab's actions ----------------------------------------------------------------------
    def tables(self, who: TurnState | None = None) -> tuple[list, list, list, str]:
        """The library, resident and binding rows (``who``'s own under --multi-user), and the hint line above them."""
        from pocketpack.adapters.trainui import EMPTY_HINT

        s = self.session()
        model = self.model()
        lib = s.library_rows(model)
        hint = "" if lib else EMPTY_HINT.format(lora_dir=self.host.lora_dir())
        if model is None:
            hint += " No model is loaded: load one to apply adapters."
        elif s.manager(model, create=False) is None:
            try:
                s.manager(model)
            except AdapterError as exc:
                hint += f" Adapters cannot be applied to this model: {exc}"
        hint += " " + s.server_note(model)
        return lib, s.resident_rows(model), s.binding_rows(who), hint.strip()

    def act(self, action: str, selected, weights_text, combination) -> tuple[list, list, str]:
        """Switch / Base model / Load / Unload: the library and resident rows, and what was done."""
        from pocketpack.adapters.session import format_weights, parse_weights

        s = self.session()
        model = self.model()
        try:
            weights = parse_weights(weights_text) or {n: 1.0 for n in (selected or [])}
            if action == "switch":
                names = s.switch(model, weights, combination or "live")
                self._publish(names)
                msg = f"Active: {format_weights(s.manager(model).active) or 'base model'}"
            elif action == "base":
                self._publish(s.switch(model, {}, "live"))
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
                    self._publish(mgr.lora_names)
                msg = f"Unloaded {', '.join(weights)}" if weights else "Choose adapters to unload."
        except AdapterError as exc:
            msg = f"**Not done:** {exc}"
        lib, res, _, _ = self.tables()
        if s.cache_note(model):
            msg += f" — note: {s.cache_note(model)}."
        return lib, res, msg

    def server_flags(self, selected, weights_text) -> tuple[str, str]:
        """The extra-flags that start TGWUI's llama-server with the chosen adapters, and a note."""
        from pocketpack.adapters.session import parse_weights

        try:
            names = list(parse_weights(weights_text)) or list(selected or [])
            slots = Path(self.host.user_data_dir()) / "pocketpack" / "llama-slots"
            slots.mkdir(parents=True, exist_ok=True)
            flags = self.session().server_flags(self.model(), names, slot_save_dir=slots)
        except AdapterError as exc:
            return "", f"**Not done:** {exc}"
        return flags, ("Add these to TGWUI's extra-flags (Model tab, or `--extra-flags '...'` on the command line; "
                       "they replace the adapters llama-server has now) and reload the model. Only what you choose "
                       "here (or a character's binding) is applied; until then, the base model.")

    def bind(self, character, weights_text, combination, remove: bool,
             who: TurnState | None = None) -> tuple[list, str]:
        """Bind (or unbind) a character, or ``chat:<id>``: the binding rows and what was done.
        Under --multi-user ``who`` (the tab's signed-in user) binds for themselves only."""
        from pocketpack.adapters.session import parse_weights

        s = self.session()
        try:
            if not (character or "").strip():
                raise AdapterError("type a character name (or chat:<id>)")
            name = character.strip()
            chat = name[5:] if name.startswith("chat:") else None
            b = s.bindings().scoped(who)
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
        return s.binding_rows(who), msg

    def default_base(self) -> str:
        """The base the tab preselects for a new voice (the loaded model's file or folder)."""
        from pocketpack.adapters.trainui import default_base

        return default_base(self.model())

    def train(self, base, data, output, rank, alpha, targets, steps, seq_len, quant,
              plan_only: bool) -> Iterator[tuple[str, Any]]:
        """Check memory (``plan_only``) or train a voice: yields (Markdown status, loss image),
        the image being ``UNCHANGED`` while the curve has no new point."""
        self._train_stop.clear()
        try:
            from pocketpack.adapters.train import base_tokenizer, load_examples, plan
            from pocketpack.adapters.trainui import TrainingRun, tab_config

            user_data = Path(self.host.user_data_dir())
            cfg = tab_config(base, data, output, self.host.lora_dir(), rank=rank, alpha=alpha, targets=targets,
                             steps=steps, seq_len=seq_len, quant=quant,
                             memory_dir=user_data / "pocketpack" / "memory")  # the memory extension's store
            if plan_only:
                p = plan(cfg, len(load_examples(cfg.data, base_tokenizer(cfg.base), cfg.seq_len,
                                                memory_dir=cfg.memory_dir)))
                yield ("Fits: " if p.fits else "**Will not fit:** ") + p.describe(), None
                return
            run = TrainingRun(cfg).start()
            shown = -1
            while not run.done.wait(1.0):  # steps/s, eta and the loss curve while it trains
                if self._train_stop.is_set():
                    run.stop()
                image = run.image() if len(run.losses) != shown else UNCHANGED
                shown = len(run.losses)
                yield run.status(), image
            yield run.status(), run.image()
        except AdapterError as exc:
            yield f"**Not started:** {exc}", None
        except Exception as exc:  # noqa: BLE001 - a UI action never breaks the tab: the failure is shown
            yield f"**Training failed:** {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", None

    def stop_training(self) -> None:
        """The Stop button: the running training ends after its next checkpoint."""
        self._train_stop.set()
