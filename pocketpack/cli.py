"""`pocketpack ...`: one command, one sub-command per capability.

Each capability keeps its own argument parsing in ``pocketpack/<capability>/cli.py``
with a ``register(subparsers)`` function that sets ``func`` on its parser; this file only
collects them, so that capabilities never edit each other's code.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# sub-command modules, in the order `pocketpack --help` lists them
COMMAND_MODULES = (
    "pocketpack.host.cli",       # serve, chat, model
    "pocketpack.vram.cli",       # vram
    "pocketpack.presets.cli",    # presets
    "pocketpack.memory.cli",     # memory
    "pocketpack.rag.cli",        # rag
    "pocketpack.adapters.cli",   # adapters
)


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
