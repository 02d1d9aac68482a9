"""One screen for ``medclass data check``: rich renderables built from a ``CheckReport``.

Counts and the first few examples only, never whole file lists; paths are shown as plain text
(no rich markup is read from them).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from medclass.data.group_hint import GroupHint
from medclass.data.layout import SPLIT_ORDER
from medclass.data.preflight import ISSUES, CheckReport


def _layout_line(report: CheckReport) -> Text:
    text = Text("layout: ", style="bold")
    if report.layout == "splits":
        given = [s for s in SPLIT_ORDER if s in report.split_folders]
        folders = ", ".join(f"{report.split_folders[s]}/ ({s})" for s in given)
        missing = [s for s in SPLIT_ORDER if s not in report.split_folders]
        text.append(f"split folders {folders}, a class folder in each")
        if missing:
            them = "it" if len(missing) == 1 else "them"
            text.append(f" (no {'/, '.join(missing)}/: the split stage carves {them} from train)")
    elif report.layout == "classes":
        text.append("class folders at the top (no split folders: the split stage splits)")
    else:
        text.append("CSV of labels")
    mode = "full decode" if report.decoded else "header check (--decode: full decode)"
    text.append(f"; {len(report.classes)} classes, {report.files} image files, {mode}")
    return text


def _counts_table(report: CheckReport) -> Table:
    splits = list(report.counts)
    table = Table(title="usable images per class", title_justify="left")
    table.add_column("class")
    for split in splits:
        table.add_column(split or "images", justify="right")
    if len(splits) > 1:
        table.add_column("total", justify="right")
    for name in report.classes:
        cells = [report.counts[s][name] for s in splits]
        row = [Text(str(n), style="red" if n == 0 else "") for n in cells]
        if len(splits) > 1:
            row.append(Text(str(sum(cells))))
        table.add_row(Text(name), *row)
    return table


def _issue_lines(report: CheckReport) -> list[RenderableType]:
    lines: list[RenderableType] = []
    for kind, spec in ISSUES.items():
        issue = report.issues.get(kind)
        if issue is None:
            continue
        mark, style = ("x", "bold red") if spec.blocking else ("!", "yellow")
        line = Text(f" {mark} ", style=style)
        line.append(f"{spec.title}: {issue.count}", style=style)
        more = ", ..." if issue.count > len(issue.examples) else ""
        line.append(f"  ({', '.join(issue.examples)}{more})")
        lines += [line, Text(f"     {spec.fix}", style="dim")]
    return lines or [Text(" no problems found", style="green")]


def _group_lines(hint: GroupHint | None, layout: str) -> list[Text]:
    title = Text("patient ids in file names: ", style="bold")
    if hint is None:
        return [title + Text("none recognised (split.group_by with a metadata CSV can group "
                             "images by patient)")]
    lines = [
        title + Text(f"set split.group_pattern: '{hint.pattern}'"),
        Text(f"   it matches {hint.matched}/{hint.files} files: {hint.groups} groups, "
             f"{hint.mean:.1f} images per group; a group stays in one split"),
    ]
    if layout == "splits" and hint.cross_split is not None:
        if hint.cross_split:
            lines.append(Text(
                f"   {hint.cross_split} group(s) ({hint.cross_split_images} images) span split "
                "folders: the given split leaks patients; set split.use_predefined: false to "
                "re-split by group", style="yellow"))
        else:
            lines.append(Text("   no group spans split folders"))
    return lines


def render(report: CheckReport) -> RenderableType:
    """Everything but the final summary line (a layout error shows alone)."""
    head = Text(f"medclass data check {report.root}", style="bold")
    if report.error is not None:
        return head
    parts: list[RenderableType] = [head, _layout_line(report)]
    if report.classes:
        parts.append(_counts_table(report))
    parts += [Text("problems:", style="bold"), *_issue_lines(report)]
    parts += _group_lines(report.group_hint, report.layout)
    return Group(*parts)


def summary(report: CheckReport) -> tuple[int, str]:
    """(exit code, the final line): 2 and the first blocking problem, or 0 and ``ok``."""
    blocking = report.blocking()
    if blocking:
        more = f" (and {len(blocking) - 1} more problem(s) above)" if len(blocking) > 1 else ""
        return 2, f"error: {blocking[0]}{more}"
    total = sum(sum(c.values()) for c in report.counts.values())
    warnings = sum(1 for k in report.issues if not ISSUES[k].blocking)
    note = f"; {warnings} warning(s) above" if warnings else ""
    return 0, f"ok: {total} usable images in {len(report.classes)} classes; dvc repro can " \
              f"run{note}"
