"""The one base every user-facing Pocket Pack error derives from.

Its message is a single line meant for the person at the keyboard (what was wrong and what to
do), so the CLI prints ``pocketpack: <message>`` and exits with ``exit_code``; the extension
scripts catch it to show the line instead of breaking a chat. Subclasses keep their builtin
base (``ValueError``, ``RuntimeError`` …) so existing ``except`` clauses still hold.
"""

from __future__ import annotations


class PocketPackError(Exception):
    """A failure the user can act on: one line, no traceback, exit status 2."""

    exit_code = 2

    def one_line(self) -> str:
        """The message on one line (a multi-line cause is joined with ' | ')."""
        text = str(self) or type(self).__name__
        return " | ".join(part.strip() for part in text.splitlines() if part.strip())


class UsageError(PocketPackError, ValueError):
    """What a command was asked cannot be done as given: arguments argparse cannot check alone,
    a file named on the command line that cannot be read, a character or extension that is not there."""
