"""The `infergraph` command: a thin shell over the library (`main`), and the checks it runs."""

from graph_controller.cli.main import main

__all__ = ["main"]
