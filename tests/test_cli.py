"""The medclass CLI."""

from typer.testing import CliRunner

from medclass.cli import app


def test_models_lists_registry():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    assert "simple_cnn" in result.stdout and "timm/<name>" in result.stdout
