"""Subcommands of the ``aejets`` command line, one module each."""
