"""Versioned schema migrations: numbered SQL files per dialect, applied in order, recorded.

Each migration and its row in ``ciyuan_migrations`` commit together or not at all, so a crash
mid-migration leaves the previous version intact. Files are never edited once released: a
change is a new file.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_for(dialect: str) -> list[Migration]:
    assert dialect in ("sqlite", "postgres")
    folder = resources.files("ciyuan.store").joinpath("sql", dialect)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda migration: migration.version)
    assert [m.version for m in found] == list(range(1, len(found) + 1)), (
        "migration numbers have a gap"
    )
    return found
