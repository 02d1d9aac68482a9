"""The medclass CLI."""

from typer.testing import CliRunner

from medclass.cli import app


def test_models_lists_registry():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    assert "simple_cnn" in result.stdout and "timm/<name>" in result.stdout


def test_models_prints_each_backbones_defaults():
    result = CliRunner().invoke(app, ["models"])
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()}
    assert rows["swin"][2:] == ["224", "16", "0.50", "cosine"]
    assert rows["small_resnet"][2:] == ["32", "16", "1.00", "onecycle"]
