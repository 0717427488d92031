"""The dependency direction: domain packages import no web framework and no database driver,
and adapters do not import each other. Checked on the source, with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ciyuan"
DOMAIN = ("tokens", "pricing", "ledger")
FORBIDDEN_IN_DOMAIN = (
    "starlette", "uvicorn", "aiohttp", "httpx", "sqlite3", "psycopg", "psycopg_pool", "redis",
    "pydantic", "typer", "rich", "ciyuan.gateway", "ciyuan.store", "ciyuan.cli", "ciyuan.metering",
    "ciyuan.bootstrap", "ciyuan.admin",
)  # fmt: skip
FORBIDDEN_IN_METERING = (
    "starlette",
    "aiohttp",
    "httpx",
    "sqlite3",
    "psycopg",
    "redis",
    "ciyuan.gateway",
    "ciyuan.store",
    "ciyuan.cli",
)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offending(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        name
        for name in imports_of(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_packages_import_no_framework_or_driver(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no modules found in {package}"
    problems = {str(f.relative_to(SRC)): offending(f, FORBIDDEN_IN_DOMAIN) for f in files}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_rate_limit_algorithm_is_pure() -> None:
    algorithm = SRC / "limits" / "algorithm.py"
    names = imports_of(algorithm)
    assert not {
        n
        for n in names
        if n.startswith("ciyuan") or n.split(".")[0] in {"redis", "anyio", "asyncio"}
    }
    assert offending(algorithm, FORBIDDEN_IN_DOMAIN) == []


def test_metering_depends_only_on_the_domain_and_its_ports() -> None:
    problems = {
        str(f.relative_to(SRC)): offending(f, FORBIDDEN_IN_METERING)
        for f in (SRC / "metering").rglob("*.py")
    }
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_store_does_not_import_the_gateway_and_vice_versa() -> None:
    store = {
        str(f.relative_to(SRC)): offending(f, ("ciyuan.gateway", "ciyuan.cli"))
        for f in (SRC / "store").rglob("*.py")
    }
    gateway = {
        str(f.relative_to(SRC)): offending(f, ("ciyuan.store", "ciyuan.cli", "sqlite3", "psycopg"))
        for f in (SRC / "gateway").rglob("*.py")
    }
    assert {k: v for k, v in {**store, **gateway}.items() if v} == {}


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import sqlite3\nfrom starlette.requests import Request\nimport json\n")
    assert offending(sample, FORBIDDEN_IN_DOMAIN) == ["sqlite3", "starlette.requests"]
