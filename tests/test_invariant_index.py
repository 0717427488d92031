"""docs/invariants.md names, for each of the design's eight invariants, the tests that prove it.

This keeps that index honest without running pytest's collection: every invariant is present
under its own title with at least one test, and every node id listed resolves to a test function
(or ``Class::method``) actually defined in its module, found by parsing the module with ``ast``.
A renamed or deleted test therefore fails here instead of leaving the index quietly wrong.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path
from typing import Final

import pytest

REPO: Final = Path(__file__).resolve().parents[1]
INDEX: Final = REPO / "docs" / "invariants.md"

TITLES: Final = {
    1: "Money is never a float.",
    2: "Double entry",
    3: "No overdraft",
    4: "Exactly once",
    5: "Crash safety",
    6: "Tamper evidence",
    7: "Secrets",
    8: "Bad input gets a clear 4xx error",
}
"""How each invariant's heading starts: the opening words of its text in the design."""

HEADING: Final = re.compile(r"^## (\d+)\. (.+)$")
BULLET: Final = re.compile(r"^- `([^`]+)` — \S")
COMMENT: Final = re.compile(r"<!--.*?-->", re.DOTALL)


def parse_index(text: str) -> dict[int, tuple[str, list[str]]]:
    """``{number: (title, [node id, ...])}``; whatever sits inside HTML comments is ignored."""
    found: dict[int, tuple[str, list[str]]] = {}
    current: int | None = None
    for line in COMMENT.sub("", text).splitlines():
        if heading := HEADING.match(line):
            current = int(heading.group(1))
            assert current not in found, f"invariant {current} appears twice"
            found[current] = (heading.group(2), [])
        elif line.startswith("- `"):
            bullet = BULLET.match(line)
            assert bullet, f"a test bullet needs `node id` — what it does: {line!r}"
            assert current is not None, f"a test listed before any invariant: {line!r}"
            found[current][1].append(bullet.group(1))
    return found


@cache
def defined_tests(module: Path) -> frozenset[str]:
    """``name`` for module-level test functions, ``Class::name`` for methods of classes."""
    tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, functions):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {
                f"{node.name}::{item.name}" for item in node.body if isinstance(item, functions)
            }
    return frozenset(names)


def missing_reason(node_id: str) -> str | None:
    """Why ``node_id`` does not name a test in the tree, or None when it does."""
    if "[" in node_id:
        return "list node ids without parameters"
    path, sep, name = node_id.partition("::")
    if not sep or not path.startswith("tests/") or not path.endswith(".py"):
        return "expected tests/<path>.py::test_name or tests/<path>.py::Class::test_name"
    module = REPO / path
    if not module.is_file():
        return f"no file {path}"
    if not name.rsplit("::", 1)[-1].startswith("test"):
        return f"{name} is not a test (its name must start with 'test')"
    if name not in defined_tests(module):
        return f"{path} defines no {name}"
    return None


INDEXED: Final = parse_index(INDEX.read_text(encoding="utf-8"))


def test_every_invariant_is_indexed_with_at_least_one_test() -> None:
    assert sorted(INDEXED) == sorted(TITLES), "docs/invariants.md must list invariants 1 to 8"
    for number, start in TITLES.items():
        title, node_ids = INDEXED[number]
        assert title.startswith(start), f"invariant {number} is titled {title!r}"
        assert node_ids, f"invariant {number} ({start}) lists no test"


@pytest.mark.parametrize(
    "node_id", sorted({node_id for _, ids in INDEXED.values() for node_id in ids})
)
def test_every_listed_test_exists(node_id: str) -> None:
    assert missing_reason(node_id) is None, f"{node_id}: {missing_reason(node_id)}"


def test_the_checks_catch_what_would_rot() -> None:
    """The parser and the resolver themselves: a stale index must not pass by accident."""
    me = "tests/test_invariant_index.py"
    assert missing_reason(f"{me}::test_every_listed_test_exists") is None
    assert missing_reason(f"{me}::test_no_such_thing") == f"{me} defines no test_no_such_thing"
    assert missing_reason(f"{me}::parse_index") is not None
    assert missing_reason(f"{me}::test_every_listed_test_exists[x]") is not None
    assert missing_reason("tests/nowhere.py::test_x") == "no file tests/nowhere.py"
    assert missing_reason("test_x") is not None
    parsed = parse_index(
        "## 1. Money is never a float.\n"
        "- `tests/a.py::test_b` — does b\n"
        "<!-- integrator:\n- `tests/c.py::test_d` — hidden\n-->\n"
        "## 2. Double entry\n"
    )
    assert parsed == {
        1: ("Money is never a float.", ["tests/a.py::test_b"]),
        2: ("Double entry", []),
    }
    with pytest.raises(AssertionError):
        parse_index("## 1. A\n- `tests/a.py::test_b` no dash description\n")


class TestMethodsResolve:
    def test_a_class_method_resolves_as_class_and_name(self) -> None:
        me = "tests/test_invariant_index.py"
        assert (
            missing_reason(
                f"{me}::TestMethodsResolve::test_a_class_method_resolves_as_class_and_name"
            )
            is None
        )
        assert missing_reason(f"{me}::test_a_class_method_resolves_as_class_and_name") is not None
