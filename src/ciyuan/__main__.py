"""``python -m ciyuan``: the same command as the ``ciyuan`` script."""

from ciyuan.cli import main

main()
