"""The pricing package's operating error: a price, catalog or import file that is not valid.

It is an :class:`~ciyuan.errors.InvalidRequest` (code ``invalid_request``) so that the CLI and
the admin API report it like any other bad input. The message always names where the problem
is: the file, the entry or line, and the field.
"""

from __future__ import annotations

from ciyuan.errors import InvalidRequest


class PriceError(InvalidRequest):
    """A price, a catalog entry or an import file that cannot be accepted as it is."""
