"""Hot switching on TGWUI's llama.cpp loader: a llama-server process, driven over HTTP.

TGWUI's llama.cpp loader (``LlamaServer``) runs llama-server in a subprocess on 127.0.0.1;
its ``shared.model`` is that HTTP client, not a ``llama_cpp.Llama``. llama-server applies only
the LoRAs named when it starts (``--lora FILE``, once per adapter) and cannot load one later,
and TGWUI starts it with none unless the user adds them to its extra-flags:
:func:`startup_flags` writes that string. Among those adapters, a switch is
``POST /lora-adapters`` with ``[{"id", "scale"}]`` for every adapter (0 = off). These are the
server's global scales, used by every request that has no ``lora`` field of its own, and
TGWUI's requests never have one. llama-server multiplies each scale by the adapter's
alpha / rank, so a weight means what it means in PEFT; several adapters at once, of any
ranks, are an exact blend.

llama-server keeps each slot's evaluated prompt and reuses its longest common prefix with
the next request. A change of the global scales does not invalidate that cache (in
llama.cpp's server-context.cpp only a request's own ``lora`` field does), so after a switch
the driver erases every slot's cache (``POST /slots/{id}?action=erase``). llama-server allows
that only when started with ``--slot-save-path DIR``; without it the switch still happens and
``cache_note`` says that the next reply may reuse prompt tokens evaluated with the previous
adapters.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import urllib.error
import urllib.request
from pathlib import Path

from pocketpack.adapters.library import AdapterError, AdapterInfo

log = logging.getLogger("pocketpack.adapters")

CACHE_NOTE = ("llama-server was started without --slot-save-path, so a switch cannot clear its prompt cache: "
              "the next reply may reuse prompt tokens evaluated with the previous adapters")


class ServerError(AdapterError):
    """llama-server answered with an HTTP error; ``status`` is its code."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _error_text(raw: bytes) -> str:
    """The message of llama-server's ``{"error": {"message": ...}}``, else the body's first line."""
    try:
        body = json.loads(raw.decode("utf-8", "replace"))
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    except ValueError:
        pass
    text = raw.decode("utf-8", "replace").strip().splitlines()
    return text[0][:200] if text else "no message"


class LlamaServerModel:
    """A running llama-server as :class:`AdapterManager` sees it: its URL and model file.

    ``model_path`` is the GGUF the server loaded (used to check adapters against it); when
    not given it is read from ``GET /props``.
    """

    def __init__(self, base_url: str, *, model_path: str | Path | None = None, api_key: str | None = None,
                 timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.metadata: dict = {}
        self.model_path = str(model_path) if model_path else self._props_model_path()

    @classmethod
    def at_port(cls, port: int, host: str = "127.0.0.1", **kwargs) -> "LlamaServerModel":
        return cls(f"http://{host}:{int(port)}", **kwargs)

    def __repr__(self) -> str:
        return f"LlamaServerModel({self.base_url!r}, model_path={self.model_path!r})"

    def request(self, method: str, path: str, body=None):
        """One JSON request; AdapterError (ServerError for HTTP errors) with one clear line."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ServerError(f"llama-server refused {method} {path} (HTTP {exc.code}: {_error_text(exc.read())})",
                              exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise AdapterError(f"llama-server at {self.base_url} is not answering ({reason})") from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise AdapterError(f"llama-server at {self.base_url} answered {path} with something that is not JSON") \
                from None

    def _props_model_path(self) -> str:
        try:
            props = self.request("GET", "/props")
        except AdapterError:
            return ""
        return str(props.get("model_path") or "") if isinstance(props, dict) else ""

    def adapters(self) -> list[dict]:
        """``GET /lora-adapters``: ``[{"id", "path", "scale"}, ...]``, the adapters given at start-up."""
        try:
            listed = self.request("GET", "/lora-adapters")
        except ServerError as exc:
            if exc.status == 404:
                raise AdapterError(f"llama-server at {self.base_url} has no /lora-adapters endpoint (an old build): "
                                   "update llama.cpp to switch adapters") from None
            raise
        if not isinstance(listed, list) or not all(isinstance(a, dict) and isinstance(a.get("id"), int)
                                                   for a in listed):
            raise AdapterError(f"llama-server at {self.base_url} answered /lora-adapters with an unexpected shape")
        return listed


def startup_flags(paths, *, slot_save_dir: str | Path | None = None) -> str:
    """What to add to TGWUI's extra-flags so that llama-server starts with these adapters,
    all off (``--lora-init-without-apply``), and lets a switch clear its prompt cache
    (``--slot-save-path``). Paths are absolute and quoted for TGWUI's ``shlex.split``."""
    parts: list[str] = []
    for p in paths:
        p = Path(p).resolve()
        if "," in str(p):
            raise AdapterError(f"{p}: llama-server splits --lora values at commas; rename the file or its folder")
        parts += ["--lora", str(p)]
    parts.append("--lora-init-without-apply")
    if slot_save_dir is not None:
        parts += ["--slot-save-path", str(Path(slot_save_dir).resolve())]
    return " ".join(shlex.quote(x) for x in parts)


def not_started_message(name: str, path: str | Path) -> str:
    return (f"{name}: llama-server was started without it and takes adapters only at start-up; add "
            f"`--lora {Path(path).resolve()}` to TGWUI's extra-flags (the Adapters tab writes all the flags) "
            "and reload the model")


class LlamaServerDriver:
    """Adapters of one llama-server: those it was started with, switched by scale.

    ``load`` finds the adapter among the server's own (by file); ``drop`` only forgets it —
    the server keeps every adapter it started with in memory until the model is unloaded.
    """

    kind = "llama.cpp"
    frees_memory = False

    def __init__(self, server: LlamaServerModel):
        self.model = server
        self.cache_note: str | None = None
        self._listing = server.adapters()          # fixed for the server's life
        self._ids: dict[str, int] = {}             # key -> server adapter id
        self._scales = {int(a["id"]): float(a.get("scale") or 0.0) for a in self._listing}
        self._active: dict[str, float] = {}
        self._can_erase: bool | None = None
        for a in self._listing:  # adopt: the server's adapters are resident from the start
            stem = Path(str(a.get("path") or f"adapter{a['id']}")).stem
            key = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or f"adapter{a['id']}"
            if key in self._ids:
                key = f"{key}#{a['id']}"
            self._ids[key] = int(a["id"])
            if self._scales[int(a["id"])]:
                self._active[key] = self._scales[int(a["id"])]

    # -- what the server holds -----------------------------------------------------------------
    def keys(self) -> list[str]:
        return list(self._ids)

    def active(self) -> list[str]:
        return list(self._active)

    def active_weights(self) -> dict[str, float]:
        return dict(self._active)

    def server_paths(self) -> list[str]:
        return [str(a.get("path") or "") for a in self._listing]

    def _server_id(self, path: str | Path) -> int | None:
        """The id of the server's adapter loaded from ``path`` (same file), if any."""
        path = Path(path)
        for a in self._listing:
            theirs = Path(str(a.get("path") or ""))
            try:
                if theirs.resolve() == path.resolve() or (theirs.exists() and os.path.samefile(theirs, path)):
                    return int(a["id"])
            except OSError:
                continue
        same_name = [a for a in self._listing if Path(str(a.get("path") or "")).name == path.name]
        if len(same_name) == 1 and not Path(str(same_name[0].get("path"))).exists():
            return int(same_name[0]["id"])  # a path relative to another working directory
        return None

    def reason(self, info: AdapterInfo) -> str | None:
        """Why this library adapter cannot be switched on this server, or None."""
        if info.format != "gguf":
            return f"{info.name}: llama-server needs a GGUF LoRA"
        if self._server_id(info.path) is None:
            return not_started_message(info.name, info.path)
        return None

    def reason_for_path(self, name: str, path: Path) -> str | None:
        return None if self._server_id(path) is not None else not_started_message(name, path)

    def nbytes(self, key: str) -> int:
        for a in self._listing:
            if int(a["id"]) == self._ids.get(key):
                p = Path(str(a.get("path") or ""))
                return p.stat().st_size if p.is_file() else 0
        return 0

    # -- operations -------------------------------------------------------------------------------
    def load(self, key: str, info: AdapterInfo, allow_pickle: bool = False) -> int:
        if info.format != "gguf":
            raise AdapterError(f"{info.name}: llama-server needs a GGUF LoRA")
        server_id = self._server_id(info.path)
        if server_id is None:
            raise AdapterError(not_started_message(info.name, info.path))
        self._ids[key] = server_id
        return int(info.size_bytes)

    def blend(self, key: str, weights: dict[str, float], combination: str) -> int:
        raise AdapterError("llama-server blends adapters exactly at run time; merged blends are not needed")

    def activate(self, weights: dict[str, float]) -> None:
        """Set every adapter's global scale (0 for those not in ``weights``); checked by reading back."""
        scales = {int(a["id"]): 0.0 for a in self._listing}
        for key, w in weights.items():
            scales[self._ids[key]] += float(w)
        if scales != self._scales:
            body = [{"id": i, "scale": s} for i, s in sorted(scales.items())]
            self.model.request("POST", "/lora-adapters", body)
            got = {int(a["id"]): float(a.get("scale") or 0.0) for a in self.model.adapters()}
            wrong = [i for i, s in scales.items() if abs(got.get(i, 0.0) - s) > 1e-4]
            if wrong:
                self._scales = got  # what the server really has: a restore will set it again
                raise AdapterError(f"llama-server did not apply the new scales (adapter ids {wrong})")
            self._scales = scales
            self._forget_cached_prompts()
        self._active = dict(weights)

    def _forget_cached_prompts(self) -> None:
        """Erase every slot's prompt cache: it was evaluated with the previous adapters."""
        if self._can_erase is False:
            return
        try:
            try:
                slots = self.model.request("GET", "/slots")
                ids = [int(s["id"]) for s in slots if isinstance(s, dict) and "id" in s]
            except ServerError:  # /slots disabled (--no-slots): the slot count is in /props
                props = self.model.request("GET", "/props")
                ids = list(range(int((props or {}).get("total_slots") or 1)))
            for i in ids:
                self.model.request("POST", f"/slots/{i}?action=erase", {})
        except ServerError as exc:
            if exc.status != 501:
                self.cache_note = f"could not clear llama-server's prompt cache after the switch ({exc})"
                log.warning("adapter-switcher: %s", self.cache_note)
                return
            self._can_erase = False
            self.cache_note = CACHE_NOTE
            log.warning("adapter-switcher: %s", CACHE_NOTE)
            return
        except AdapterError as exc:  # the switch is done; only the cache is in doubt
            self.cache_note = f"could not clear llama-server's prompt cache after the switch ({exc})"
            log.warning("adapter-switcher: %s", self.cache_note)
            return
        self._can_erase = True
        self.cache_note = None

    def drop(self, key: str) -> None:
        if key in self._active:
            self.activate({k: w for k, w in self._active.items() if k != key})
        self._ids.pop(key, None)
