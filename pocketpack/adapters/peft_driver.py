"""Hot switching on a Transformers model through PEFT: load once, then only flip flags.

Each adapter is injected once (``PeftModel`` for the first, ``load_adapter`` after). A switch
sets the active adapters on every LoRA layer and each one's scale (``set_scale``: weight *
alpha / r), so a blend of several adapters — any ranks — is applied exactly, as PEFT's
``cat`` combination would, without building a new adapter. ``cat``/``svd``/``linear`` merges
through ``add_weighted_adapter`` are offered too, and cached like any other adapter.
The base model is never reloaded; "no adapter" disables the LoRA layers in place. Works on
fp32/fp16/bf16 and bitsandbytes 8-bit/4-bit bases alike: LoRA weights sit beside the
quantised ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pocketpack.adapters.library import AdapterError, AdapterInfo

log = logging.getLogger("pocketpack.adapters")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class PeftDriver:
    """Adapters on one torch model; ``model`` becomes a PeftModel after the first load."""

    kind = "transformers"

    def __init__(self, model):
        self.model = model
        self._layers: list | None = None
        self._aux: bool | None = None

    # -- helpers ---------------------------------------------------------------------------
    def _peft(self):
        from peft import PeftModel

        return self.model if isinstance(self.model, PeftModel) else None

    def keys(self) -> list[str]:
        """Adapters already in the model (including ones another tool loaded, e.g. TGWUI)."""
        pm = self._peft()
        return list(pm.peft_config) if pm is not None else []

    def layers(self) -> list:
        if self._layers is None:
            from peft.tuners.lora import LoraLayer

            self._layers = [m for m in self.model.modules() if isinstance(m, LoraLayer)] if self._peft() else []
            self._aux = None
        return self._layers

    def nbytes(self, key: str) -> int:
        """Memory the adapter's own tensors take (LoRA A/B, embeddings, DoRA magnitudes)."""
        total = 0
        for layer in self.layers():
            for attr in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"):
                container = getattr(layer, attr, None)
                if container is None or key not in container:
                    continue
                for p in container[key].parameters() if hasattr(container[key], "parameters") else [container[key]]:
                    total += p.numel() * p.element_size()
        return total

    # -- operations --------------------------------------------------------------------------
    def load(self, key: str, info: AdapterInfo, allow_pickle: bool = False) -> int:
        """Inject adapter ``info`` as ``key``; the model is left as it was if this fails."""
        from peft import LoraConfig, PeftModel

        path = Path(info.path)
        if info.format == "peft":  # read the whole file first: a corrupt one fails before injection
            try:
                from safetensors.torch import load_file

                load_file(str(path / "adapter_model.safetensors"), device="cpu")
            except Exception as exc:  # noqa: BLE001 - safetensors raises its own and torch's errors: any of them means a corrupt file
                raise AdapterError(f"{info.name}: corrupt weights file ({_first_line(exc)})") from None
        elif info.format == "pickle":
            if not allow_pickle:
                raise AdapterError(f"{info.name}: pickle weights refused (opt in with allow_pickle)")
            log.warning("%s: loading pickle weights (allow_pickle is on)", info.name)
        else:
            raise AdapterError(f"{info.name}: a {info.format} adapter cannot be loaded into a Transformers model")
        pm = self._peft()
        created = False
        try:
            if pm is None:
                config = LoraConfig.from_pretrained(str(path))
                config.inference_mode = True
                pm = PeftModel(self.model, config, adapter_name=key)
                created = True
            pm.load_adapter(str(path), adapter_name=key, is_trainable=False)
        except Exception as exc:  # noqa: BLE001 - PEFT raises many types for a bad adapter; each becomes one line
            if created:
                try:
                    pm.unload()  # take the injected layers out again: the base is as it was
                except Exception:
                    log.exception("could not undo a failed adapter load")
            elif pm is not None and key in pm.peft_config:
                try:
                    pm.delete_adapter(key)
                except Exception:
                    log.exception("could not undo a failed adapter load")
            self._layers = None
            raise AdapterError(f"{info.name}: cannot load ({_first_line(exc)})") from None
        if created:
            self.model = pm
        if not pm.get_base_model().training:
            pm.eval()  # new LoRA layers start in training mode: their dropout would be on
        self._layers = None
        return self.nbytes(key)

    def blend(self, key: str, weights: dict[str, float], combination: str) -> int:
        """Merge resident adapters into a new one with ``add_weighted_adapter``."""
        pm = self._peft()
        ranks = {k: pm.peft_config[k].r for k in weights}
        if combination == "linear" and len(set(ranks.values())) > 1:
            listed = ", ".join(f"{k} r={r}" for k, r in ranks.items())
            raise AdapterError(f"cannot blend {listed} with 'linear': ranks differ (use 'cat' or 'svd')")
        for layer in self.layers():  # PEFT folds each part's current scaling in: start from weight 1
            for k in weights:
                layer.set_scale(k, 1.0)
        try:
            pm.add_weighted_adapter(list(weights), list(weights.values()), key, combination_type=combination)
        except Exception as exc:  # noqa: BLE001 - as above, for add_weighted_adapter
            if key in pm.peft_config:
                try:
                    pm.delete_adapter(key)
                except Exception:  # noqa: BLE001 - best-effort cleanup after a failed blend; the blend's own error is raised
                    pass
            self._layers = None
            raise AdapterError(f"cannot blend {', '.join(weights)} ({combination}): {_first_line(exc)}") from None
        self._layers = None
        return self.nbytes(key)

    def activate(self, weights: dict[str, float]) -> None:
        """Make exactly ``weights`` (key -> scale) active; an empty dict gives the base model."""
        pm = self._peft()
        if pm is None:
            if weights:
                raise AdapterError("no adapter is loaded")
            return
        layers = self.layers()
        if not weights:
            for layer in layers:
                layer.enable_adapters(False)
            return
        keys = list(weights)
        target = keys if len(keys) > 1 else keys[0]
        if self._has_auxiliary():  # modules_to_save wrappers: let PEFT walk the whole model
            for layer in layers:
                if layer.disable_adapters:
                    layer.enable_adapters(True)
            pm.base_model.set_adapter(target, inference_mode=True)
        else:  # only the LoRA layers need telling: skip PEFT's walk over every module
            for layer in layers:
                if layer.disable_adapters:
                    layer.enable_adapters(True)
                layer.set_adapter(target, inference_mode=True)
            pm.base_model.active_adapter = target
        pm.active_adapter = keys[0]  # PeftModel's own record must name one existing adapter
        for layer in layers:
            for key, w in weights.items():
                layer.set_scale(key, float(w))

    def _has_auxiliary(self) -> bool:
        if self._aux is None:
            from peft.utils.other import AuxiliaryTrainingWrapper

            self._aux = any(isinstance(m, AuxiliaryTrainingWrapper) for m in self.model.modules())
        return self._aux

    def drop(self, key: str) -> None:
        """Delete one adapter; with none left, unwrap: the model is the plain base again."""
        pm = self._peft()
        if pm is not None and key in pm.peft_config:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "adapter was active, setting active adapter to ..."
                pm.delete_adapter(key)
            if not pm.peft_config:
                self.model = pm.unload()
        self._layers = None

    def active(self) -> list[str]:
        pm = self._peft()
        if pm is None:
            return []
        if self.layers() and all(layer.disable_adapters for layer in self.layers()):
            return []
        act = pm.base_model.active_adapter
        return [act] if isinstance(act, str) else list(act)
