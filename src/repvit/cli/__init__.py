"""Command-line interface: one thin module per sub-command (``<name>_cmd.py`` with ``register(subparsers)``)."""
