"""One running host: the extensions, the loaded model and TGWUI's globals kept truthful.

``pocketpack serve``, ``pocketpack chat`` and the tests all go through a ``Runtime`` so that
extensions see the same ``shared.model`` / ``shared.tokenizer`` / ``shared.model_name`` they
would see inside text-generation-webui.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Iterator

from pocketpack.host import shared
from pocketpack.host.chat import chat_turn, complete
from pocketpack.host.extensions import ExtensionHost
from pocketpack.host.settings import load_settings

log = logging.getLogger("pocketpack.host")


class Runtime:
    """Extensions + at most one loaded model, as one TGWUI process holds them."""

    def __init__(self, root: Path | str = ".", user_data_dir: Path | str | None = None,
                 extensions: list[str] | None = None, settings_file: Path | str | None = None,
                 nowebui: bool = False, model_dir: Path | str | None = None):
        root = Path(root).resolve()
        user_data_dir = Path(user_data_dir).resolve() if user_data_dir else root / "user_data"
        settings_file = Path(settings_file) if settings_file else user_data_dir / "settings.yaml"
        settings = load_settings(settings_file)
        names = list(extensions or [])
        for name in settings.get("default_extensions") or []:  # server.py appends these
            if name not in names:
                names.append(name)

        shared.settings = settings
        shared.user_data_dir = user_data_dir
        shared.args.extensions = names
        shared.args.nowebui = nowebui
        shared.args.lora_dir = str(user_data_dir / "loras")
        shared.args.model_dir = str(Path(model_dir).resolve() if model_dir else user_data_dir / "models")
        shared.generation_lock = threading.Lock()
        self.host = ExtensionHost(root, user_data_dir, settings)
        shared.default_settings = self.host.default_settings
        self.host.load(names)
        self.backend = None

    # -- model -----------------------------------------------------------------------------

    def load_model(self, path: Path | str, load_settings=None):
        """Load a model (unloading the previous one) and publish it in ``shared``. A missing
        model or a flag it cannot take is refused before the loaded model is unloaded."""
        from pocketpack.host.backends import load_model
        from pocketpack.host.backends.base import ModelLoadError
        from pocketpack.host.flags import LoadSettings, check_flags, infer_loader

        load_settings = load_settings or LoadSettings()
        if not Path(path).expanduser().exists():
            raise ModelLoadError(f"model not found: {Path(path).expanduser()}")
        check_flags(load_settings, infer_loader(Path(path).expanduser(), load_settings))
        self.unload_model()
        backend = load_model(Path(path), load_settings)
        self.backend = backend
        shared.backend = backend
        shared.model = backend.model
        shared.tokenizer = backend.tokenizer if backend.tokenizer is not None else backend
        shared.model_name = backend.model_name
        return backend

    def unload_model(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.backend = None
        shared.backend = shared.model = shared.tokenizer = None
        shared.model_name = "None"
        shared.lora_names = []

    # -- generation ------------------------------------------------------------------------

    def chat(self, text: str, state: dict, regenerate: bool = False, _continue: bool = False,
             loading_message: bool = True) -> Iterator[dict]:
        """A chat turn under the generation lock (one generation at a time, as in TGWUI)."""
        with shared.generation_lock:
            yield from chat_turn(self.host, self.backend, text, state, regenerate=regenerate,
                                 _continue=_continue, loading_message=loading_message)

    def complete(self, prompt: str, state: dict) -> Iterator[str]:
        with shared.generation_lock:
            yield from complete(self.host, self.backend, prompt, state)
