"""Hot switching on a llama.cpp model through llama-cpp-python's low-level adapter API.

``llama_adapter_lora_init`` loads a GGUF LoRA once against the model; ``llama_set_adapters_lora``
sets the list of adapters (with one scale each) the context applies — several at once is an
exact blend, any ranks. llama.cpp multiplies each scale by the adapter's alpha / rank itself.
After a switch the context's cached tokens belong to the old weights, so the KV cache and
``Llama``'s token list are reset and the next prompt is evaluated again in full.
"""

from __future__ import annotations

import ctypes
import logging

from pocketpack.adapters.library import AdapterError, AdapterInfo

log = logging.getLogger("pocketpack.adapters")


class LlamaCppDriver:
    kind = "llama.cpp"

    def __init__(self, llm):
        self.model = llm
        self._handles: dict[str, object] = {}
        self._active: dict[str, float] = {}

    def keys(self) -> list[str]:
        return list(self._handles)

    def load(self, key: str, info: AdapterInfo, allow_pickle: bool = False) -> int:
        import llama_cpp

        if info.format != "gguf":
            raise AdapterError(f"{info.name}: llama.cpp needs a GGUF LoRA")
        handle = llama_cpp.llama_adapter_lora_init(self.model.model, str(info.path).encode("utf-8"))
        if not handle:
            raise AdapterError(f"{info.name}: llama.cpp could not load {info.path.name} (see its log for the tensor)")
        self._handles[key] = handle
        return int(info.size_bytes)

    def blend(self, key: str, weights: dict[str, float], combination: str) -> int:
        raise AdapterError("llama.cpp blends adapters exactly at run time; merged blends are not needed")

    def activate(self, weights: dict[str, float]) -> None:
        import llama_cpp

        n = len(weights)
        if n:
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*[self._handles[k] for k in weights])
            scales = (ctypes.c_float * n)(*[float(w) for w in weights.values()])
        else:
            handles, scales = None, None
        rc = llama_cpp.llama_set_adapters_lora(self.model.ctx, handles, n, scales)
        if rc != 0:
            raise AdapterError(f"llama.cpp refused the adapter set {list(weights)} (error {rc})")
        self._active = dict(weights)
        self.reset_cache()

    def reset_cache(self) -> None:
        """Forget evaluated tokens: they were computed with the previous adapters."""
        llm = self.model
        try:
            llm.reset()
            ctx = getattr(llm, "_ctx", None)
            if ctx is not None and hasattr(ctx, "kv_cache_clear"):
                ctx.kv_cache_clear()
            cache = getattr(llm, "cache", None)
            if cache is not None and hasattr(cache, "cache_state"):
                cache.cache_state.clear()
        except Exception:
            log.exception("could not reset llama.cpp's cache after an adapter switch")

    def drop(self, key: str) -> None:
        import llama_cpp

        handle = self._handles.pop(key, None)
        if handle is None:
            return
        if key in self._active:
            self.activate({k: w for k, w in self._active.items() if k != key})
        llama_cpp.llama_adapter_lora_free(handle)

    def nbytes(self, key: str) -> int:
        return 0

    def active(self) -> list[str]:
        return list(self._active)
