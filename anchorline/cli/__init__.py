"""Entry points: the `anchorline` command and its subcommands."""
