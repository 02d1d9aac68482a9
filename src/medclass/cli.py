"""The ``medclass`` command line: ``models``, ``predict``, ``info``, ``version``."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from medclass import __version__
from medclass.errors import MedclassError
from medclass.models import get_spec, list_models

app = typer.Typer(add_completion=False, help="medclass: medical image classification pipeline")


@app.command()
def models() -> None:
    """List the registered backbones (any timm model also works as timm/<name>)."""
    typer.echo(f"{'name':20s} {'family':16s} {'size':>4s} {'min':>4s} {'lr_mult':>7s} scheduler")
    for name in list_models():
        s = get_spec(name)
        typer.echo(f"{name:20s} {s.family:16s} {s.default_size:4d} {s.min_size:4d} "
                   f"{s.lr_mult:7.2f} {s.scheduler}")
    typer.echo("timm/<name>          any timm model, e.g. timm/resnet18 (defaults from timm)")


class Ensemble(str, Enum):
    """How several models are combined."""

    mean = "mean"
    vote = "vote"


def _fail(exc: MedclassError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@app.command()
def predict(
    paths: Annotated[list[Path], typer.Argument(
        metavar="MODEL... INPUT...",
        help="Exported model(s) (.pt, .ts, .onnx, .tflite, ...) then image files or folders.")],
    ensemble: Annotated[Ensemble, typer.Option(
        help="Combine several models: mean probabilities or majority vote.")] = Ensemble.mean,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes listed per image.")] = 3,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="Images per forward pass.")] = 32,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="results.json or results.csv (default: print a table).")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr (terminals only).")] = True,
) -> None:
    """Classify images with exported model(s); folders are searched recursively."""
    from medclass.export import predict as pred
    from medclass.export.runtime import NotRunnable, load_runner

    try:
        model_paths, inputs = pred.split_args(paths)
        try:
            runners = [load_runner(p) for p in model_paths]
        except NotRunnable as exc:
            raise MedclassError(f"cannot run this model here: {exc}") from exc
        files = pred.discover(inputs)
        if not files:
            raise MedclassError(f"no image files found in {', '.join(map(str, inputs))}")
        rows = pred.predict(runners, files, mode=ensemble.value, top_k=top_k,
                            batch_size=batch_size, progress=progress and sys.stderr.isatty())
        if output is None:
            for r in rows:
                typer.echo(pred.summary_line(r))
        else:
            pred.write_results(output, rows, pred.results_header(runners, ensemble.value))
            typer.echo(f"wrote {len(rows)} result(s) to {output}", err=True)
        if all(r["error"] is not None for r in rows):
            raise MedclassError(f"none of the {len(rows)} input file(s) could be read")
    except MedclassError as exc:
        raise _fail(exc) from None


@app.command()
def info(model: Annotated[Path, typer.Argument(help="An exported model.")]) -> None:
    """Print an exported model's metadata (classes, preprocessing, revision...) as JSON."""
    from medclass.export.runtime import read_metadata

    try:
        kind, meta = read_metadata(model)
    except MedclassError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps({"file": str(model), "format": kind, **meta}, indent=2))


@app.command()
def version() -> None:
    """Print the medclass version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
