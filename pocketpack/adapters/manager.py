"""AdapterManager: the adapters resident on one loaded model, and which of them are active.

It is the one public face of switching: ``load(name)`` makes an adapter resident (checked
against the model first), ``switch(...)`` activates one adapter, several with weights, or
none (the base), ``unload(name)`` frees one. Resident adapters stay within a memory budget;
the least recently used inactive ones are evicted first. ``lora_names`` always lists the
adapters really applied, for TGWUI's ``shared.lora_names``. A switch that fails part-way
leaves the model with the adapters it had.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from pocketpack.adapters import compat
from pocketpack.adapters.library import AdapterError, AdapterInfo, find, inspect_adapter, prefer, scan

log = logging.getLogger("pocketpack.adapters")

COMBINATIONS = ("live", "cat", "svd", "linear")


@dataclass
class Resident:
    """One adapter held in memory. ``nbytes`` is what its tensors take."""

    name: str
    key: str
    nbytes: int
    last_used: int
    active: bool = False
    weight: float | None = None
    blend_of: dict | None = None
    info: AdapterInfo | None = None


def _weights(spec) -> dict[str, float]:
    """None / '' / [] / {} -> {}; 'a' -> {a: 1}; ['a', 'b'] -> {a: 1, b: 1}; {a: .5} as is."""
    if not spec:
        return {}
    if isinstance(spec, str):
        return {spec: 1.0}
    if isinstance(spec, dict):
        out = {}
        for k, v in spec.items():
            try:
                out[str(k)] = float(v)
            except (TypeError, ValueError):
                raise AdapterError(f"weight for {k!r} is not a number: {v!r}") from None
        return out
    return {str(n): 1.0 for n in spec}


class AdapterManager:
    """Adapters on ``model``: a transformers/PEFT model, a ``llama_cpp.Llama``, or a llama-server
    (:class:`~pocketpack.adapters.llamaserver_driver.LlamaServerModel`, TGWUI's llama.cpp loader)."""

    def __init__(self, model, dirs=(), *, budget_bytes: int | None = None, allow_pickle: bool = False,
                 convert_dir: str | Path | None = None):
        from pocketpack.adapters.llamaserver_driver import LlamaServerDriver, LlamaServerModel

        kind = compat.model_kind(model)
        if isinstance(model, LlamaServerModel):
            self.driver = LlamaServerDriver(model)
        elif kind == "llama.cpp":
            from pocketpack.adapters.llamacpp_driver import LlamaCppDriver

            self.driver = LlamaCppDriver(model)
        elif kind == "transformers":
            from pocketpack.adapters.peft_driver import PeftDriver

            self.driver = PeftDriver(model)
        else:
            raise AdapterError("no model is loaded" if model is None
                               else f"adapters cannot be applied to a {type(model).__name__}")
        self.kind = kind
        self.dirs = [Path(d) for d in ([dirs] if isinstance(dirs, (str, Path)) else dirs)]
        self.budget_bytes = budget_bytes
        self.allow_pickle = allow_pickle
        self.convert_dir = Path(convert_dir) if convert_dir else None
        self._residents: dict[str, Resident] = {}
        self._active: dict[str, float] = {}
        self._tick = 0
        self._lock = threading.RLock()
        self.stats = {"adapter_loads": 0, "switches": 0, "evictions": 0, "blends": 0}
        self._adopt()

    # -- state ---------------------------------------------------------------------------------
    @property
    def model(self):
        """The model to generate with (a PeftModel once a PEFT adapter is loaded)."""
        return self.driver.model

    @property
    def lora_names(self) -> list[str]:
        """Names of the adapters applied right now (a blend lists its parts)."""
        with self._lock:
            names: list[str] = []
            for name in self._active:
                r = self._residents.get(name)
                parts = list(r.blend_of) if r is not None and r.blend_of else [name]
                names.extend(p for p in parts if p not in names)
            return names

    @property
    def active(self) -> dict[str, float]:
        """What the last switch asked for: adapter name -> weight (a merged blend shows its parts)."""
        with self._lock:
            out: dict[str, float] = {}
            for name, w in self._active.items():
                r = self._residents.get(name)
                if r is not None and r.blend_of:
                    out.update(r.blend_of)
                else:
                    out[name] = w
            return out

    def resident(self) -> list[Resident]:
        """Adapters in memory, most recently used first."""
        with self._lock:
            for r in self._residents.values():
                r.active = r.name in self._active
                r.weight = self._active.get(r.name)
            return sorted(self._residents.values(), key=lambda r: -r.last_used)

    def resident_bytes(self) -> int:
        return sum(r.nbytes for r in self._residents.values())

    def library(self) -> list[AdapterInfo]:
        """Adapters on disk in the configured folders, each with ``problem`` set if it cannot be
        applied to this model."""
        infos = prefer(scan(self.dirs, allow_pickle=self.allow_pickle), self.kind)
        for info in infos:
            if not info.problem:
                info.problem = self._reason(info)
        return infos

    # -- operations -------------------------------------------------------------------------------
    def _touch(self, r: Resident) -> None:
        self._tick += 1
        r.last_used = self._tick

    def _reason(self, info: AdapterInfo) -> str | None:
        on_server = getattr(self.driver, "reason_for_path", None)  # llama-server: only its start-up adapters
        if self.kind == "llama.cpp" and info.format == "peft" and self.convert_dir is not None:
            if info.problem:
                return info.problem
            return on_server(info.name, self._converted_path(info)) if on_server else None  # converted on load
        reason = compat.check(info, self.model)
        if reason is None and on_server is not None:
            reason = self.driver.reason(info)
        return reason

    def _key_for(self, name: str) -> str:
        key = re.sub(r"[^A-Za-z0-9_]", "_", name) or "adapter"
        taken = {r.key for r in self._residents.values()} | set(self.driver.keys())
        if key in taken:
            key = f"{key}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
        return key

    def _adopt(self) -> None:
        """Adapters already in the model (put there by TGWUI's own LoRA menu) become residents."""
        for key in self.driver.keys():
            self._tick += 1
            self._residents[key] = Resident(key, key, self.driver.nbytes(key), self._tick)
        weights = self.driver.active_weights() if hasattr(self.driver, "active_weights") else {
            k: 1.0 for k in self.driver.active()}
        self._active = {k: w for k, w in weights.items() if k in self._residents}

    def _resolve(self, spec) -> AdapterInfo:
        if isinstance(spec, AdapterInfo):
            return spec
        if isinstance(spec, Path):
            return inspect_adapter(spec, allow_pickle=self.allow_pickle)
        return find(self.dirs, str(spec), allow_pickle=self.allow_pickle, kind=self.kind)

    def _converted_path(self, info: AdapterInfo) -> Path:
        """Where the GGUF conversion of a PEFT adapter for this model is cached."""
        src = Path(info.path) / "adapter_model.safetensors"
        stamp = hashlib.sha1(f"{src.resolve()}:{src.stat().st_mtime_ns}:{self.model.model_path}".encode()).hexdigest()[:12]
        return self.convert_dir / f"{info.name}-{stamp}.gguf"

    def _convert(self, info: AdapterInfo) -> AdapterInfo:
        """A PEFT adapter for a llama.cpp model, converted to a GGUF LoRA once and cached."""
        from pocketpack.adapters.gguf_convert import peft_to_gguf

        out = self._converted_path(info)
        if not out.exists():
            self.convert_dir.mkdir(parents=True, exist_ok=True)
            peft_to_gguf(info.path, out, base=self.model.model_path)
        converted = inspect_adapter(out)
        converted.name = info.name
        return converted

    def load(self, spec) -> Resident:
        """Make an adapter resident (not active). ``spec``: a library name, a Path or an AdapterInfo."""
        with self._lock:
            info = self._resolve(spec)
            existing = self._residents.get(info.name)
            if existing is not None:
                self._touch(existing)
                return existing
            if self.kind == "llama.cpp" and info.format == "peft" and self.convert_dir is not None:
                compat_reason = info.problem
                if compat_reason:
                    raise AdapterError(compat_reason)
                info = self._convert(info)
            compat.ensure_compatible(info, self.model)
            key = self._key_for(info.name)
            nbytes = self.driver.load(key, info, allow_pickle=self.allow_pickle)
            # the driver's first load may have wrapped the model (PeftModel): keep the active set
            self.stats["adapter_loads"] += 1
            r = Resident(info.name, key, nbytes or int(info.size_bytes), 0, info=info)
            self._touch(r)
            self._residents[info.name] = r
            self._restore_active()
            self._evict(keep={info.name})
            return r

    def _restore_active(self) -> None:
        """Re-assert the active set (PEFT activates a freshly injected adapter by itself)."""
        self.driver.activate({self._residents[n].key: w for n, w in self._active.items()})

    def _evict(self, keep=()) -> None:
        if self.budget_bytes is None or not getattr(self.driver, "frees_memory", True):
            return  # llama-server keeps its start-up adapters in memory whatever we drop
        while self.resident_bytes() > self.budget_bytes:
            candidates = [r for r in self._residents.values()
                          if r.name not in self._active and r.name not in keep
                          and not any(r.name in (b.blend_of or {}) for b in self._residents.values()
                                      if b.name in self._active)]
            if not candidates:
                log.warning("adapters in use take %d bytes, over the %d-byte budget", self.resident_bytes(),
                            self.budget_bytes)
                return
            victim = min(candidates, key=lambda r: r.last_used)
            self._drop(victim)
            self.stats["evictions"] += 1
            log.info("evicted adapter %s (least recently used)", victim.name)

    def _drop(self, r: Resident) -> None:
        self.driver.drop(r.key)
        self._residents.pop(r.name, None)
        # a merged blend made from this adapter stays valid (its tensors are its own)

    def switch(self, spec, combination: str = "live") -> list[str]:
        """Activate ``spec``: a name, a list of names (weight 1 each), a {name: weight} dict, or
        nothing for the base model. ``combination``: 'live' applies the adapters side by side
        with their weights (exact, any ranks, nothing built); 'cat', 'svd' or 'linear' merge them
        into one new adapter with PEFT's ``add_weighted_adapter`` (cached for next time).
        Returns ``lora_names``. On failure the previous adapters stay active."""
        if combination not in COMBINATIONS:
            raise AdapterError(f"unknown combination {combination!r} (use one of {', '.join(COMBINATIONS)})")
        weights = _weights(spec)
        with self._lock:
            previous = dict(self._active)
            for name in weights:  # load first: a failure here changes nothing that is active
                if name not in self._residents:
                    self.load(name)
            for name in weights:
                self._touch(self._residents[name])
            target = weights
            if len(weights) > 1 and combination != "live" and self.kind == "transformers":
                target = {self._blend(weights, combination): 1.0}
            elif len(weights) == 1 and combination == "linear":
                pass
            try:
                self.driver.activate({self._residents[n].key: w for n, w in target.items()})
            except Exception as exc:
                try:
                    self.driver.activate({self._residents[n].key: w for n, w in previous.items()
                                          if n in self._residents})
                except Exception:
                    log.exception("could not restore the previous adapters")
                if isinstance(exc, AdapterError):
                    raise
                raise AdapterError(f"switch to {', '.join(weights) or 'base'} failed: {exc}") from None
            self._active = dict(target)
            self.stats["switches"] += 1
            self._evict()
            return self.lora_names

    def _blend(self, weights: dict[str, float], combination: str) -> str:
        label = "+".join(f"{n}*{w:g}" for n, w in weights.items())
        name = f"blend:{combination}:{label}"
        if name in self._residents:
            self._touch(self._residents[name])
            return name
        key = "__blend_" + hashlib.sha1(name.encode()).hexdigest()[:10]
        nbytes = self.driver.blend(key, {self._residents[n].key: w for n, w in weights.items()}, combination)
        r = Resident(name, key, nbytes, 0, blend_of=dict(weights))
        self._touch(r)
        self._residents[name] = r
        self.stats["blends"] += 1
        self._restore_active()
        return name

    def unload(self, name: str | None = None) -> None:
        """Free one adapter (deactivating it if active), or all of them when ``name`` is None."""
        with self._lock:
            names = [name] if name is not None else list(self._residents)
            for n in names:
                r = self._residents.get(n)
                if r is None:
                    if name is not None:
                        raise AdapterError(f"adapter {n!r} is not loaded")
                    continue
                if n in self._active or any(n in (self._residents[a].blend_of or {}) for a in self._active
                                            if a in self._residents):
                    self._active = {a: w for a, w in self._active.items()
                                    if a != n and n not in (self._residents[a].blend_of or {})}
                    self.driver.activate({self._residents[a].key: w for a, w in self._active.items()})
                self._drop(r)

    def startup_flags(self, specs, *, slot_save_dir=None) -> str:
        """llama-server flags (TGWUI's extra-flags) that start it with these adapters; PEFT
        adapters are converted for this model first. Checked against the model like a load."""
        from pocketpack.adapters.llamaserver_driver import startup_flags

        paths = []
        for spec in specs:
            info = self._resolve(spec)
            if info.problem:
                raise AdapterError(info.problem)
            if info.format == "peft":
                if self.kind != "llama.cpp" or self.convert_dir is None:
                    raise AdapterError(f"{info.name}: a PEFT adapter; convert it to GGUF first "
                                       "(pocketpack adapters to-gguf)")
                info = self._convert(info)
            compat.ensure_compatible(info, self.model)
            paths.append(info.path)
        return startup_flags(paths, slot_save_dir=slot_save_dir)

    def fits(self, spec) -> str | None:
        """Why ``spec`` cannot be applied to this model, or None."""
        try:
            info = self._resolve(spec)
        except AdapterError as exc:
            return str(exc)
        return self._reason(info)
