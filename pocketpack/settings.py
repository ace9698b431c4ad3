"""One typed settings model for every extension's ``params``.

TGWUI hands each extension a plain ``params`` dict whose values come from the script's
defaults, ``settings.yaml`` (``memory-k: 8``) or the extension's own UI, so a number may arrive
as ``"8"``, ``8.0`` or ``"eight"``. Each extension declares its settings once, as a subclass of
:class:`ExtensionSettings` (``pocketpack.rag.config.RagSettings``,
``pocketpack.memory.settings.MemoryParams``, ``pocketpack.adapters.settings.AdapterParams``),
with the field types below, and reads ``params`` through :meth:`ExtensionSettings.from_params`:

- values are coerced the one way every extension shares (``"8"`` and ``8.0`` are 8, ``"yes"``
  and ``"on"`` are true), ``None`` counts as not given;
- a value that cannot be coerced, or is out of range (``problems``), raises the extension's
  own error class with one line naming the setting (``strict``), or goes back to its default
  and is reported through ``warn`` (``strict=False``: a chat turn never breaks over a setting);
- a key no model knows is warned about once per process, naming the key and the valid ones.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any, Callable, ClassVar, Iterable

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from pocketpack.errors import PocketPackError

log = logging.getLogger("pocketpack.settings")

HOST_KEYS = frozenset({"display_name", "is_tab"})  # TGWUI's own keys in every extension's params


class SettingsError(PocketPackError, ValueError):
    """A setting of the wrong type or out of range; the message is one line for the user."""


def _to_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")


def _to_int(value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("not a number") from None
    if not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("not a number") from None


def _to_str(value: Any) -> str:
    return str(value)


Bool = Annotated[bool, BeforeValidator(_to_bool)]
"""True or false; a string is true when it is 1, true, yes or on (any case)."""
Int = Annotated[int, BeforeValidator(_to_int)]
"""A whole number; ``"8"``, ``8.0`` and ``"8.0"`` are 8, ``8.5`` is refused."""
Float = Annotated[float, BeforeValidator(_to_float)]
Str = Annotated[str, BeforeValidator(_to_str)]

_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


class ExtensionSettings(BaseModel):
    """The base of every extension's settings model (see the module's docstring).

    A subclass sets ``extension`` (its name in messages), may add ``also_known`` (keys its
    ``params`` carry that another part reads, so they are not warned about), override
    ``problems`` (range checks, one line each) and ``error_class`` (its area's error)."""

    model_config = ConfigDict(extra="ignore")

    extension: ClassVar[str] = "extension"
    also_known: ClassVar[frozenset[str]] = frozenset()
    _warned: ClassVar[set[tuple[str, str]]] = set()
    _warned_lock: ClassVar[threading.Lock] = threading.Lock()

    # -- what a subclass may override ------------------------------------------------------
    @classmethod
    def error_class(cls) -> type[Exception]:
        """The error a bad value raises (one line): the extension's own error class."""
        return SettingsError

    def problems(self) -> list[tuple[str, str]]:
        """(field, one-line reason) for every value out of range; none by default."""
        return []

    # -- reading params --------------------------------------------------------------------
    @classmethod
    def known_keys(cls) -> list[str]:
        return [*cls.model_fields, *sorted(cls.also_known)]

    @classmethod
    def warn_unknown(cls, params: Iterable[str], warn: Callable[[str], None] | None = None) -> list[str]:
        """Warn, once per process and key, about keys no setting of this model has; returns them."""
        known = set(cls.known_keys()) | HOST_KEYS
        unknown = [k for k in params if k not in known]
        for key in unknown:
            with cls._warned_lock:
                if (cls.extension, key) in cls._warned:
                    continue
                cls._warned.add((cls.extension, key))
            (warn or log.warning)(f"{cls.extension}: ignoring unknown setting {key!r}"
                                  f" (valid: {', '.join(cls.known_keys())})")
        return unknown

    @classmethod
    def warn_unknown_settings(cls, settings: dict, name: str, warn: Callable[[str], None] | None = None) -> list[str]:
        """TGWUI copies a ``NAME-key`` entry of settings.yaml into ``params`` only when ``params``
        has that key, and drops any other silently (a typo goes unnoticed): warn about those,
        once. ``settings``: TGWUI's ``shared.settings``; ``name``: the extension's folder name."""
        if not isinstance(settings, dict):
            return []
        prefix = f"{name}-"
        keys = [k[len(prefix):] for k in settings if isinstance(k, str) and k.startswith(prefix)]
        return cls.warn_unknown(keys, warn)

    @classmethod
    def from_params(cls, params: dict, *, strict: bool = True, warn: Callable[[str], None] | None = None,
                    unknown: str = "warn"):
        """The settings ``params`` give; see the module's docstring. ``unknown="ignore"`` skips
        the unknown-key warning (a file this model wrote itself)."""
        if unknown == "warn":
            cls.warn_unknown(params, warn)
        settings, bad = cls.build(params, strict=strict)
        if bad and warn is not None:
            for _, reason in bad:
                warn(f"{cls.extension}: {reason}; using the default")
        return settings

    @classmethod
    def build(cls, params: dict, *, strict: bool) -> tuple[Any, list[tuple[str, str]]]:
        """``from_params`` without the warnings: the settings and (field, reason) for every
        value that went back to its default (``strict=False`` only)."""
        values = {k: v for k, v in params.items() if k in cls.model_fields and v is not None}
        bad: list[tuple[str, str]] = []
        while True:
            try:
                out = cls.model_validate(values)
                break
            except ValidationError as exc:
                found = cls._type_errors(exc, values)
                if strict:
                    raise cls.error_class()(found[0][1]) from None
                bad += found
                for name, _ in found:
                    values.pop(name, None)
        if strict:
            out.validate()
            return out, []
        return out.settle(bad)

    def settle(self, bad: list[tuple[str, str]]):
        """Lenient: each value out of range goes back to its default (see ``RagSettings``)."""
        found = self.problems()
        if not found:
            return self, bad
        defaults = type(self)()
        for name, _ in found:
            setattr(self, name, getattr(defaults, name))
        return self, bad + found

    @classmethod
    def _type_errors(cls, exc: ValidationError, values: dict) -> list[tuple[str, str]]:
        """(field, "NAME must be KIND, not VALUE") for each value pydantic refused, in field order."""
        names = [str(e["loc"][0]) for e in exc.errors() if e.get("loc")]
        order = list(cls.model_fields)
        out = []
        for name in sorted(dict.fromkeys(names), key=lambda n: order.index(n) if n in order else len(order)):
            out.append((name, f"{name} must be {cls._kind(name)}, not {values.get(name)!r}"))
        return out

    @classmethod
    def _kind(cls, name: str) -> str:
        field = cls.model_fields.get(name)
        annotation = field.annotation if field is not None else None
        for t, kind in _KINDS.items():
            if annotation is t:
                return kind
        args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
        kinds = [_KINDS.get(a, getattr(a, "__name__", str(a))) for a in args]
        return " or ".join(kinds) if kinds else "valid"

    def validate(self):
        """Raise the extension's error naming every value out of range (one line); else self."""
        found = self.problems()
        if found:
            raise self.error_class()("; ".join(reason for _, reason in found))
        return self

    def to_dict(self) -> dict:
        return self.model_dump()
