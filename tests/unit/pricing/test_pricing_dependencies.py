"""The pricing package is pure domain: it imports only the stdlib and ciyuan.errors / itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import ciyuan.pricing

PACKAGE = Path(ciyuan.pricing.__file__).parent


def test_pricing_imports_only_the_stdlib_and_ciyuan_errors() -> None:
    for module in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                allowed = (
                    top in sys.stdlib_module_names
                    or name == "ciyuan.errors"
                    or name.startswith("ciyuan.pricing")
                )
                assert allowed, f"{module.name} imports {name}"
