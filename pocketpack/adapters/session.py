"""One process's adapter state, for the extension: the manager of whichever model is loaded
now, the user's own selection, and the character bindings applied before each turn.

The extension passes the model in (TGWUI's ``shared.model`` or the host's backend model);
nothing here reads TGWUI's globals. When the model object changes (another model loaded),
the old manager is dropped — its adapters went with the old model.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from pathlib import Path

from pocketpack.adapters import compat
from pocketpack.adapters.binding import Binding, Bindings
from pocketpack.adapters.library import AdapterError, check_bindable, human_size, prefer, scan
from pocketpack.adapters.manager import AdapterManager

log = logging.getLogger("pocketpack.adapters")

LIBRARY_HEADERS = ["name", "format", "rank", "alpha", "targets", "size", "base model", "loss", "status"]
RESIDENT_HEADERS = ["name", "active", "weight", "memory", "last used"]
BINDING_HEADERS = ["character / chat", "adapters", "combination"]


def parse_weights(text: str) -> dict[str, float]:
    """'a=1, b=0.5' or 'a b' -> {a: 1.0, b: 0.5}; empty -> {} (the base model)."""
    out: dict[str, float] = {}
    for item in (text or "").replace(";", ",").replace("\n", ",").split(","):
        for part in item.split() if "=" not in item else [item]:
            part = part.strip()
            if not part or part == "none":
                continue
            name, _, w = part.partition("=")
            try:
                out[name.strip()] = float(w) if w.strip() else 1.0
                if not math.isfinite(out[name.strip()]):
                    raise ValueError(w)
            except ValueError:
                raise AdapterError(f"{part}: weight must be a number") from None
    return out


def trained_on(info) -> tuple[str, str]:
    """``(base model, final loss)`` for a library row: the GGUF a voice was trained on (or the
    base folder's name) and the loss its training reached; '-' when unknown."""
    t = info.training if isinstance(info.training, dict) else {}
    made_for = t.get("gguf_base") or t.get("base_gguf")
    base = (made_for.get("file") if isinstance(made_for, dict) else None) or Path(info.base_model or "-").name
    loss = t.get("final_loss")
    return base or "-", f"{loss:.3f}" if isinstance(loss, (int, float)) and not isinstance(loss, bool) else "-"


def format_weights(weights: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in weights.items())


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def lora_menu(names, lora_dir: str | Path) -> tuple[list[str], list[str]]:
    """``(choices, value)`` for TGWUI's LoRA menu showing ``names`` as applied.

    The menu lists the entries of the loras folder the way TGWUI's ``get_available_loras``
    does ('None' first, then every entry but ``*.txt``, ``*-np``, ``*.pt``, ``*.json``, in
    natural order); a GGUF adapter appears there as ``NAME.gguf``. Adapters from other
    folders, and merged blends, have no entry and are left out of the value.
    """
    d = Path(lora_dir)
    entries = [p.name for p in d.iterdir() if not p.name.endswith((".txt", "-np", ".pt", ".json"))] \
        if d.is_dir() else []
    choices = ["None"] + sorted(entries, key=_natural)
    value = []
    for name in names:
        for entry in (name, f"{name}.gguf"):
            if entry in entries and entry not in value:
                value.append(entry)
                break
    return choices, value


def _is_server(model) -> bool:
    from pocketpack.adapters.llamaserver_driver import LlamaServerModel

    return isinstance(model, LlamaServerModel)


class AdapterSession:
    def __init__(self, dirs, bindings_path: str | Path, *, budget_bytes: int | None = None,
                 allow_pickle: bool = False, convert_dir: str | Path | None = None):
        self.dirs = [Path(d) for d in dirs]
        self.bindings_path = Path(bindings_path)
        self.budget_bytes = budget_bytes
        self.allow_pickle = allow_pickle
        self.convert_dir = convert_dir
        self.manual: Binding = Binding({})
        self._manager: AdapterManager | None = None
        self._bindings: Bindings | None = None
        self._bindings_mtime: float | None = None
        self._applied: tuple | None = None   # (adapters, combination) last asked of the manager
        self._unusable = None                 # a llama-server that cannot switch adapters, and why
        self._unusable_reason = ""
        self.lock = threading.RLock()

    # -- the manager of the current model ----------------------------------------------------
    def manager(self, model, create: bool = True) -> AdapterManager | None:
        with self.lock:
            m = self._manager
            if m is not None and compat.base_model_of(model) is not compat.base_model_of(m.model):
                self._manager, self._applied = None, None  # another model: its adapters are gone
            if self._manager is None and create and model is not None:
                if model is self._unusable:
                    raise AdapterError(self._unusable_reason)
                try:
                    self._manager = AdapterManager(model, self.dirs, budget_bytes=self.budget_bytes,
                                                   allow_pickle=self.allow_pickle, convert_dir=self.convert_dir)
                except AdapterError as exc:
                    if _is_server(model):  # ask a server that cannot switch only once
                        self._unusable, self._unusable_reason = model, str(exc)
                    raise
                if _is_server(model):
                    self._take_over(self._manager)
            return self._manager

    def _take_over(self, mgr: AdapterManager) -> None:
        """A llama-server applies the adapters it was started with at scale 1 (recent builds do
        so for requests even with --lora-init-without-apply): from the moment the switcher sees
        it, the user's selection (the base model until one is chosen) is what it applies."""
        try:
            mgr.switch(dict(self.manual.adapters), self.manual.combination)
        except AdapterError as exc:
            log.warning("adapter-switcher: %s; using the base model", exc)
            mgr.switch({})
        self._applied = None  # the next turn publishes lora_names

    def switch(self, model, adapters: dict, combination: str = "live", *, manual: bool = True) -> list[str]:
        """Activate ``adapters`` on ``model``; a manual switch becomes the fallback for unbound characters."""
        with self.lock:
            mgr = self.manager(model, create=bool(adapters) or self._manager is not None)
            if mgr is None:
                if adapters:
                    raise AdapterError("no model is loaded")
                names: list[str] = []
            else:
                names = mgr.switch(adapters, combination=combination)
            if manual:
                self.manual = Binding(dict(adapters), combination)
            self._applied = (tuple(sorted(adapters.items())), combination)
            return names

    # -- bindings ---------------------------------------------------------------------------------
    def check_bindable(self, names) -> None:
        """AdapterError (one line) when one of ``names`` is in the library but cannot be used."""
        check_bindable(self.dirs, names, allow_pickle=self.allow_pickle)

    def bindings(self) -> Bindings:
        with self.lock:
            mtime = self.bindings_path.stat().st_mtime if self.bindings_path.exists() else None
            if self._bindings is None or mtime != self._bindings_mtime:
                self._bindings = Bindings(self.bindings_path)
                self._bindings_mtime = mtime
            return self._bindings

    def apply_state(self, model, state) -> list[str] | None:  # a state dict or its TurnState
        """Before a turn: activate the chat's or character's binding (or the manual choice when
        it has none). Returns the new ``lora_names`` when something changed, else None; cheap
        when nothing changes."""
        with self.lock:
            binding = self.bindings().adapters_for(state) or self.manual
            wanted = (tuple(sorted(binding.adapters.items())), binding.combination)
            mgr = self.manager(model, create=_is_server(model) and model is not self._unusable)
            if mgr is None and not binding.adapters:
                return None
            if wanted == self._applied and mgr is not None:
                return None
            return self.switch(model, dict(binding.adapters), binding.combination, manual=False)

    # -- llama-server (TGWUI's llama.cpp loader) ----------------------------------------------
    def server_flags(self, model, names, *, slot_save_dir=None) -> str:
        """The extra-flags that start llama-server with ``names`` (PEFT ones converted for
        ``model`` when one is loaded); without a model, GGUF adapters only."""
        from pocketpack.adapters.library import find
        from pocketpack.adapters.llamaserver_driver import startup_flags

        if not names:
            raise AdapterError("choose the adapters llama-server should start with")
        mgr = self.manager(model) if model is not None else None
        if mgr is not None:
            return mgr.startup_flags(list(names), slot_save_dir=slot_save_dir)
        infos = [find(self.dirs, n, allow_pickle=self.allow_pickle, kind="llama.cpp") for n in names]
        peft = [i.name for i in infos if i.format != "gguf"]
        if peft:
            raise AdapterError(f"{', '.join(peft)}: PEFT adapters are converted for a model; load the GGUF model first")
        return startup_flags([i.path for i in infos], slot_save_dir=slot_save_dir)

    def cache_note(self, model) -> str | None:
        """llama-server only: why the next reply may reuse the previous adapters' prompt cache."""
        mgr = self.manager(model, create=False)
        return getattr(getattr(mgr, "driver", None), "cache_note", None)

    def server_note(self, model) -> str:
        """What the user should know about a llama-server model's adapters ('' otherwise)."""
        mgr = self.manager(model, create=False)
        driver = getattr(mgr, "driver", None)
        if driver is None or not hasattr(driver, "server_paths"):
            return ""
        paths = [p for p in driver.server_paths() if p]
        if not paths:
            note = ("llama-server (TGWUI's llama.cpp loader) was started without adapters; it takes them only at "
                    "start-up. Choose adapters, press **llama-server flags**, add the flags to TGWUI's extra-flags "
                    "and reload the model.")
        else:
            names = ", ".join(Path(p).name for p in paths)
            note = f"llama-server was started with {names}; only these can be switched."
        if driver.cache_note:
            note += f" Note: {driver.cache_note}."
        return note

    # -- tables for the UI -----------------------------------------------------------------------
    def library_rows(self, model) -> list[list]:
        mgr = self.manager(model, create=False)
        if mgr is None and model is not None:
            try:
                mgr = self.manager(model)
            except AdapterError:
                mgr = None
        infos = mgr.library() if mgr is not None else scan(self.dirs, allow_pickle=self.allow_pickle)
        if mgr is None:
            infos = prefer(infos, "")
        resident = {r.name for r in mgr.resident()} if mgr is not None else set()
        active = mgr.active if mgr is not None else {}
        rows = []
        for i in infos:
            if i.name in active:
                status = f"active ({active[i.name]:g})"
            elif i.name in resident:
                status = "loaded"
            elif i.problem:
                status = f"cannot use: {i.problem}"
            else:
                status = "ready" if mgr is not None else "load a model to use"
            rows.append([i.name, i.format, ",".join(map(str, i.ranks)) or "-",
                         f"{i.alpha:g}" if i.alpha is not None else "-", ",".join(i.target_modules) or "-",
                         human_size(i.size_bytes) if i.size_bytes else "-", *trained_on(i), status])
        return rows

    def resident_rows(self, model) -> list[list]:
        mgr = self.manager(model, create=False)
        if mgr is None:
            return []
        rows = []
        for rank, r in enumerate(mgr.resident(), 1):
            rows.append([r.name, "yes" if r.active else "", "" if r.weight is None else f"{r.weight:g}",
                         human_size(r.nbytes), f"#{rank}"])
        return rows

    def binding_rows(self, who=None) -> list[list]:
        """The bindings ``who`` (a TurnState) may see: under --multi-user, that user's own."""
        b = self.bindings().scoped(who)
        rows = [[name, format_weights(v.adapters) or "(base model)", v.combination] for name, v in b.characters.items()]
        rows += [[f"chat {name}", format_weights(v.adapters) or "(base model)", v.combination]
                 for name, v in b.chats.items()]
        return rows
