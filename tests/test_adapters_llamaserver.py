"""Adapters on TGWUI's llama.cpp loader: a llama-server driven over HTTP.

``FakeLlamaServer`` below is a TEST DOUBLE of llama-server's adapter API, served for real
on 127.0.0.1 with ``http.server``. It is not llama.cpp: it does what llama.cpp's server README
(tools/server/README.md) and server code (server-context.cpp, server-common.cpp) say these
endpoints do, so the driver is checked over real HTTP against the documented behaviour:

- ``GET /lora-adapters`` -> ``[{"id", "path", "scale", ...}]``: the ``--lora`` files;
- ``POST /lora-adapters`` with ``[{"id", "scale"}]`` sets the global scales; an adapter not
  listed gets 0; a body that is not an array is a 400;
- ``GET /slots`` -> ``[{"id", ...}]`` (501 with ``--no-slots``);
- ``POST /slots/{id}?action=erase`` -> ``{"id_slot", "n_erased"}``, or 501 when the server was
  started without ``--slot-save-path``;
- ``GET /props`` -> ``{"model_path", "total_slots"}``;
- errors as ``{"error": {"code", "message", "type"}}`` with the HTTP status.

``test_real_llama_server`` runs the same driver against a real llama-server binary when one
is found (``POCKETPACK_LLAMA_SERVER`` or ``llama-server`` on PATH) and compares its output
with PEFT's.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from pocketpack.adapters import AdapterError, AdapterManager
from pocketpack.adapters.gguf_convert import peft_to_gguf
from pocketpack.adapters.llamaserver_driver import CACHE_NOTE, LlamaServerModel, startup_flags
from tests.helpers.tiny_adapters import make_adapter, tiny_llama, write_llama_gguf


class FakeLlamaServer:
    def __init__(self, model_path: str, adapters=(), *, scales=None, slot_save_path: bool = True,
                 slots_endpoint: bool = True, lora_endpoint: bool = True, n_slots: int = 1):
        self.model_path = str(model_path)
        self.adapters = [{"id": i, "path": str(p), "scale": float((scales or {}).get(i, 0.0)),
                          "task_name": "", "prompt_prefix": ""} for i, p in enumerate(adapters)]
        self.slot_save_path = slot_save_path
        self.slots_endpoint = slots_endpoint
        self.lora_endpoint = lora_endpoint
        self.slot_tokens = {i: 5 for i in range(n_slots)}   # cached prompt tokens per slot
        self.requests: list[tuple[str, str, object]] = []
        self.fail_post: tuple[int, str] | None = None        # (status, message) for POST /lora-adapters
        self.ignore_post = False                             # answer success but change nothing
        self.raw_reply: bytes | None = None                  # answer every request with these bytes
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def posted_scales(self) -> list:
        return [body for method, path, body in self.requests if method == "POST" and path == "/lora-adapters"]

    def erased(self) -> list[int]:
        return [int(path.split("/")[2].split("?")[0]) for method, path, _ in self.requests
                if method == "POST" and path.startswith("/slots/")]

    # -- the endpoints -----------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict, body):
        error = lambda code, message, kind: (code, {"error": {"code": code, "message": message, "type": kind}})
        if path == "/lora-adapters" and not self.lora_endpoint:
            return error(404, "File Not Found", "not_found_error")
        if (method, path) == ("GET", "/lora-adapters"):
            return 200, self.adapters
        if (method, path) == ("POST", "/lora-adapters"):
            if self.fail_post:
                return error(self.fail_post[0], self.fail_post[1], "server_error")
            if not isinstance(body, list):
                return error(400, "Request body must be an array", "invalid_request_error")
            config = {int(e.get("id", -1)): float(e.get("scale", 0.0)) for e in body}
            if not self.ignore_post:
                for a in self.adapters:
                    a["scale"] = config.get(a["id"], 0.0)
            return 200, {"success": True}
        if (method, path) == ("GET", "/props"):
            return 200, {"model_path": self.model_path, "total_slots": len(self.slot_tokens)}
        if (method, path) == ("GET", "/slots"):
            if not self.slots_endpoint:
                return error(501, "This server does not support slots endpoint. Start it with `--slots`",
                             "not_supported_error")
            return 200, [{"id": i, "n_ctx": 64, "is_processing": False} for i in self.slot_tokens]
        if method == "POST" and path.startswith("/slots/"):
            if not self.slot_save_path:
                return error(501, "This server does not support slots action. Start it with `--slot-save-path`",
                             "not_supported_error")
            slot = int(path.split("/")[2])
            if query.get("action") != ["erase"] or slot not in self.slot_tokens:
                return error(400, "Invalid slot ID", "invalid_request_error")
            n, self.slot_tokens[slot] = self.slot_tokens[slot], 0
            return 200, {"id_slot": slot, "n_erased": n}
        return error(404, "File Not Found", "not_found_error")

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _serve(self, method: str):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                fake.requests.append((method, self.path, body))
                if fake.raw_reply is not None:
                    status, payload = 200, fake.raw_reply
                else:
                    status, reply = fake._route(method, url.path, parse_qs(url.query), body)
                    payload = json.dumps(reply).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        return Handler


# --------------------------------------------------------------------------- files

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny Llama GGUF, GGUF LoRAs a (r=4), b (r=8), c (r=4) in loras/, and a PEFT folder p."""
    d = tmp_path_factory.mktemp("llamaserver")
    base = tiny_llama()
    write_llama_gguf(base, d / "tiny.gguf")
    peft = d / "peft"
    loras = d / "loras"
    loras.mkdir()
    for name, r, seed in (("a", 4, 1), ("b", 8, 2), ("c", 4, 3)):
        make_adapter(base, peft / name, r=r, seed=seed)
        peft_to_gguf(peft / name, loras / f"{name}.gguf", base=d / "tiny.gguf")
    make_adapter(base, loras / "p", r=4, seed=4)
    return {"dir": d, "base": base, "model": d / "tiny.gguf", "loras": loras, "peft": peft}


@pytest.fixture
def server(files):
    with FakeLlamaServer(files["model"], [files["loras"] / "a.gguf", files["loras"] / "b.gguf"],
                         n_slots=2) as fake:
        yield fake


# --------------------------------------------------------------------------- tests

def test_switch_posts_every_adapters_scale_and_clears_the_prompt_cache(files, server):
    model = LlamaServerModel(server.url)
    assert model.model_path == str(files["model"])  # read from GET /props
    mgr = AdapterManager(model, files["loras"])
    assert {r.name for r in mgr.resident()} == {"a", "b"} and mgr.lora_names == []

    assert mgr.switch("a") == ["a"]
    assert server.posted_scales()[-1] == [{"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.0}]
    assert sorted(server.erased()) == [0, 1] and server.slot_tokens == {0: 0, 1: 0}
    assert mgr.driver.cache_note is None

    mgr.switch({"a": 0.5, "b": 1.5})  # ranks 4 and 8 side by side: llama-server scales each by alpha/r
    assert server.posted_scales()[-1] == [{"id": 0, "scale": 0.5}, {"id": 1, "scale": 1.5}]
    assert mgr.active == {"a": 0.5, "b": 1.5}

    n_posts = len(server.posted_scales())
    mgr.switch({"a": 0.5, "b": 1.5})  # nothing changes: no request, no cache cleared
    assert len(server.posted_scales()) == n_posts

    assert mgr.switch(None) == []
    assert server.posted_scales()[-1] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]
    assert [a["scale"] for a in server.adapters] == [0.0, 0.0]
    assert mgr.stats["adapter_loads"] == 0  # the server's adapters were there from the start


def test_adapter_not_given_at_start_up_is_explained_with_the_flags(files, server):
    mgr = AdapterManager(LlamaServerModel(server.url), files["loras"])
    mgr.switch("a")
    with pytest.raises(AdapterError, match="started without it and takes adapters only at start-up") as err:
        mgr.switch("c")
    assert f"--lora {(files['loras'] / 'c.gguf').resolve()}" in str(err.value)
    assert mgr.lora_names == ["a"] and server.adapters[0]["scale"] == 1.0  # still on the adapters it had
    status = {i.name: i.problem for i in mgr.library()}
    assert status["a"] is None and status["b"] is None
    assert "started without it" in status["c"] and "needs a GGUF LoRA" in status["p"]

    flags = mgr.startup_flags(["a", "c"], slot_save_dir=files["dir"] / "slots")
    assert shlex.split(flags) == ["--lora", str((files["loras"] / "a.gguf").resolve()),
                                  "--lora", str((files["loras"] / "c.gguf").resolve()),
                                  "--lora-init-without-apply",
                                  "--slot-save-path", str((files["dir"] / "slots").resolve())]
    with pytest.raises(AdapterError, match="splits --lora values at commas"):
        startup_flags([files["dir"] / "a,b.gguf"])


def test_peft_adapter_is_converted_and_found_on_a_server_started_with_it(files, tmp_path):
    with FakeLlamaServer(files["model"], [files["loras"] / "a.gguf"]) as first:
        mgr = AdapterManager(LlamaServerModel(first.url), files["loras"], convert_dir=tmp_path / "cache")
        flags = mgr.startup_flags(["p"])  # converts p for this model
    converted = shlex.split(flags)[1]
    assert Path(converted).parent == tmp_path / "cache" and Path(converted).is_file()
    with FakeLlamaServer(files["model"], [converted]) as fake:
        mgr = AdapterManager(LlamaServerModel(fake.url), files["loras"], convert_dir=tmp_path / "cache")
        assert mgr.fits("p") is None
        assert mgr.switch("p") == ["p"]
        assert fake.posted_scales()[-1] == [{"id": 0, "scale": 1.0}]


def test_adapters_already_on_at_start_up_are_reported_then_the_switcher_takes_over(files, tmp_path):
    from pocketpack.adapters.session import AdapterSession

    # recent llama-server builds apply every --lora at scale 1, even with --lora-init-without-apply
    with FakeLlamaServer(files["model"], [files["loras"] / "a.gguf", files["loras"] / "b.gguf"],
                         scales={0: 1.0, 1: 1.0}) as fake:
        mgr = AdapterManager(LlamaServerModel(fake.url), files["loras"])
        assert mgr.lora_names == ["a", "b"] and mgr.active == {"a": 1.0, "b": 1.0}  # the truth, as found
        mgr.switch("b")
        assert fake.posted_scales()[-1] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]

    with FakeLlamaServer(files["model"], [files["loras"] / "a.gguf", files["loras"] / "b.gguf"],
                         scales={0: 1.0, 1: 1.0}) as fake:
        session = AdapterSession([files["loras"]], tmp_path / "bindings.yaml")
        server = LlamaServerModel(fake.url)
        assert session.apply_state(server, {"character_menu": "Flint"}) == []  # the first turn: the base model
        assert [a["scale"] for a in fake.adapters] == [0.0, 0.0]
        session.bindings().bind("Flint", {"b": 0.7})
        assert session.apply_state(server, {"character_menu": "Flint"}) == ["b"]
        assert [a["scale"] for a in fake.adapters] == [0.0, 0.7]


def test_without_slot_save_path_the_switch_happens_and_says_the_cache_may_be_stale(files):
    with FakeLlamaServer(files["model"], [files["loras"] / "a.gguf"], slot_save_path=False,
                         slots_endpoint=False) as fake:
        mgr = AdapterManager(LlamaServerModel(fake.url), files["loras"])
        mgr.switch("a")
        assert fake.adapters[0]["scale"] == 1.0 and mgr.driver.cache_note == CACHE_NOTE
        asked = len([r for r in fake.requests if r[1].startswith("/slots/")])
        mgr.switch(None)
        assert len([r for r in fake.requests if r[1].startswith("/slots/")]) == asked  # not asked again


def test_server_errors_leave_the_adapters_as_they_were(files, server):
    mgr = AdapterManager(LlamaServerModel(server.url), files["loras"])
    mgr.switch("a")
    server.fail_post = (500, "out of memory")
    with pytest.raises(AdapterError, match=r"refused POST /lora-adapters \(HTTP 500: out of memory\)"):
        mgr.switch("b")
    assert mgr.lora_names == ["a"] and [a["scale"] for a in server.adapters] == [1.0, 0.0]

    server.fail_post = None
    server.ignore_post = True  # answers success, applies nothing
    with pytest.raises(AdapterError, match="did not apply the new scales"):
        mgr.switch("b")
    assert mgr.lora_names == ["a"]

    server.raw_reply = b"<html>proxy error</html>"
    with pytest.raises(AdapterError, match="not JSON"):
        LlamaServerModel(server.url, model_path=files["model"]).adapters()


def test_unreachable_or_old_server_is_one_clear_line(files):
    with FakeLlamaServer(files["model"], [files["loras"] / "a.gguf"], lora_endpoint=False) as old:
        with pytest.raises(AdapterError, match="has no /lora-adapters endpoint"):
            AdapterManager(LlamaServerModel(old.url), files["loras"])
        url = old.url
    with pytest.raises(AdapterError, match=f"llama-server at {url} is not answering"):
        AdapterManager(LlamaServerModel(url, model_path=files["model"], timeout=2), files["loras"])


# --------------------------------------------------------------------------- the extension

SCRIPT = Path(__file__).resolve().parents[1] / "extensions" / "adapter-switcher" / "script.py"


def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("adapter_switcher_script_ls", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LlamaServer:
    """Stands in for TGWUI's modules.llama_cpp_server.LlamaServer: what the extension reads
    from it is its class name, ``port`` and ``model_path``."""

    def __init__(self, port: int, model_path: str):
        self.port = port
        self.model_path = model_path


@pytest.fixture
def host(tmp_path, monkeypatch, files):
    from types import SimpleNamespace

    from pocketpack.host import shared

    loras = tmp_path / "user_data" / "loras"
    loras.mkdir(parents=True)
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(files["loras"] / name, loras / name)
    shutil.copytree(files["peft"] / "c", loras / "c")
    monkeypatch.setattr(shared, "user_data_dir", tmp_path / "user_data")
    monkeypatch.setattr(shared, "args", SimpleNamespace(lora_dir=str(loras)))
    monkeypatch.setattr(shared, "backend", None, raising=False)
    monkeypatch.setattr(shared, "model", None)
    monkeypatch.setattr(shared, "lora_names", [])
    monkeypatch.setattr(shared, "gradio", {})
    return shared


def test_extension_switches_tgwui_llama_server_and_writes_its_flags(host, files):
    script = load_script()
    loras = Path(host.args.lora_dir)
    with FakeLlamaServer(files["model"], [loras / "a.gguf"]) as fake:
        host.model = LlamaServer(fake.port, str(files["model"]))
        lib, _, _, hint = script.engine().tables()
        assert "started with a.gguf; only these can be switched" in hint
        status = {row[0]: row[-1] for row in lib}
        assert status["a"] == "loaded" and "started without it" in status["b"]  # in the server from the start
        _, _, msg = script.engine().act("switch", ["a"], "", "live")
        assert msg == "Active: a=1" and host.lora_names == ["a"]
        assert fake.posted_scales()[-1] == [{"id": 0, "scale": 1.0}]
        _, _, msg = script.engine().act("switch", ["b"], "", "live")
        assert msg.startswith("**Not done:** b: llama-server was started without it") and host.lora_names == ["a"]

        flags, note = script.engine().server_flags(["a", "b", "c"], "")  # c is PEFT: converted for the loaded model
        parts = shlex.split(flags)
        assert parts[:4] == ["--lora", str((loras / "a.gguf").resolve()), "--lora", str((loras / "b.gguf").resolve())]
        assert parts[4] == "--lora" and Path(parts[5]).is_file() and parts[5].endswith(".gguf")
        assert parts[6:] == ["--lora-init-without-apply", "--slot-save-path",
                             str((host.user_data_dir / "pocketpack" / "llama-slots").resolve())]
        assert "extra-flags" in note


def test_extension_keeps_no_reference_to_tgwuis_llama_server(host, files):
    import gc
    import weakref

    script = load_script()
    with FakeLlamaServer(files["model"], [Path(host.args.lora_dir) / "a.gguf"]) as fake:
        server = LlamaServer(fake.port, str(files["model"]))
        host.model = server
        script.engine().act("switch", ["a"], "", "live")
        first = script.engine().model()
        assert script.engine().model() is first  # one handle per server: the manager and its adapters persist
        ref = weakref.ref(server)
        host.model = server = None  # TGWUI unloads: its LlamaServer.__del__ must be able to stop the process
        gc.collect()
        assert ref() is None


def test_tab_changes_update_tgwuis_lora_menu(host, files):
    import gradio as gr

    script = load_script()
    loras = Path(host.args.lora_dir)
    with FakeLlamaServer(files["model"], [loras / "a.gguf", loras / "b.gguf"]) as fake:
        host.model = LlamaServer(fake.port, str(files["model"]))
        with gr.Blocks() as demo:
            menu = gr.Dropdown(choices=["None"], value=[], multiselect=True, label="LoRA(s)")
            host.gradio["lora_menu"] = menu
            script.ui()
        fns = demo.fns.values() if isinstance(demo.fns, dict) else demo.fns
        with_menu = [f for f in fns if any(o is menu for o in f.outputs)]
        assert len(with_menu) == 4  # switch, base model, load, unload
        switch = next(f for f in with_menu if f.fn(["a", "b"], "a=1, b=0.5", "live")[2].startswith("Active"))
        update = switch.fn(["a", "b"], "a=1, b=0.5", "live")[-1]
        assert isinstance(update, gr.Dropdown)
        assert update.value == ["a.gguf", "b.gguf"]
        assert [c[0] for c in update.choices] == ["None", "a.gguf", "b.gguf", "c"]  # TGWUI's listing of the folder
        assert host.lora_names == ["a", "b"]


# --------------------------------------------------------------------------- a real llama-server

def _llama_server_binary() -> str | None:
    path = os.environ.get("POCKETPACK_LLAMA_SERVER") or shutil.which("llama-server")
    return path if path and os.access(path, os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _server_logprobs(url: str, ids, n: int = 20) -> dict[int, float]:
    """Next-token log-probabilities (before sampling) of one greedy step, with the prompt cache on
    as TGWUI's requests have it. (n_predict 0, as TGWUI's get_logits asks, returns no
    probabilities from recent builds.)"""
    out = _post(url + "/completion", {"prompt": ids, "n_predict": 1, "temperature": 0, "n_probs": n,
                                      "stream": False, "post_sampling_probs": False, "cache_prompt": True})
    return {e["id"]: e["logprob"] for e in out["completion_probabilities"][0]["top_logprobs"]}


def _peft_logprobs(files, ids, weights=None) -> np.ndarray:
    import copy

    import torch

    from tests.helpers.tiny_adapters import logits

    if not weights:
        return torch.log_softmax(logits(files["base"], [ids])[0, -1], -1).numpy()
    mgr = AdapterManager(copy.deepcopy(files["base"]), [files["peft"]])
    mgr.switch(weights)
    return torch.log_softmax(logits(mgr.model, [ids])[0, -1], -1).numpy()


@pytest.mark.slow
@pytest.mark.skipif(_llama_server_binary() is None, reason="no llama-server binary (POCKETPACK_LLAMA_SERVER)")
def test_real_llama_server(files, tmp_path):
    """The driver against a real llama-server started as TGWUI starts it, with the adapters in
    its extra-flags: each switch gives PEFT's next-token log-probabilities, on the same prompt
    each time (so a prompt cache evaluated with the previous adapters would show)."""
    port = _free_port()
    (tmp_path / "slots").mkdir()
    extra = startup_flags([files["loras"] / "a.gguf", files["loras"] / "b.gguf"], slot_save_dir=tmp_path / "slots")
    cmd = [_llama_server_binary(), "--model", str(files["model"]), "--batch-size", "64", "--ubatch-size", "64",
           "--port", str(port), "--no-webui", "--flash-attn", "on", "--ctx-size", "128", "--threads", "1",
           "--parallel", "1", *shlex.split(extra)]
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            assert proc.poll() is None, (tmp_path / "server.log").read_text(errors="replace")[-2000:]
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        ids = [1, 5, 9, 17, 33, 65, 100, 7]
        mgr = AdapterManager(LlamaServerModel.at_port(port), files["loras"])
        on = {Path(a["path"]).stem: a["scale"] for a in LlamaServerModel.at_port(port).adapters() if a["scale"]}
        assert {r.name for r in mgr.resident()} == {"a", "b"} and mgr.active == on  # what the server applies
        for weights in (None, "a", {"a": 0.5, "b": 1.5}, None):
            mgr.switch(weights)
            got = _server_logprobs(url, ids)
            want = _peft_logprobs(files, ids, weights)
            assert max(got, key=got.get) == int(np.argmax(want))
            assert max(abs(lp - want[i]) for i, lp in got.items()) < 2e-3
        assert mgr.driver.cache_note is None
        with pytest.raises(AdapterError, match="started without it"):
            mgr.switch("c")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
