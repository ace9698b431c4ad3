"""The VRAM advisor by model name, before any download, and one set of numbers everywhere.

Issue 14, point 2: "Can I run Mistral 7B on an 8 GB GPU?" cannot be asked: `vram advise "Mistral 7B"`
says "no such file". Point 5: "the advisor contradicts itself: context 4096 asked, table says 32768;
the chart stacks to ~2.0 GiB while the table says 1.67 GiB RAM; a 0.75 GiB CUDA context is counted
on a machine with no GPU; time/token 10.0x is unexplained."
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from pocketpack.cli import main as pocketpack_main
from pocketpack.vram.catalogue import Match, entries, info_for, lookup, resolve_model
from pocketpack.vram.estimate import estimate
from pocketpack.vram.inspect import inspect_model
from pocketpack.vram.report import CUSTOM_MACHINE, tier_label

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "vram"
SCRIPT = REPO / "extensions" / "vram-advisor" / "script.py"


def run(capsys, *argv, stdin: bytes | None = None, monkeypatch=None):
    """`pocketpack vram ...` through the real entry point: (exit code, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    try:
        code = pocketpack_main(["vram", *argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def estimate_json(capsys, *argv, **kw) -> dict:
    code, out, err = run(capsys, "estimate", *argv, "--json", **kw)
    assert code == 0, err
    return json.loads(out)


NUMBERS = ("total_gib", "weights_gib", "kv_cache_gib", "compute_gib", "overhead_gib", "cuda_context_gib",
           "ram_gib", "file_gib", "params_b", "ctx")

# --------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("name", ["Qwen2.5 7B", "qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct",
                                  "QWEN 2.5 7B", "Qwen/Qwen2.5-7B"])
def test_a_model_resolves_by_any_of_its_names(name):
    """Display name, release name and HF repo id, whatever the case, spaces and punctuation."""
    match = lookup(name)
    assert match is not None and match.entry.name == "Qwen2.5 7B"


def test_the_cli_estimates_a_catalogue_model_by_name_and_by_repo_id(capsys):
    by_name = estimate_json(capsys, "Mistral 7B", "--format", "gguf-Q4_K_M")
    by_repo = estimate_json(capsys, "mistralai/Mistral-7B-v0.1", "--format", "gguf-Q4_K_M")
    on_disk = estimate_json(capsys, str(REPO / "bench" / "configs" / "mistral-7b-v0.1.json"), "--format", "gguf-Q4_K_M")
    assert by_name["model"] == "Mistral 7B v0.1"
    for key in NUMBERS:
        assert by_name[key] == by_repo[key] == on_disk[key], key
    assert any("mistralai/Mistral-7B-v0.1" in n for n in by_name["notes"])


@pytest.mark.parametrize("command", [["estimate", "Mistrl 7B", "--format", "fp16"], ["advise", "Mistrl 7B"]])
def test_an_unknown_name_is_one_line_with_close_matches(capsys, command):
    code, out, err = run(capsys, *command)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "no local file or catalogue entry named 'Mistrl 7B'; close matches: Mistral 7B v0.1" in err


def test_a_local_path_wins_over_the_catalogue(tmp_path, monkeypatch):
    """A folder called "Mistral 7B" on disk is that folder, not the catalogue's Mistral."""
    (tmp_path / "Mistral 7B").mkdir()
    shutil.copy(DATA / "gemma-3-270m.json", tmp_path / "Mistral 7B" / "config.json")
    monkeypatch.chdir(tmp_path)
    info = resolve_model("Mistral 7B")
    assert info.source == "config" and info.arch.hidden_size == 640
    assert resolve_model("mistral 7b").source == "catalogue"   # another name: no such folder


def test_a_hf_repo_id_never_touches_the_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the catalogue must not open a connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert resolve_model("google/gemma-3-27b-it").arch.num_layers == 62
    with pytest.raises(Exception, match="no local file or catalogue entry named 'someone/unknown-7b'"):
        resolve_model("someone/unknown-7b")


def test_every_name_of_every_entry_finds_that_entry():
    """No two models share a name, alias or repo id; every entry says where its values come from."""
    seen = {}
    for entry in entries():
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", entry.repo), entry.repo
        assert entry.card.startswith("https://huggingface.co/") and entry.verified, entry.name
        for name in (entry.name, *entry.aliases, *entry.repos):
            match = lookup(name)
            assert match is not None and match.entry is entry, (name, seen.get(name))
            seen[name] = entry.name


def test_the_catalogue_covers_the_models_people_ask_about():
    wanted = ["Llama 2 7B", "Llama 2 13B", "Llama 2 70B", "Llama 3 8B", "Llama 3.1 70B", "Llama 3.2 1B",
              "Llama 3.2 3B", "Llama 3.3 70B", "Mistral 7B", "Mistral 7B v0.3", "Mixtral 8x7B",
              *(f"Qwen2.5 {s}" for s in ("0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B")),
              *(f"Qwen3 {s}" for s in ("0.6B", "1.7B", "4B", "8B", "14B", "32B")),
              "Gemma 2 2B", "Gemma 2 9B", "Gemma 2 27B",
              *(f"Gemma 3 {s}" for s in ("270M", "1B", "4B", "12B", "27B")),
              "Phi-3 mini", "Phi-3 medium", "Phi-4",
              *(f"DeepSeek-R1-Distill-Qwen-{s}" for s in ("1.5B", "7B", "14B", "32B")),
              "DeepSeek-R1-Distill-Llama-8B", "DeepSeek-R1-Distill-Llama-70B",
              "Saiga 7B", "Saiga 13B", "IlyaGusev/saiga_7b_lora"]
    assert [w for w in wanted if lookup(w) is None] == []


# published parameter counts (model cards), in billions: the catalogue's shapes must give them
@pytest.mark.parametrize("name,billions", [("Mistral 7B", 7.24), ("Llama 3.1 8B", 8.03), ("Llama 2 70B", 69.0),
                                           ("Mixtral 8x7B", 46.7), ("Qwen2.5 7B", 7.62), ("Qwen3 8B", 8.19),
                                           ("Gemma 2 9B", 9.24), ("Phi-4", 14.7), ("Qwen2.5 0.5B", 0.49)])
def test_catalogue_shapes_give_the_published_parameter_counts(name, billions):
    assert resolve_model(name).n_params / 1e9 == pytest.approx(billions, rel=0.01)


@pytest.mark.parametrize("entry", entries(), ids=lambda e: e.name)
def test_a_catalogue_entry_estimates_as_its_config_json_on_disk(entry, tmp_path):
    """The same config.json values written to disk give the same numbers, in every loader."""
    for repo in entry.repos[:2]:
        folder = tmp_path / repo.replace("/", "--")
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(entry.config_for(repo)))
        disk, named = inspect_model(folder), info_for(Match(entry, repo))
        for fmt, kw in (("gguf-Q4_K_M", {"ctx": 4096}), ("nf4", {"ctx": 2048}), ("gguf-Q8_0", {"device": "cpu"})):
            a, b = estimate(disk, fmt, **kw).to_dict(), estimate(named, fmt, **kw).to_dict()
            for key in NUMBERS:
                assert a[key] == b[key], (repo, fmt, key)


# --------------------------------------------------------------------------- a pasted config.json


def test_a_config_json_pasted_on_stdin_is_estimated_like_the_file(capsys, monkeypatch):
    path = DATA / "meta-llama-3-8b.json"
    from_file = estimate_json(capsys, "--config-json", str(path), "--format", "nf4")
    pasted = estimate_json(capsys, "--config-json", "-", "--format", "nf4", stdin=path.read_bytes(),
                           monkeypatch=monkeypatch)
    for key in NUMBERS:
        assert pasted[key] == from_file[key], key


@pytest.mark.parametrize("text,message", [
    (b'{"model_type": "llama", "hidden_size": NaN}', "NaN is not a number JSON allows"),
    (b"[" * 5000 + b"]" * 5000, "nested more than"),
    (b'["not", "an", "object"]', "expected a JSON object"),
    (b'{"model_type": "llama"}', "cannot size the model"),
])
def test_a_bad_pasted_config_is_one_line(capsys, monkeypatch, text, message):
    """The same bounded JSON reader as files on disk: NaN, deep nesting, wrong shape."""
    code, out, err = run(capsys, "estimate", "--config-json", "-", "--format", "fp16", stdin=text,
                         monkeypatch=monkeypatch)
    assert code == 2 and out == "" and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def load_script():
    spec = importlib.util.spec_from_file_location("vram_advisor_catalogue_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tab_takes_a_pasted_config_json():
    script = load_script()
    pasted = (DATA / "mistral-7b-v0.1.json").read_text()
    chart_pasted, _, text_pasted = script.engine().analyse("", pasted, 4096, tier_label("gpu-8gb"), 0, 0)
    chart_named, _, text_named = script.engine().analyse("Mistral 7B", "", 4096, tier_label("gpu-8gb"), 0, 0)
    assert chart_pasted.equals(chart_named)
    assert table(text_pasted) == table(text_named)
    _, _, error = script.engine().analyse("", '{"hidden_size": 1e400}', 4096, tier_label("gpu-8gb"), 0, 0)
    assert error.startswith("**Cannot estimate:**") and "out of range" in error


# --------------------------------------------------------------------------- one set of numbers


def table(markdown: str) -> dict[str, dict[str, str]]:
    """The tab's table as {format: {column: cell}}."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(head, (c.strip() for c in line.strip("|").split("|"))))
        rows[cells["format"]] = cells
    return rows


def chart_totals(chart) -> dict[str, float]:
    return {k: round(v, 2) for k, v in chart["value"].groupby("format")["GiB"].sum().items()}


@pytest.mark.parametrize("machine,column", [(tier_label("gpu-8gb"), "VRAM GiB"), (tier_label("cpu-16gb"), "RAM GiB"),
                                            (CUSTOM_MACHINE, "RAM GiB")])
def test_each_bar_of_the_chart_is_its_table_row(machine, column):
    """Was: the chart stacked to ~2.0 GiB (VRAM parts) while the table said 1.67 GiB RAM."""
    chart, text = load_script()._analyse(str(DATA / "gemma-3-270m.json"), "", 4096, machine, 0, 32)
    rows, totals = table(text), chart_totals(chart)
    assert totals and set(totals) <= set(rows)
    for fmt, total in totals.items():
        assert total == pytest.approx(float(rows[fmt][column]), abs=0.011), fmt


@pytest.mark.parametrize("machine", [tier_label("cpu-16gb"), CUSTOM_MACHINE])
def test_no_cuda_context_without_a_gpu(machine):
    """Was: a 0.75 GiB "CUDA context" counted on a machine with no GPU."""
    chart, text = load_script()._analyse("Llama 3.2 1B", "", 4096, machine, 0, 16)
    parts = set(chart["value"]["part"])
    assert parts and not any("CUDA" in p for p in parts)
    assert "no CUDA context is counted" in text
    assert {row["VRAM GiB"] for row in table(text).values()} == {"0.00"}


def test_the_cli_estimate_without_a_gpu_has_no_cuda_context(capsys):
    code, out, _ = run(capsys, "estimate", "Mistral 7B", "--format", "gguf-Q4_K_M", "--cpu")
    assert code == 0 and "cuda context" not in out and "VRAM" not in out and "RAM total" in out
    data = estimate_json(capsys, "Mistral 7B", "--format", "gguf-Q4_K_M", "--cpu")
    assert data["cuda_context_gib"] == 0 and data["total_gib"] == 0
    assert sum(data["ram_parts_gib"].values()) == pytest.approx(data["ram_gib"], abs=0.002)


@pytest.mark.parametrize("machine", [tier_label("gpu-8gb"), tier_label("cpu-16gb")])
def test_the_context_asked_is_the_context_shown(machine):
    """Was: context 4096 asked, the table said 32768."""
    _, text = load_script()._analyse(str(DATA / "gemma-3-270m.json"), "", 4096, machine, 0, 0)
    assert "4096 tokens of context" in text
    assert {row["ctx"] for row in table(text).values() if row["runs"] != "needs a GPU"} == {"4096"}


def test_the_cli_advise_uses_the_context_asked(capsys):
    code, out, _ = run(capsys, "advise", "Mistral 7B", "--tier", "gpu-8gb", "--ctx", "4096", "--json")
    data = json.loads(out)
    assert code == 0 and data["ctx"] == 4096 and {o["ctx"] for o in data["options"]} == {4096}


def test_time_per_token_is_explained_where_it_is_shown(capsys):
    """Was: "time/token 10.0x" with no word on what it is relative to."""
    _, text = load_script()._analyse("Mistral 7B", "", 4096, tier_label("gpu-8gb"), 0, 0)
    assert "time/token vs 16-bit" in text and "relative to the 16-bit (fp16/bf16) model" in text
    rows = table(text)
    assert rows["gguf-Q4_K_M"]["time/token vs 16-bit"] < rows["gguf-Q8_0"]["time/token vs 16-bit"]
    code, out, _ = run(capsys, "advise", "Mistral 7B", "--tier", "gpu-8gb", "--ctx", "4096")
    assert code == 0 and "relative to the 16-bit (fp16/bf16) model" in out


def test_the_model_tab_and_serve_help_give_the_same_default_context(tmp_path, default_model):
    """Was: the Model tab showed ctx 2048 (and loaded with it) while `serve --help` said
    "the model's, at most 8192"; now the form's default asks for what an unset --ctx-size asks."""
    import argparse

    import gradio as gr

    from pocketpack.host.backends.llamacpp import DEFAULT_CTX
    from pocketpack.host.flags import add_model_flags
    from pocketpack.host.runtime import Runtime
    from pocketpack.host.webui import build_ui, load_settings_from_form

    runtime = Runtime(root=REPO, user_data_dir=tmp_path / "user_data", extensions=[])
    demo = build_ui(runtime, tmp_path / "models", tmp_path / "characters")
    ctx_box = next(b for b in demo.blocks.values() if isinstance(b, gr.Number) and "ctx-size" in str(b.label))
    parser = add_model_flags(argparse.ArgumentParser())
    help_text = next(a.help for a in parser._actions if a.dest == "ctx_size")
    cli_default = parser.parse_args([]).ctx_size
    form = load_settings_from_form(default_model, -1, ctx_box.value, "fp16", 0, False, False, "nf4", False,
                                   "float32", False)
    assert form.ctx_size == cli_default is None
    assert f"at most {DEFAULT_CTX}" in help_text and f"at most {DEFAULT_CTX}" in ctx_box.label
