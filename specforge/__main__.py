"""`python -m specforge`: the same command as the `specforge` console script."""

from specforge.cli import entry

entry()
