from specforge.cli import entry

entry()
