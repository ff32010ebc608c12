"""The ``runlog`` command line: the application drawn on the library (the only code that
imports rich or typer)."""

from runlog_store.cli.app import app, main

__all__ = ["app", "main"]
