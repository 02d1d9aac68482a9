"""verify stage helpers: model selection, the metrics summary and the Markdown report."""

from medclass.config import parse_params
from medclass.models import list_models
from medclass.stages.verify import markdown_table, models_to_check, summary


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


def test_markdown_table_has_no_timings():
    table = markdown_table([{"model": "a", "ok": True, "params_m": 1.0, "gflops": 0.5,
                             "latency_ms_b1": 3.25}])
    assert "3.25" not in table and "| a | yes | 1.0 | 0.5 |  |" in table
    assert table.endswith("`logs/verify_timings.json`.\n")


def test_summary_counts_failures_and_reports_the_selected_model():
    rows = [{"model": "sel", "image_size": 32, "ok": True, "params_m": 1.0, "gflops": 0.5},
            {"model": "b", "image_size": 32, "ok": False, "error": "boom"},
            {"model": "c", "image_size": 32, "ok": True, "params_m": 2.0, "gflops": 0.1}]
    assert summary(rows, 32) == {
        "image_size": 32, "checked": 3, "passed": 2, "failed": ["b"],
        "selected": {"model": "sel", "ok": True, "params_m": 1.0, "gflops": 0.5}}
    failing = summary([rows[1]], 32)["selected"]
    assert failing == {"model": "b", "ok": False, "error": "boom"}
