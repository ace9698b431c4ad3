"""Shared by the benches that time searches over stores built earlier."""

from __future__ import annotations

from pathlib import Path


def warm_page_cache(directory: Path) -> None:
    """Read the store's files once, as a few minutes of use would: otherwise the first queries
    after building other stores measure the disk, not the search."""
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                while handle.read(1 << 24):
                    pass
