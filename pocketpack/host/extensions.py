"""Load and call extensions exactly as text-generation-webui does.

Each behaviour below names the TGWUI function it mirrors (``modules/extensions.py`` and
``modules/utils.py`` at TGWUI 1dcde41). One deliberate difference: TGWUI lets an exception
in a hook abort the turn; this host logs it with the extension's name, keeps the value the
hook was given, and carries on, so an extension can never cost the user a chat.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
from dataclasses import dataclass
from inspect import signature
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

from pocketpack.errors import PocketPackError

log = logging.getLogger("pocketpack.host")


class UnknownExtensionError(PocketPackError, ValueError):
    """An extension name that is neither in extensions/ nor in user_data/extensions/."""


class ExtensionImportError(ImportError):
    """An extension needs a package that is not installed (TGWUI aborts start-up here too)."""


@dataclass
class ExtensionFailure:
    """One hook call that raised: who, where, and what the user is told."""

    extension: str
    hook: str
    error: str

    def notice(self) -> str:
        return f"extension '{self.extension}' failed in {self.hook}: {self.error}"


def _natural_key(name: str) -> list:
    # mirrors modules.utils.natural_keys
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class ExtensionHost:
    """The set of loaded extensions and the hook dispatch over them.

    ``root`` is the folder TGWUI runs from (it holds ``extensions/``); ``user_data_dir``
    holds ``extensions/`` for user extensions and ``settings.yaml``'s values come in as
    ``settings`` (a dict, e.g. from :func:`pocketpack.host.settings.load_settings`).
    """

    def __init__(self, root: Path | str = ".", user_data_dir: Path | str | None = None,
                 settings: dict | None = None):
        self.root = Path(root).resolve()
        self.user_data_dir = Path(user_data_dir) if user_data_dir else self.root / "user_data"
        self.settings = settings if settings is not None else {}
        self.default_settings: dict[str, Any] = {}
        self.loaded: dict[str, ModuleType] = {}  # name -> module, in hook order
        self.load_failures: dict[str, str] = {}
        self.failures: list[ExtensionFailure] = []  # hook failures since the last take_failures()
        self._setup_called: set[int] = set()

    # -- discovery and loading -------------------------------------------------------------

    def available(self) -> list[str]:
        """User extensions first, then system ones they do not shadow.

        Mirrors ``modules.utils.get_available_extensions``.
        """
        user = sorted({p.parent.name for p in (self.user_data_dir / "extensions").glob("*/script.py")},
                      key=_natural_key)
        system = sorted({p.parent.name for p in (self.root / "extensions").glob("*/script.py")} - set(user),
                        key=_natural_key)
        return user + system

    def load(self, names: list[str]) -> None:
        """Import each extension, apply its settings and call ``setup()`` once, in order.

        Mirrors ``modules.extensions.load_extensions``, except that an unknown name is an
        error listing the available ones (TGWUI skips it silently).
        """
        available = self.available()
        unknown = [n for n in names if n not in available]
        if unknown:
            raise UnknownExtensionError(
                f"unknown extension{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in unknown)}; "
                f"available: {', '.join(available) or '(none)'}"
            )
        for name in names:
            if name in self.loaded:
                continue
            try:
                module = self._import(name)
            except ModuleNotFoundError as exc:
                raise ExtensionImportError(
                    f"extension '{name}' needs a package that is not installed ({exc}); "
                    f"install it with: pip install -r extensions/{name}/requirements.txt"
                ) from exc
            except Exception as exc:  # TGWUI logs and skips such an extension
                log.exception("Failed to load the extension %r", name)
                self.load_failures[name] = f"{type(exc).__name__}: {exc}"
                continue
            try:
                if id(module) not in self._setup_called:
                    self._apply_settings(module, name)
                    if hasattr(module, "setup"):
                        module.setup()
                    self._setup_called.add(id(module))
            except Exception as exc:
                log.exception("Failed to set up the extension %r", name)
                self.load_failures[name] = f"{type(exc).__name__}: {exc}"
                continue
            self.loaded[name] = module

    def _import(self, name: str) -> ModuleType:
        user_script = self.user_data_dir / "extensions" / name / "script.py"
        if user_script.exists():
            # user extensions are not packages: relative imports fail there, as in TGWUI
            spec = importlib.util.spec_from_file_location(f"user_ext_{name}", str(user_script))
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return module
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        qualified = f"extensions.{name}.script"
        cached = sys.modules.get(qualified)
        expected = self.root / "extensions" / name / "script.py"
        if cached is not None and Path(getattr(cached, "__file__", "")).resolve() != expected.resolve():
            # another root's extension of the same name was imported earlier in this process
            for key in [k for k in sys.modules if k == f"extensions.{name}" or k.startswith(f"extensions.{name}.")]:
                del sys.modules[key]
            importlib.invalidate_caches()
        return importlib.import_module(qualified)

    def _apply_settings(self, module: ModuleType, name: str) -> None:
        """``params[key]`` takes ``settings['NAME-key']`` before setup (``apply_settings``)."""
        params = getattr(module, "params", None)
        if not isinstance(params, dict):
            return
        for key in params:
            setting = f"{name}-{key}"
            self.default_settings[setting] = params[key]
            if setting in self.settings:
                params[key] = self.settings[setting]

    def iterator(self) -> Iterator[tuple[ModuleType, str]]:
        """Loaded extensions in ``--extensions`` order (``extensions.iterator``)."""
        for name, module in self.loaded.items():
            yield module, name

    # -- hook dispatch ---------------------------------------------------------------------

    def _guarded(self, name: str, hook: str, call: Callable[[], Any], fallback: Any) -> Any:
        try:
            return call()
        except Exception as exc:
            failure = ExtensionFailure(name, hook, f"{type(exc).__name__}: {exc}")
            log.error("%s", failure.notice(), exc_info=True)
            self.failures.append(failure)
            return fallback

    def take_failures(self) -> list[ExtensionFailure]:
        """Hook failures since the last call, for the UI to show as notices."""
        failures, self.failures = self.failures, []
        return failures

    def _string_hook(self, function_name: str, text: str, state: dict, is_chat: bool = False) -> str:
        """Mirrors ``_apply_string_extensions``: ``(text, state)`` when the function takes two
        parameters besides ``is_chat``, else ``(text)``; ``is_chat`` only when declared."""
        for module, name in self.iterator():
            func = getattr(module, function_name, None)
            if func is None:
                continue
            parameters = [p for p in signature(func).parameters if p != "is_chat"]
            args = [text, state] if len(parameters) == 2 else [text]
            kwargs = {"is_chat": is_chat} if "is_chat" in signature(func).parameters else {}
            text = self._guarded(name, function_name, lambda: func(*args, **kwargs), text)  # noqa: B023 - called at once by _guarded, in this iteration
        return text

    def _chat_input(self, text: str, visible_text: str, state: dict) -> tuple[str, str]:
        """Mirrors ``_apply_chat_input_extensions``."""
        for module, name in self.iterator():
            if hasattr(module, "chat_input_modifier"):
                text, visible_text = self._guarded(
                    name, "chat_input_modifier",
                    lambda: module.chat_input_modifier(text, visible_text, state), (text, visible_text))  # noqa: B023 - called at once by _guarded, in this iteration
        return text, visible_text

    def _chain(self, function_name: str, value: Any) -> Any:
        """Mirrors ``_apply_state_modifier_extensions`` / ``_apply_history_modifier_extensions``."""
        for module, name in self.iterator():
            if hasattr(module, function_name):
                func = getattr(module, function_name)
                value = self._guarded(name, function_name, lambda: func(value), value)  # noqa: B023 - called at once by _guarded, in this iteration
        return value

    def _first(self, function_name: str, *args, **kwargs) -> Any:
        """Mirrors the first-wins hooks: only the first extension defining it is called."""
        for module, name in self.iterator():
            if hasattr(module, function_name):
                func = getattr(module, function_name)
                return self._guarded(name, function_name, lambda: func(*args, **kwargs), None)  # noqa: B023 - called at once by _guarded, in this iteration
        return None

    def _first_function(self, function_name: str) -> tuple[str, Callable] | None:
        """Mirrors ``_apply_custom_generate_reply``: the function itself, first wins."""
        for module, name in self.iterator():
            if hasattr(module, function_name):
                return name, getattr(module, function_name)
        return None

    def _tokenizer(self, state: dict, prompt: str, input_ids: Any, input_embeds: Any) -> tuple:
        """Mirrors ``_apply_tokenizer_extensions``."""
        for module, name in self.iterator():
            if hasattr(module, "tokenizer_modifier"):
                prompt, input_ids, input_embeds = self._guarded(
                    name, "tokenizer_modifier",
                    lambda: module.tokenizer_modifier(state, prompt, input_ids, input_embeds),  # noqa: B023 - called at once by _guarded, in this iteration
                    (prompt, input_ids, input_embeds))
        return prompt, input_ids, input_embeds

    def _logits_processor(self, processor_list: list, input_ids: Any) -> list:
        """Mirrors ``_apply_logits_processor_extensions``: a returned list replaces the
        running list, but callers use the list they passed (append in place)."""
        for module, name in self.iterator():
            if hasattr(module, "logits_processor_modifier"):
                result = self._guarded(name, "logits_processor_modifier",
                                       lambda: module.logits_processor_modifier(processor_list, input_ids), None)  # noqa: B023 - called at once by _guarded, in this iteration
                if type(result) is list:
                    processor_list = result
        return processor_list

    def _joined(self, function_name: str) -> str:
        """Mirrors ``_apply_custom_css`` / ``_apply_custom_js``."""
        return "".join(self._guarded(name, function_name, getattr(module, function_name), "")
                       for module, name in self.iterator() if hasattr(module, function_name))

    def apply(self, typ: str, *args, **kwargs) -> Any:
        """``apply_extensions(typ, ...)`` with TGWUI's hook type names."""
        if typ == "input":
            return self._string_hook("input_modifier", *args, **kwargs)
        if typ == "output":
            return self._string_hook("output_modifier", *args, **kwargs)
        if typ == "bot_prefix":
            return self._string_hook("bot_prefix_modifier", *args, **kwargs)
        if typ == "chat_input":
            return self._chat_input(*args, **kwargs)
        if typ == "state":
            return self._chain("state_modifier", *args)
        if typ == "history":
            return self._chain("history_modifier", *args)
        if typ == "tokenizer":
            return self._tokenizer(*args)
        if typ == "logits_processor":
            return self._logits_processor(*args)
        if typ == "custom_generate_chat_prompt":
            return self._first("custom_generate_chat_prompt", *args, **kwargs)
        if typ == "custom_generate_reply":
            return self._first_function("custom_generate_reply")
        if typ == "tokenized_length":
            return self._first("custom_tokenized_length", *args)
        if typ == "css":
            return self._joined("custom_css")
        if typ == "js":
            return self._joined("custom_js")
        raise ValueError(f"Invalid extension type {typ}")

    # -- UI --------------------------------------------------------------------------------

    def tab_extensions(self) -> list[tuple[str, ModuleType]]:
        """(display name, module) of extensions whose ``ui()`` goes in its own tab."""
        return [(getattr(m, "params", {}).get("display_name", n), m) for m, n in self.iterator()
                if hasattr(m, "ui") and isinstance(getattr(m, "params", None), dict) and m.params.get("is_tab")]

    def block_extensions(self) -> list[tuple[str, ModuleType]]:
        """(name, module) of extensions whose ``ui()`` goes in the extensions block."""
        return [(n, m) for m, n in self.iterator()
                if hasattr(m, "ui") and not (isinstance(getattr(m, "params", None), dict) and m.params.get("is_tab"))]

    def build_ui(self, name: str, module: ModuleType) -> None:
        """Call an extension's ``ui()``; a failure becomes a notice in its place."""
        before = len(self.failures)
        self._guarded(name, "ui", module.ui, None)
        if len(self.failures) > before:
            import gradio as gr

            gr.Markdown(f"⚠️ {self.failures[-1].notice()}")
