"""This machine's GPU memory and RAM: nvidia-smi first, torch.cuda second, psutil for RAM."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

GIB = 1024 ** 3


@dataclass
class Machine:
    gpu_name: str | None
    vram_gib: float          # total memory of the first GPU, 0 without one
    vram_free_gib: float | None
    ram_gib: float
    ram_free_gib: float | None
    source: str              # "nvidia-smi", "torch", "given", "none"

    @property
    def has_gpu(self) -> bool:
        return self.vram_gib > 0


def ram() -> tuple[float, float | None]:
    """(total, available) RAM in GiB; available is None where it cannot be known."""
    try:
        import psutil

        memory = psutil.virtual_memory()
        return memory.total / GIB, memory.available / GIB or None
    except Exception:  # noqa: BLE001 - psutil missing or unsupported here: the page count, free unknown
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, None
    except (ValueError, OSError, AttributeError):
        return 8.0, None


def _nvidia_smi() -> tuple[str, float, float] | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        name, total, used = [x.strip() for x in out.strip().splitlines()[0].split(",")]
        return name, float(total) / 1024, (float(total) - float(used)) / 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _torch_cuda() -> tuple[str, float, float] | None:
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch  # noqa: F811 - the real module, imported only when no one has yet
        except Exception:  # noqa: BLE001 - a broken torch install means "no GPU known", not a crash
            return None
    try:
        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info(0)
        return torch.cuda.get_device_name(0), total / GIB, free / GIB
    except Exception:  # noqa: BLE001 - a driver/CUDA failure means "no GPU usable", not a crash
        return None


def detect(vram_gib: float | None = None, ram_gib: float | None = None, use_torch: bool = True) -> Machine:
    """Detect, or take what the user gave (a given value wins; ``vram_gib=0`` means CPU only)."""
    ram_total, ram_free = ram()
    if ram_gib is not None:
        ram_total, ram_free = float(ram_gib), None
    if vram_gib is not None:
        return Machine(None, float(vram_gib), None, ram_total, ram_free, "given")
    found = _nvidia_smi()
    source = "nvidia-smi"
    if found is None and use_torch:
        found, source = _torch_cuda(), "torch"
    if found is None:
        return Machine(None, 0.0, None, ram_total, ram_free, "none")
    name, total, free = found
    return Machine(name, total, free, ram_total, ram_free, source)
