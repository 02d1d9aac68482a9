"""An offline HTML template for ``dvc plots show --html-template``.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so ``dvc plots show``
renders nothing without internet access. :data:`TEMPLATE` is a page with the three libraries'
minified builds (``vendor/``, from the npm registry, BSD-3-Clause, see ``vendor/README.md``)
inlined, and DVC's placeholders ``{plot_divs}`` and ``{refresh_tag}``. It deliberately lacks
``{scripts}``, the placeholder DVC fills with the CDN ``<script src>`` tags.

Regenerate after updating ``vendor/``: ``python -m medclass.report.dvc_template``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"
TEMPLATE = HERE / "dvc_plots.html"
LIBRARIES = ("vega", "vega-lite", "vega-embed")  # load order: embed needs the other two
_SOURCE_MAP = re.compile(r"\n?//# sourceMappingURL=\S+\s*$")

HEAD = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot (offline)</title>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
"""
TAIL = """</head>
<body>
    {plot_divs}
</body>
</html>
"""


def build_template(vendor: Path = VENDOR) -> str:
    """The template text: :data:`HEAD`, one inline ``<script>`` per library, :data:`TAIL`."""
    scripts = []
    for name in LIBRARIES:
        code = _SOURCE_MAP.sub("", (vendor / f"{name}.min.js").read_text(encoding="utf-8"))
        if "</script" in code.lower():
            raise ValueError(f"{name}.min.js contains '</script' and cannot be inlined")
        scripts.append(f"    <script>/* {name}: see vendor/LICENSE-{name} */\n{code}\n"
                       f"    </script>\n")
    return HEAD + "".join(scripts) + TAIL


def main(argv: list[str] | None = None) -> None:
    """Write the template to the path given (default: :data:`TEMPLATE`)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else TEMPLATE
    target.write_text(build_template(), encoding="utf-8")
    print(target)


if __name__ == "__main__":
    main()
