"""GPTQ checkpoints through gptqmodel (AutoGPTQ's maintained successor), auto-gptq as legacy.

TGWUI before 2025 loaded GPTQ models with ``--wbits 4 --groupsize 128`` (AutoGPTQ), and
read the checkpoint's ``quantize_config.json`` for the same values. We accept the flags the
same way, but refuse, in one line, flags that contradict the checkpoint (loading 8-bit
weights as 4-bit gives garbage, not an error). A checkpoint without any quantize config
(old GPTQ-for-LLaMa files) is refused with the JSON to add, since guessing is unsafe.

Backend choice: ``--loader GPTQ`` (or inferred) uses gptqmodel, or auto-gptq if gptqmodel is
missing; ``--loader AutoGPTQ`` asks for auto-gptq (0.7.1 no longer imports with
transformers 5, so it is tried and its import error reported in one line).

On a CPU gptqmodel needs its pure-torch kernel: ``backend=BACKEND.TORCH`` (``TorchLinear``);
its default dtype there is bfloat16. Quantising on a CPU works with
``QuantizeConfig(offload_to_disk=False)`` (the default disk offload made a 2-layer toy model
take ~65 s instead of ~1.5 s) and ``GPTQMODEL_CPU_WORKERS`` set to the core count before
gptqmodel is first imported. Generation then runs through the inner Hugging Face model, so
streaming and the tokenizer/logits hooks are exactly the Transformers backend's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pocketpack.host.backends.base import ModelLoadError
from pocketpack.host.backends.transformers_hf import TransformersBackend
from pocketpack.host.flags import FlagConflict, LoadSettings


def _one_line(exc: BaseException) -> str:
    from pocketpack.host.backends import one_line

    return one_line(exc)


def checkpoint_quantize_config(folder: Path) -> tuple[str, dict] | None:
    """(file name, config) of the GPTQ settings a checkpoint carries, if any."""
    qc_path = folder / "quantize_config.json"
    if qc_path.is_file():
        try:
            return qc_path.name, json.loads(qc_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{qc_path} is not valid JSON: {_one_line(exc)}") from None
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    qc = config.get("quantization_config")
    if isinstance(qc, dict) and str(qc.get("quant_method", "")).lower() == "gptq":
        return "config.json quantization_config", qc
    return None


def check_checkpoint_flags(folder: Path, settings: LoadSettings) -> dict:
    """The checkpoint's GPTQ config; FlagConflict when --wbits/--groupsize contradict it."""
    found = checkpoint_quantize_config(folder)
    if found is None:
        bits = settings.wbits or 4
        group = settings.groupsize if settings.groupsize is not None else 128
        raise ModelLoadError(
            f"{folder} has no quantize_config.json; add one for this GPTQ model, e.g. "
            f'{{"bits": {bits}, "group_size": {group}, "desc_act": false, "sym": true}}')
    source, qc = found
    # 0 / -1 are TGWUI's defaults ("not given"); -1 counts when typed next to --wbits
    wbits = settings.wbits or None
    groupsize = settings.groupsize
    if groupsize == -1 and wbits is None:
        groupsize = None
    problems = []
    if wbits is not None and qc.get("bits") is not None and wbits != qc["bits"]:
        problems.append(f"--wbits {wbits} but the checkpoint's {source} says bits={qc['bits']}")
    if groupsize is not None and qc.get("group_size") is not None and groupsize != qc["group_size"]:
        problems.append(f"--groupsize {groupsize} but the checkpoint's {source} "
                        f"says group_size={qc['group_size']}")
    if problems:
        raise FlagConflict("; ".join(problems))
    return qc


def _import_gptqmodel():
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, min(os.cpu_count() or 1, 12))))
    import gptqmodel

    return gptqmodel


def _import_auto_gptq():
    import auto_gptq

    return auto_gptq


class GPTQBackend(TransformersBackend):
    """A GPTQ checkpoint. ``.model`` is the Hugging Face model with quantised linear layers;
    ``.engine`` names the package that loaded it ('gptqmodel' or 'auto-gptq')."""

    loader = "GPTQ"

    def __init__(self, path: str | Path, settings: LoadSettings | None = None, *,
                 legacy: bool = False):
        settings = settings or LoadSettings()
        self.quantize_config = check_checkpoint_flags(Path(path), settings)
        self.legacy = legacy
        self.loader = "AutoGPTQ" if legacy else "GPTQ"
        self.qmodel: Any = None  # the gptqmodel / auto-gptq wrapper around .model
        self.engine = self._pick_engine()  # before any loading: a missing package fails fast
        super().__init__(path, settings)

    def _pick_engine(self) -> str:
        if self.legacy:
            try:
                _import_auto_gptq()
            except Exception as exc:  # noqa: BLE001 - auto-gptq fails in many ways on import
                raise ModelLoadError(
                    f"--loader AutoGPTQ needs auto-gptq, which does not import here "
                    f"({_one_line(exc)}); drop --loader to use gptqmodel") from None
            return "auto-gptq"
        try:
            _import_gptqmodel()
            return "gptqmodel"
        except Exception as gptqmodel_error:  # noqa: BLE001 - missing, or broken by a dependency
            try:
                _import_auto_gptq()
                return "auto-gptq"
            except Exception:  # noqa: BLE001 - auto-gptq fails to import in many ways (CUDA, transformers 5); all mean 'not usable'
                raise ModelLoadError(
                    "GPTQ models need gptqmodel: pip install gptqmodel==7.5.0 optimum "
                    f"(or the legacy auto-gptq); import failed: {_one_line(gptqmodel_error)}"
                ) from None

    def _load_model(self):
        import torch

        s = self.settings
        dtype = torch.bfloat16 if s.bf16 else None
        try:
            if self.engine == "gptqmodel":
                from gptqmodel import BACKEND, GPTQModel

                kwargs: dict[str, Any] = dict(
                    trust_remote_code=s.trust_remote_code, local_files_only=True)
                if dtype is not None:
                    kwargs["dtype"] = dtype
                if self.on_cpu:
                    kwargs.update(device="cpu", backend=BACKEND.TORCH)
                else:
                    kwargs.update(device_map="auto", backend=BACKEND.AUTO)
                self.qmodel = GPTQModel.load(str(self.path), **kwargs)
            else:
                from auto_gptq import AutoGPTQForCausalLM

                self.qmodel = AutoGPTQForCausalLM.from_quantized(
                    str(self.path), device="cpu" if self.on_cpu else "cuda:0",
                    use_safetensors=True, trust_remote_code=s.trust_remote_code,
                    disable_exllama=self.on_cpu, disable_exllamav2=self.on_cpu)
        except (ModelLoadError, FlagConflict):
            raise
        except Exception as exc:  # noqa: BLE001 - corrupt weights, missing kernels, ...
            raise ModelLoadError(
                f"cannot load GPTQ model {self.path.name} with {self.engine}: {_one_line(exc)}"
            ) from None
        return getattr(self.qmodel, "model", self.qmodel)
