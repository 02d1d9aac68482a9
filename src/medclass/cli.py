"""The ``medclass`` command line: ``models``, ``predict``, ``info``, ``recipe``, ``debug``,
``data``, ``version``."""

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


class TTA(str, Enum):
    """Test-time augmentation views."""

    none = "none"
    flip = "flip"
    flip_rot = "flip_rot"


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
    tta: Annotated[TTA, typer.Option(
        help="Test-time augmentation: mean logits over the image and its mirror (flip), "
             "also rotated ±8° (flip_rot).")] = TTA.none,
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
                            batch_size=batch_size, progress=progress and sys.stderr.isatty(),
                            tta=tta.value)
        if output is None:
            for r in rows:
                typer.echo(pred.summary_line(r))
        else:
            pred.write_results(output, rows,
                               pred.results_header(runners, ensemble.value, tta.value))
            typer.echo(f"wrote {len(rows)} result(s) to {output}", err=True)
        if all(r["error"] is not None for r in rows):
            raise MedclassError(f"none of the {len(rows)} input file(s) could be read")
    except MedclassError as exc:
        raise _fail(exc) from None


@app.command()
def info(model: Annotated[Path, typer.Argument(help="An exported model.")]) -> None:
    """Print an exported model's metadata (classes, preprocessing, revision...) as JSON.

    In an export folder, ``export_status`` gives every format's status (``ok``, ``built: …``,
    ``skipped: …``, ``failed: …``) as the export stage recorded it.
    """
    from medclass.export.metadata import STATUS_KEY, bundle_statuses
    from medclass.export.runtime import read_metadata

    try:
        kind, meta = read_metadata(model)
        statuses = bundle_statuses(model)
    except MedclassError as exc:
        raise _fail(exc) from None
    doc = {"file": str(model), "format": kind, **meta}
    if statuses is not None:
        doc[STATUS_KEY] = statuses
    typer.echo(json.dumps(doc, indent=2))


recipe_app = typer.Typer(help="Recipes in configs/: list them, print as dvc -S args, apply.")
app.add_typer(recipe_app, name="recipe")


@recipe_app.command("list")
def recipe_list() -> None:
    """List the recipes in configs/ with their descriptions."""
    from medclass import recipes

    for path in recipes.list_recipes():
        typer.echo(f"{path.stem:20s} {recipes.describe(path)}")


@recipe_app.command("args")
def recipe_args(name: Annotated[str, typer.Argument(help="Recipe name or .yaml path.")]) -> None:
    """Print the recipe as -S overrides: dvc exp run $(medclass recipe args NAME)."""
    from medclass import recipes

    try:
        args = recipes.set_args(recipes.load_recipe(recipes.find_recipe(name)))
    except MedclassError as exc:
        raise _fail(exc) from None
    typer.echo(" ".join(f"-S {a}" for a in args))


@recipe_app.command("apply")
def recipe_apply(
    name: Annotated[str, typer.Argument(help="Recipe name or .yaml path.")],
    params: Annotated[Path, typer.Option(help="The params file to change.")] = Path("params.yaml"),
) -> None:
    """Write the recipe's settings into params.yaml (validated; comments kept)."""
    from medclass import recipes

    try:
        if not params.is_file():
            raise MedclassError(f"{params} not found; run from the repository root")
        changed = recipes.apply(recipes.load_recipe(recipes.find_recipe(name)), params)
    except MedclassError as exc:
        raise _fail(exc) from None
    typer.echo(f"{params}: set {len(changed)} key(s) from recipe {name}", err=True)


@recipe_app.command("plan")
def recipe_plan(
    name: Annotated[str, typer.Argument(help="Recipe name or .yaml path.")],
    budget_min: Annotated[float, typer.Option(help="Minutes for the whole `dvc repro`.")] = 30.0,
    slowdown: Annotated[float, typer.Option(
        help="Times the time predicted here: how much slower the slowest machine the plan "
             "must fit is (1: this one).")] = 1.0,
    params: Annotated[Path, typer.Option(help="The params file to change.")] = Path("params.yaml"),
) -> None:
    """Apply a recipe, measure this machine, write epochs/folds that fit the budget."""
    from medclass.plan import make_plan

    try:
        if not params.is_file():
            raise MedclassError(f"{params} not found; run from the repository root")
        plan, group = make_plan(name, budget_min, slowdown, params)
    except MedclassError as exc:
        raise _fail(exc) from None
    m = group["measured"]
    typer.echo(f"measured on {m['machine']}: {m['n_train']} train / {m['n_val']} val / "
               f"{m['n_test']} test images, train {m['train_img_s']:.0f} img/s, "
               f"eval {m['eval_img_s']:.0f} img/s")
    typer.echo(f"plan for {budget_min:g} min (x{slowdown:g}): {plan.epochs} epochs, "
               f"{plan.folds}-fold ensemble; predicted {m['predicted_min']:.1f} min")
    typer.echo(f"{params}: set finetune.epochs/patience, kfold.folds/epochs/patience, plan.*",
               err=True)


debug_app = typer.Typer(help="Debug tools: overfit one batch, LR schedule, augmented samples, "
                        "throughput (read params.yaml and data/split in the current folder).")
app.add_typer(debug_app, name="debug")

_ModelArg = Annotated[str, typer.Argument(help="Backbone name (see `medclass models`).")]
_KwargsOpt = Annotated[str | None, typer.Option(
    "--model-kwargs", help="Constructor options as JSON (default: train.model_kwargs when MODEL "
    "is params' model, else none).")]


@debug_app.command("overfit-batch")
def debug_overfit_batch(
    model: _ModelArg,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    steps: Annotated[int, typer.Option(min=1, help="Most training steps.")] = 200,
    lr: Annotated[float, typer.Option(min=0.0, help="AdamW LR (head and backbone).")] = 1e-3,
    target: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Train accuracy on the batch that counts as overfit.")] = 1.0,
    log_every: Annotated[int, typer.Option("--log-every", min=1)] = 10,
    model_kwargs: _KwargsOpt = None,
) -> None:
    """Train MODEL on one training batch (no augmentation/smoothing/dropout) until it fits.

    Exit 0 when the train accuracy on the batch reaches --target; else print the loss curve
    and exit 1 (a model, loss or data bug if a tiny batch cannot be memorised).
    """
    from medclass import debug
    from medclass.config import load_params

    try:
        res = debug.overfit_batch(
            load_params(), model, batch_size=batch_size, steps=steps, lr=lr, target=target,
            log_every=log_every, model_kwargs=debug.parse_model_kwargs(model_kwargs),
            echo=typer.echo)
    except MedclassError as exc:
        raise _fail(exc) from None
    if res.reached_at is not None:
        typer.echo(f"ok: train accuracy {res.accs[-1]:.3f} >= {target:g} at step "
                   f"{res.reached_at} (loss {res.losses[-1]:.4f})")
        return
    typer.echo(f"loss curve: {debug.curve(res.losses)}")
    typer.echo(f"error: overfit-batch {model}: train accuracy {max(res.accs):.3f} < {target:g} "
               f"after {steps} step(s) on {res.batch_size} images; raise --steps or --lr, "
               "else suspect the model, loss or labels", err=True)
    raise typer.Exit(1)


@debug_app.command("lr-schedule")
def debug_lr_schedule(
    out: Annotated[Path, typer.Option(help="PNG to write (a .csv is written beside it).")] = Path(
        "plots/debug/lr_schedule.png"),
) -> None:
    """Plot the per-step LR of every param group in the head and finetune phases, as configured."""
    from medclass import debug
    from medclass.config import load_params

    try:
        params = load_params()
        schedules = debug.phase_schedules(params, debug.split_data())
        csv_path = debug.write_lr_schedule(schedules, out)
    except MedclassError as exc:
        raise _fail(exc) from None
    for line in debug.schedule_summary(schedules):
        typer.echo(line)
    typer.echo(f"wrote {out} and {csv_path}", err=True)


@debug_app.command("dataset")
def debug_dataset(
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("plots/debug/dataset.png"),
    per_class: Annotated[int, typer.Option("--per-class", min=1, max=64)] = 8,
) -> None:
    """A PNG grid of augmented training samples, one row per class (configured augment, seed)."""
    from medclass import debug
    from medclass.config import load_params

    try:
        width, height = debug.dataset_grid(load_params(), out, per_class=per_class)
    except MedclassError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {out} ({width}x{height} px)", err=True)


@debug_app.command("throughput")
def debug_throughput(
    model: _ModelArg,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    iters: Annotated[int, typer.Option(min=1, help="Timed iterations.")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed iterations first.")] = 2,
    image_size: Annotated[int | None, typer.Option(
        "--image-size", min=8, help="Default: data.image_size.")] = None,
    channels: Annotated[int | None, typer.Option(
        min=1, max=3, help="Default: the split's, else data.channels (auto: 3).")] = None,
    model_kwargs: _KwargsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Images/s of MODEL's forward (eval, no grad) and train step on the configured device."""
    from medclass import debug
    from medclass.config import load_params

    try:
        result = debug.throughput(
            load_params(), model, batch_size=batch_size, iters=iters, warmup=warmup,
            image_size=image_size, channels=channels,
            model_kwargs=debug.parse_model_kwargs(model_kwargs))
    except MedclassError as exc:
        raise _fail(exc) from None
    lines = [json.dumps(result, indent=2)] if as_json else debug.throughput_table(result)
    for line in lines:
        typer.echo(line)


data_app = typer.Typer(help="Check your own image data before `dvc repro`.")
app.add_typer(data_app, name="data")


class DataLayout(str, Enum):
    """``data.layout``: how a folder tree is read."""

    auto = "auto"
    classes = "classes"
    splits = "splits"


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="Your image folder (data.path).")],
    layout: Annotated[DataLayout, typer.Option(
        help="data.layout: class folders, train/val/test split folders, or auto.")
    ] = DataLayout.auto,
    decode: Annotated[bool, typer.Option(
        help="Decode every file as prepare does (slower); default: a header check.")] = False,
    csv: Annotated[str | None, typer.Option(
        "--csv", help="Label CSV (data.source: csv), relative to PATH or absolute.")] = None,
    image_column: Annotated[str, typer.Option(help="CSV column naming the image.")] = "image",
    label_column: Annotated[str, typer.Option(help="CSV column holding the label.")] = "label",
) -> None:
    """Preflight before `dvc repro`: layout, class counts, broken links and files, patient ids.

    Exit 0 when the pipeline would run on PATH; 2 (last line: the problem and its fix) when
    something would stop it.
    """
    from rich.console import Console

    from medclass.data import preflight, preflight_view

    if csv is None:
        report = preflight.check_folder(path, layout.value, decode)
    else:
        report = preflight.check_csv(path, csv, image_column, label_column, decode)
    Console(highlight=False).print(preflight_view.render(report))
    code, line = preflight_view.summary(report)
    typer.echo(line, err=code != 0)
    if code:
        raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print the medclass version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
