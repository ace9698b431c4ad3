"""`pocketpack ARGS` run inside the test process: what `python -m pocketpack ARGS` does
(``sys.exit(main(ARGS))``), without paying a fresh interpreter's torch/transformers import and
embedding-model load for each command. Tests whose point is the process boundary itself (a
kill, start-up noise on stderr, a network guard) keep a real subprocess."""

from __future__ import annotations

import subprocess


def run_main(capsys, *args) -> subprocess.CompletedProcess:
    """Exit status, stdout and stderr of one command, as ``subprocess.run`` would return them;
    argparse's usage errors (SystemExit) give their status too."""
    from pocketpack.cli import main

    argv = [str(a) for a in args]
    capsys.readouterr()  # only this command's output
    try:
        code = main(argv)
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["pocketpack", *argv], code, out, err)
