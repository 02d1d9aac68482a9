"""The ``medclass`` command line (prediction commands arrive with the export issue)."""

from __future__ import annotations

import typer

from medclass import __version__
from medclass.models import get_spec, list_models

app = typer.Typer(add_completion=False, help="medclass: medical image classification pipeline")


@app.command()
def models() -> None:
    """List the registered backbones (any timm model also works as timm/<name>)."""
    for name in list_models():
        spec = get_spec(name)
        typer.echo(f"{name:24s} family={spec.family:8s} min_size={spec.min_size}")
    typer.echo("timm/<name>              any timm model, e.g. timm/resnet18")


@app.command()
def version() -> None:
    """Print the medclass version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
