"""What the root command hands every subcommand: where the database is, opened on demand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import typer

from ciyuan.cli.output import fail
from ciyuan.errors import CiyuanError
from ciyuan.metering.ports import Store
from ciyuan.settings import Settings, load_settings


@dataclass
class CliContext:
    db: str | None

    def settings(self, **overrides: object) -> Settings:
        return load_settings(db=self.db, **overrides)


def cli_context(ctx: typer.Context) -> CliContext:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliContext) else CliContext(db=None)


@contextmanager
def opened_store(ctx: typer.Context, *, as_json: bool) -> Iterator[Store]:
    """The store for this invocation; operating errors become a clean exit, not a traceback."""
    from ciyuan.store import open_store

    settings = cli_context(ctx).settings()
    try:
        store = open_store(settings.db, durability=settings.durability)
    except (CiyuanError, ValueError) as error:
        fail(error if isinstance(error, CiyuanError) else str(error), as_json=as_json)
    try:
        yield store
    except CiyuanError as error:
        fail(error, as_json=as_json)
    finally:
        store.close()
