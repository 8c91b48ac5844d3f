"""specforge: compile a declarative YAML experiment spec into reviewable train.py / infer.py."""

__version__ = "0.1.0"
