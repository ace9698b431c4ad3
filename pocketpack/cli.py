"""`pocketpack ...`: one command, one sub-command per capability.

Each capability keeps its own argument parsing in ``pocketpack/<capability>/cli.py``
with a ``register(subparsers)`` function that sets ``func`` on its parser; this file only
collects them, so that capabilities never edit each other's code.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
import warnings

from pocketpack.errors import PocketPackError

# sub-command modules, in the order `pocketpack --help` lists them
COMMAND_MODULES = (
    "pocketpack.host.cli",       # serve, chat, model
    "pocketpack.vram.cli",       # vram
    "pocketpack.presets.cli",    # presets
    "pocketpack.memory.cli",     # memory
    "pocketpack.rag.cli",        # rag
    "pocketpack.retrieval.cli",  # store (copy between SQLite and PostgreSQL)
    "pocketpack.adapters.cli",   # adapters
)


# Known start-up chatter of third-party libraries, silenced for command-line runs only (never
# on import, so programs using pocketpack as a library keep their own logging): lines printed
# before every command that loads the embedding model, none of which the user can act on.
_NOISY_LOGGERS = (
    "torchao",                          # "Failed to load …/torchao/_C_mxfp8….so" (optional kernels)
    "torch.utils._pytree",              # "W… _pytree.py:630] <enum …> is an Enum subclass …" (deprecation)
    "bitsandbytes",                     # "Failed to load CPU gemm_4bit_forward from kernels-community …"
)


def quiet_third_party() -> None:
    """Silence the known third-party start-up messages for this CLI process: those loggers
    drop to ERROR (their real errors still show), transformers' "Loading weights" progress
    bar is off (huggingface_hub's switch, read when transformers is imported; a value the user
    set wins), and urllib3's warning that SOCKS proxies need PySocks is ignored. Our own
    messages use other loggers and plain stderr lines, so they are untouched."""
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:  # the user's explicit level wins
            logger.setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", message=r"SOCKS support in urllib3", module=r"urllib3")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pocketpack",
        description="Run and personalise a local LLM on the hardware you have.",
    )
    from pocketpack import __version__

    parser.add_argument("--version", action="version", version=f"pocketpack {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            found = importlib.util.find_spec(module_name) is not None
        except ModuleNotFoundError:  # the capability's package itself is absent
            found = False
        if not found:
            continue
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_third_party()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PocketPackError as exc:  # any capability's user-facing error: one line, no traceback
        print(f"pocketpack: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
