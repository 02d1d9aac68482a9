"""MkDocs hook: fill the generated parts of the docs from the code and committed results.

A page holds a marker line such as ``<!-- gen:params -->``; ``on_page_markdown`` replaces it
with a Markdown table built at build time, so these tables cannot drift from their source:

- ``gen:params``          every key of ``medclass.config.Params`` (type, schema default,
                          the value in ``params.yaml``, its range, the comment beside it)
- ``gen:models``          the backbone registry (``medclass.models.list_models``/``get_spec``)
- ``gen:bench:<name>``    a table from ``benchmarks/results/<name>.json``

Nothing here touches the network. Run it by hand to print one block:
``python docs/hooks/generate.py params`` (or ``models``, ``bench:ingest_scale``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"^<!-- gen:([a-z0-9_:]+) -->$", re.MULTILINE)

if str(ROOT / "src") not in sys.path:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))


# --------------------------------------------------------------------------- helpers

def _cell(text: Any) -> str:
    """One Markdown table cell: no newlines; pipes escaped outside code spans (a pipe inside
    backticks does not split a cell)."""
    parts = str(text).replace("\n", " ").split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def _code(value: Any) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "`" + shown.replace("`", "'") + "`"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _prose(text: str) -> str:
    """Free text (a YAML comment) as Markdown that renders literally: outside code spans,
    HTML brackets, attr_list braces and emphasis characters become entities."""
    parts = text.split("`")
    table = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "{": "&#123;", "}": "&#125;",
             "*": "&#42;", "_": "&#95;"}
    return "`".join(p if i % 2 else "".join(table.get(c, c) for c in p)
                    for i, p in enumerate(parts))


def _source_note(*paths: str) -> str:
    return "*Generated at build time from " + ", ".join(f"`{p}`" for p in paths) + ".*"


# --------------------------------------------------------------------------- params

def yaml_comments(path: Path) -> dict[str, str]:
    """Comment text per dotted key of a commented YAML file such as params.yaml.

    The comment on a key's line plus the comment-only lines below it (before the next key)
    belong to that key. Only block mappings are understood, which is all params.yaml uses.
    """
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key)
    last: str | None = None
    key_re = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):(.*)$")
    for raw in path.read_text(encoding="utf-8").splitlines():
        match = key_re.match(raw)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            last = ".".join(k for _, k in stack)
            rest = match.group(3)
            text = rest.split(" #", 1)[1] if " #" in rest else ""
            comments[last] = text.strip()
        elif raw.strip().startswith("#") and last is not None and raw.startswith(" "):
            extra = raw.strip().lstrip("#").strip()
            comments[last] = (comments[last] + " " + extra).strip()
    return comments


def _type_name(annotation: Any) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    text = text.replace("typing.", "").replace("NoneType", "None")
    text = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)  # module paths of our own models
    return text


def _range(field: Any) -> str:
    parts = []
    for item in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
        if getattr(item, "min_length", None) is not None:
            parts.append(f"length ≥ {item.min_length}")
    return ", ".join(parts)


def _model_of(annotation: Any) -> type | None:
    """The pydantic model class when a field is a nested params group (not a list of them)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _lookup(data: Any, dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def param_rows() -> list[tuple[str, str, list[list[Any]]]]:
    """(group key, group docstring, rows) for every params group, leaves only."""
    import yaml

    from medclass.config import Params

    defaults = Params().model_dump(mode="json")
    in_file = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")) or {}
    comments = yaml_comments(ROOT / "params.yaml")
    groups: dict[str, tuple[str, list[list[Any]]]] = {}

    def walk(model: type, prefix: str, group: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            nested = _model_of(field.annotation)
            if nested is not None:
                doc = (nested.__doc__ or "").strip()
                top = group or key
                if not group:
                    groups.setdefault(top, (" ".join(doc.split()), []))
                walk(nested, key + ".", top)
                continue
            _, default = _lookup(defaults, key)
            found, value = _lookup(in_file, key)
            shown = _code(value) if found else "–"
            if found and value == default:
                shown = "same"
            text = _prose(field.description or comments.get(key, ""))
            groups.setdefault(group or "(top level)", ("", []))[1].append(
                [f"`{key}`", "`" + _type_name(field.annotation) + "`",
                 _code(default), shown, _range(field), text])

    walk(Params, "", "")
    order = ["(top level)"] + [g for g in groups if g != "(top level)"]
    return [(g, groups[g][0], groups[g][1]) for g in order if g in groups]


def leaf_keys() -> list[str]:
    """Dotted leaf keys of ``Params().model_dump()`` (an empty mapping counts as a leaf)."""
    from medclass.config import Params

    out: list[str] = []

    def walk(data: dict, prefix: str) -> None:
        for key, value in data.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                out.append(prefix + key)

    walk(Params().model_dump(), "")
    return out


def gen_params() -> str:
    header = ["key", "type", "schema default", "params.yaml", "range", "comment in params.yaml"]
    parts = [_source_note("src/medclass/config/", "params.yaml")
             + " *schema default* is what an absent key means; *params.yaml* is the committed"
               " value (`same` when equal)."]
    for group, doc, rows in param_rows():
        parts.append(f"### `{group}`" if group != "(top level)" else "### Top level")
        if doc:
            parts.append(doc)
        parts.append(_table(header, rows))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- models

def gen_models() -> str:
    from medclass.models import get_spec, list_models

    rows = []
    for name in list_models():
        spec = get_spec(name)
        rows.append([f"`{name}`", spec.family, spec.default_size, spec.min_size,
                     spec.lr_mult, spec.scheduler])
    return (_source_note("medclass.models.list_models()", "get_spec(name)") + "\n\n"
            + _table(["name", "family", "default size (px)", "min size (px)", "lr_mult",
                      "scheduler"], rows))


# --------------------------------------------------------------------------- benchmarks

def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def _machine(data: dict) -> str:
    m = data.get("machine", {})
    versions = m.get("versions", {})
    return (f"Machine in the JSON: {m.get('cpu_model', '?')}, {m.get('logical_cores', '?')} "
            f"logical cores, torch {versions.get('torch', '?')}, recorded "
            f"{str(m.get('timestamp', '?'))[:10]}.")


def _bench_ingest_scale() -> str:
    data = _load("ingest_scale")
    rows = [[f"{r['images']:,}", r["image_px"], f"{r['prepare_s']:.1f} s", f"{r['split_s']:.1f} s",
             f"{r['wall_s']:.0f} s", f"{r['peak_mib'] / 1024:.2f} GiB", r.get("load", "")]
            for r in data["rows"]]
    return _table(["images", "image px", "prepare", "split", "total", "peak memory",
                   "1-min load at start"], rows) + "\n\n" + _machine(data)


def _bench_storage() -> str:
    data = _load("storage")
    rows = [[f"`{r['cache_type']}`", f"{r['source_mib']:.1f}", f"{r['stored_mib']:.1f}",
             f"**{r['ratio']:.2f}×**", f"{r['split_cache_mib']:.1f}", r["dvc_add_s"],
             r["repro_split_s"]] for r in data["rows"]]
    return (f"{data['images']:,} PNG images of {data['image_px']} px, cached at "
            f"{data['image_size']} px.\n\n"
            + _table(["DVC cache type", "source MiB", "stored MiB (data/ + .dvc/cache)",
                      "ratio", "split cache MiB", "dvc add s", "dvc repro split s"], rows)
            + "\n\n" + _machine(data))


def _bench_dedup_speed() -> str:
    data = _load("dedup_speed")
    rows = []
    for r in data["rows"]:
        brute = f"{r['bruteforce_s']:g} s" + (" (extrapolated)" if r["bruteforce_extrapolated"]
                                                 else "")
        same = {True: "yes", False: "no", None: "–"}[r.get("same_pairs")]
        rows.append([f"{r['n']:,}", r["max_distance"], f"{r['index_s']:g} s", brute, r["pairs"],
                     same, f"{r['index_peak_mib']:g}"])
    return (f"{data['codes_bits']}-bit hashes; all-pairs search timed up to "
            f"{data['bruteforce_max']:,} hashes.\n\n"
            + _table(["hashes", "max distance (bits)", "multi-index search", "all-pairs search",
                      "pairs found", "same pairs as all-pairs", "index peak MiB"], rows)
            + "\n\n" + _machine(data))


def _bench_train_throughput() -> str:
    data = _load("train_throughput")
    rows = [[f"`{r['model']}`", r["image_size"], r["ours_img_s"], r["reference_img_s"],
             f"**{r['ratio']}**", r["compute_ratio"], f"{r['ours_of_compute']:.0%}",
             f"{r['ours_val_acc']:.3f}", f"{r['reference_val_acc']:.3f}"] for r in data["rows"]]
    header = ["model", "px", "ours img/s", "reference img/s", "ratio", "compute ratio",
              "of compute", "ours val acc", "reference val acc"]
    return _table(header, rows) + "\n\n" + _machine(data)


def _bench_inference() -> str:
    data = _load("inference")
    by_model: dict[str, list[dict]] = {}
    for r in data["rows"]:
        by_model.setdefault(r["model"], []).append(r)
    rows = []
    for model, runs in by_model.items():
        ok = [r for r in runs if r.get("status") == "ok"]
        rows.append([
            f"`{model}`", " / ".join(r["runtime"] for r in ok),
            " / ".join(f"{r['batch1_ms']:.3g}" for r in ok),
            " / ".join(f"{r['batch32_ms']:.4g}" for r in ok),
            " / ".join(f"{r['batch32_img_s']:.0f}" for r in ok)])
    return (f"{data['image_size']} px, {data['channels']} channel(s), median of {data['runs']} "
            "runs.\n\n"
            + _table(["model", "runtime", "batch 1 ms", f"batch {data['batch']} ms",
                      f"images/s at {data['batch']}"], rows) + "\n\n" + _machine(data))


BENCHMARKS: dict[str, Callable[[], str]] = {
    "ingest_scale": _bench_ingest_scale,
    "storage": _bench_storage,
    "dedup_speed": _bench_dedup_speed,
    "train_throughput": _bench_train_throughput,
    "inference": _bench_inference,
}


def gen_bench(name: str) -> str:
    return BENCHMARKS[name]() + "\n\n" + _source_note(f"benchmarks/results/{name}.json")


# --------------------------------------------------------------------------- dispatch

def generate(marker: str) -> str:
    if marker == "params":
        return gen_params()
    if marker == "models":
        return gen_models()
    if marker.startswith("bench:") and marker[6:] in BENCHMARKS:
        return gen_bench(marker[6:])
    raise ValueError(f"unknown generated block <!-- gen:{marker} -->")


def on_page_markdown(markdown: str, page: Any = None, config: Any = None,
                     files: Any = None) -> str:
    """MkDocs event: replace every ``<!-- gen:... -->`` line of a page."""
    return MARKER.sub(lambda m: generate(m.group(1)), markdown)


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["params"]:
        print(generate(arg))
        print()


__all__ = ["generate", "leaf_keys", "on_page_markdown", "yaml_comments"]
