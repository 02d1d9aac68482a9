"""verify stage helpers: model selection and the Markdown report."""

from medclass.config import parse_params
from medclass.models import list_models
from medclass.stages.verify import markdown_table, models_to_check


def test_selected_model_always_first_and_included():
    p = parse_params({"model": "simple_cnn_tiny", "verify": {"models": ["simple_cnn"]}})
    assert models_to_check(p) == ["simple_cnn_tiny", "simple_cnn"]
    p = parse_params({"model": "timm/resnet18", "verify": {"models": "all"}})
    names = models_to_check(p)
    assert names[0] == "timm/resnet18" and set(list_models()) <= set(names)
    assert models_to_check(parse_params({"verify": {"models": "selected"}})) == ["simple_cnn"]


def test_markdown_table_marks_failures():
    table = markdown_table([{"model": "a", "ok": True, "params_m": 1.0},
                            {"model": "b", "ok": False, "error": "boom"}])
    assert "| a | yes | 1.0 |" in table and "| b | NO |" in table and "boom" in table
