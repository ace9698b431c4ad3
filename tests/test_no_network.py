"""Nothing in the pack opens a network connection except to what the user named.

Issue 11: "A bare model name reaches for a hub: `adapters train --base gemma-3-270m-q4_k_m.gguf
--plan` (a name that is not a local path) resolves huggingface.co, and the web UI's 'Check
memory' on a GGUF made ten HEAD requests to it ... add a test that fails if any code path of the
CLI, the host or an extension tries to connect anywhere but loopback."

Every command runs in a subprocess under ``tests/helpers/netguard`` (an audit hook that records
and refuses any non-loopback connect or name lookup). The environment the subprocesses get has
none of the offline switches pytest's conftest sets for itself, so the pack has to keep itself
offline, as it must for a user whose shell sets nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GUARD = REPO / "tests" / "helpers" / "netguard"
BARE = "gemma-3-270m-q4_k_m.gguf"  # the embedded model's file name, given as a name, not a path
# what conftest sets for the test process; a user's shell sets none of them
SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
            "GRADIO_ANALYTICS_ENABLED", "DO_NOT_TRACK")


def guarded_env(record: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    env["PYTHONPATH"] = os.pathsep.join([str(GUARD), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["POCKETPACK_NETGUARD_RECORD"] = str(record)
    return env


def attempts(record: Path) -> list[str]:
    return record.read_text(encoding="utf-8").splitlines() if record.exists() else []


def pocketpack(record: Path, *args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pocketpack", *args], cwd=cwd, env=guarded_env(record),
                          capture_output=True, text=True, timeout=timeout)


# several commands of one capability in one guarded process, each through pocketpack.cli.main
# with its own exit status and output: the capability starts cold under the guard once, and
# its later commands pay no second torch import and model load
_SEQUENCE = """
import contextlib, io, json, sys
from pocketpack.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    results.append([argv, code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def pocketpack_sequence(record: Path, *commands: list[str], timeout: int = 600) -> list[subprocess.CompletedProcess]:
    done = subprocess.run([sys.executable, "-c", _SEQUENCE, json.dumps(commands)], cwd=REPO, env=guarded_env(record),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return [subprocess.CompletedProcess(argv, code, out, err) for argv, code, out, err in
            json.loads(done.stdout.splitlines()[-1])]


def one_line(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("pocketpack"), result.stderr
    return lines[0]


@pytest.fixture
def record(tmp_path) -> Path:
    return tmp_path / "network-attempts.tsv"


def test_the_guard_sees_and_refuses_a_remote_connection_but_not_loopback(record, tmp_path):
    """Without this, an empty record could mean a guard that saw nothing."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = ("import socket, urllib.request\n"
                f"socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n"
                "try:\n    urllib.request.urlopen('https://huggingface.co/api/models', timeout=5)\n"
                "except OSError as exc:\n    print('refused:', exc)\n")
        result = subprocess.run([sys.executable, "-c", code], env=guarded_env(record), capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "netguard" in result.stdout
    assert [line.split("\t")[1] for line in attempts(record)] == ["huggingface.co"]


def test_importing_pocketpack_keeps_the_hub_libraries_offline(record):
    """Set once for the whole process, before anything imports huggingface_hub: whatever code
    path (ours, a library's, an extension's) hands a name to the hub gets "not cached", no lookup."""
    code = ("import pocketpack\n"
            "from huggingface_hub import hf_hub_download\n"
            "from transformers import AutoConfig\n"
            "for load in (lambda: hf_hub_download('google/gemma-3-270m', 'config.json'),\n"
            "             lambda: AutoConfig.from_pretrained('google/gemma-3-270m')):\n"
            "    try:\n        load()\n    except Exception as exc:\n        print(type(exc).__name__)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=guarded_env(record), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert attempts(record) == []


def test_a_bare_model_name_is_not_found_and_never_looked_up(record, tmp_path, default_model):
    """`adapters train --base NAME --plan` (the CLI and the web UI's "Check memory"), vram on a
    bare name, serve/chat --model NAME: one line saying the model is not here, and no lookup."""
    data = tmp_path / "notes.txt"
    data.write_text("The kettle is in the second cupboard.\nThe boat is called Gaivota.\n", encoding="utf-8")
    out = str(tmp_path / "adapter")
    for base in (BARE, "google/gemma-3-270m"):
        line = one_line(pocketpack(record, "adapters", "train", "--base", base, "--data", str(data),
                                   "--output", out, "--plan"))
        assert f"{base}: base model not found" in line
    # a real local GGUF is found, and planned on its Transformers copy (made from the file itself)
    planned = pocketpack(record, "adapters", "train", "--base", str(default_model), "--data", str(data),
                         "--output", out, "--plan")
    assert planned.returncode == 0 and planned.stdout.startswith("fits: "), planned.stderr
    # vram answers a known name from its own offline catalogue, anything else is one line; never a lookup
    assert BARE in one_line(pocketpack(record, "vram", "estimate", BARE, "--format", "fp16"))
    for name in ("google/gemma-3-270m", "no-such-org/no-such-model"):
        result = pocketpack(record, "vram", "advise", name, "--vram", "8", "--ram", "16")
        assert result.returncode == 0 or one_line(result), result.stderr
    models = tmp_path / "models"  # an empty --model-dir: the name is in neither place
    models.mkdir()
    for command in ("serve", "chat"):
        extra = ["hi"] if command == "chat" else ["--nowebui", "--api"]
        line = one_line(pocketpack(record, command, "--model", BARE, "--model-dir", str(models),
                                   "--extensions", "vram-advisor", "--user-data-dir", str(tmp_path / "ud"), *extra))
        assert "model not found" in line
    # the adapter switcher's "Check memory" button, as the web UI calls it
    code = ("from pocketpack.host.runtime import Runtime\n"
            f"rt = Runtime(root={str(REPO)!r}, user_data_dir={str(tmp_path / 'ud')!r}, extensions=['adapter-switcher'])\n"
            "script = rt.host.loaded['adapter-switcher']\n"
            f"for message, _ in script.engine().train({BARE!r}, {str(data)!r}, 'new', 8, 16, 'q_proj,v_proj', 10, 64, "
            "'nf4', True):\n    print(message)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=guarded_env(record), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{BARE}: base model not found" in result.stdout
    assert attempts(record) == []


def test_vram_on_local_files_stays_local(record, default_model):
    for args in ([str(default_model), "--format", "gguf-Q4_K_M"],
                 [str(REPO / "tests" / "data" / "vram" / "gemma-3-270m.json"), "--format", "nf4"]):
        result = pocketpack(record, "vram", "estimate", *args)
        assert result.returncode == 0, result.stderr
    result = pocketpack(record, "vram", "advise", str(default_model), "--vram", "0", "--ram", "8")
    assert result.returncode == 0, result.stderr
    assert attempts(record) == []


@pytest.mark.slow  # the embedding model
def test_memory_and_rag_stay_local(record, tmp_path):
    """Each capability starts cold in its own guarded process (memory's, then rag's); the
    commands after the first run in that process."""
    store = str(tmp_path / "memory")
    added, recalled, bare = pocketpack_sequence(
        record,
        ["memory", "--store", store, "add", "--character", "Aria", "--role", "user", "--text", "My boat is called Gaivota."],
        ["memory", "--store", store, "recall", "--character", "Aria", "--query", "what is my boat called?", "--json"],
        # a bare name for the embedding model is not found either
        ["memory", "--store", store, "--model", "all-MiniLM-L6-v2", "recall", "--character", "Aria", "--query", "boat"])
    assert added.returncode == 0, added.stderr
    assert recalled.returncode == 0 and "Gaivota" in recalled.stdout, recalled.stderr
    assert "not found" in one_line(bare)
    doc = tmp_path / "kettle.md"
    doc.write_text("# Kitchen\n\nThe kettle is in the second cupboard, behind the tea.\n", encoding="utf-8")
    library = str(tmp_path / "library")
    ingested, answered = pocketpack_sequence(
        record,
        ["rag", "--store", library, "ingest", str(doc), "--quiet"],
        ["rag", "--store", library, "query", "where is the kettle?", "--json"])
    assert ingested.returncode == 0, ingested.stderr
    assert answered.returncode == 0 and "second cupboard" in answered.stdout, answered.stderr
    assert attempts(record) == []


@pytest.mark.slow  # loads the embedded model
def test_chat_on_the_embedded_model_stays_local(record, tmp_path, default_model):
    result = pocketpack(record, "chat", "hi", "--model", str(default_model), "--threads", "1",
                        "--max-new-tokens", "8", "--user-data-dir", str(tmp_path / "ud"))
    assert result.returncode == 0, result.stderr
    assert attempts(record) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("pocketpack serve exited:\n" + log.read_text())
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer:\n" + log.read_text())


@pytest.mark.slow  # loads the embedded model and all four extensions
def test_serve_with_all_four_extensions_stays_local(record, tmp_path, default_model):
    """Start-up (gradio's launch included), one API chat and one page load, on 127.0.0.1."""
    port, api_port = _free_port(), _free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pocketpack", "serve", "--model", str(default_model), "--threads", "1",
             "--user-data-dir", str(tmp_path / "ud"), "--listen-port", str(port), "--api", "--api-port", str(api_port),
             "--extensions", "memory", "rag-enhancer", "adapter-switcher", "vram-advisor"],
            cwd=REPO, env=guarded_env(record), stdout=out, stderr=subprocess.STDOUT)
    try:
        page_url = f"http://127.0.0.1:{port}/"
        _wait_for(page_url, process, log)
        _wait_for(f"http://127.0.0.1:{api_port}/v1/models", process, log)
        with urllib.request.urlopen(page_url, timeout=60) as response:
            page = response.read().decode("utf-8", "replace")
        assert "Pocket Pack" in page
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v1/chat/completions", method="POST",
            data=json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi."}]}],
                             "max_tokens": 8}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            reply = json.load(response)
        assert reply["choices"][0]["message"]["role"] == "assistant"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    assert attempts(record) == [], log.read_text()[-3000:]
