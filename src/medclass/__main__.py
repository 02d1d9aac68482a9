"""``python -m medclass`` runs the CLI."""

from medclass.cli import app

app()
