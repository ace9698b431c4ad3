"""Issue 17: "One `PocketPackError` base (user-facing one-line message, exit code) caught once in
`cli.main`; scripts catch the base; the six printers gone." Every capability's command-line
failure leaves through ``pocketpack.cli.main``: exactly one ``pocketpack: ...`` line on stderr,
no traceback, and the command's documented exit status (rag keeps 1 for a failure of its data)."""

from __future__ import annotations

import pytest

from pocketpack.cli import main


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize(("argv", "status", "line"), [
    (["serve", "--gradio-auth", "nocolon"], 2, "pocketpack: --gradio-auth: expected user:password, got 'nocolon'…"),
    (["serve", "--gradio-auth-path", "/nonexistent/pocketpack-auth"], 2,
     "pocketpack: --gradio-auth-path /nonexistent/pocketpack-auth: No such file or directory"),
    (["memory", "--store", "{tmp}", "recall", "--character", "A"], 2,
     "pocketpack: recall needs --character and --query (or --queries FILE.jsonl)"),
    (["rag", "--store", "{tmp}/empty", "list"], 1,
     "pocketpack: no document store at {tmp}/empty (add documents with `ingest` first)"),
    (["rag", "--store", "{tmp}", "query"], 2, "pocketpack: give a QUESTION or --queries FILE.jsonl (one of them)"),
    (["adapters", "list", "{tmp}/none"], 2, "pocketpack: {tmp}/none: no such folder"),
    (["vram", "advise", "--tier", "cpu-8gb", "--vram", "8"], 2,
     "pocketpack: name a model: a folder, config.json or .gguf, a catalogue name ('Mistral 7B'), "
     "or --config-json FILE|-"),
    (["presets", "show", "gpu-8gb", "--source", "ggml"], 2,
     "pocketpack: unknown source 'ggml'; sources: gguf, gptq, hf, awq, exl2"),
])
def test_a_command_error_is_one_line_from_cli_main(argv, status, line, tmp_path, capsys):
    """The status comes back from main() (no SystemExit from a capability's own printer) and the
    line carries the one ``pocketpack:`` prefix, whatever the capability."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == status
    assert one_error_line(capsys) == line.replace("{tmp}", str(tmp_path))


def test_vram_run_alone_prints_its_error_as_one_line_too():
    """``python -m pocketpack.vram.cli`` (the advisor run alone) goes through the same catch."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pocketpack.vram.cli", "estimate", "MISSING", "--format", "fp16"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "pocketpack: no local file or catalogue entry named 'MISSING'; `pocketpack vram models` lists the catalogue"]
