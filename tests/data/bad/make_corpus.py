"""Generate the bad-input corpus: awkward files and folder trees for the folder source.

Nothing here is committed as binary: every file is written by this script, tiny (the
"decompression bomb" is a ~60-byte PNG whose header claims 20000x20000 px; no pixels are ever
allocated). ``make_corpus(root)`` returns the documented behaviour of every case, which
``tests/data/test_bad_corpus.py`` checks against the prepare stage's folder ingest.

Layout under ``root``::

    dataset/<class>/...   per-file cases; ingest with data.source=folder, data.path=dataset
    empty_class/          dataset-level cases: each folder is a whole data.path of its own
    unreadable_class/
    single_class/
    one_image/

Regenerate and print the case table (docs/sources.md, "Bad input files")::

    python tests/data/bad/make_corpus.py /tmp/medclass-bad
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DATASET = "dataset"
BOMB_SIDE = 20_000


@dataclass(frozen=True)
class Expected:
    """The documented outcome of one case.

    outcome: ``converted`` (kept in data/raw/manifest.csv), ``excluded`` / ``ignored`` (listed
    with the reason in metrics/data_report.json), or ``error`` (the stage stops with one line).
    reason: a fragment of the report's reason or of the error line.
    output, mode, size: for ``converted``, the manifest path (relative to data.path), the mode
    it decodes to and (w, h).
    source_mode: the decoded file's own PIL mode (counted in the report's ``modes``).
    stage: for ``error``, the stage that stops (``prepare`` or ``split``).
    """

    outcome: str
    reason: str = ""
    output: str = ""
    mode: str = ""
    size: tuple[int, int] = (0, 0)
    source_mode: str = ""
    stage: str = ""

    def describe(self) -> str:
        """One table cell: what happens to the case."""
        if self.outcome == "converted":
            return f"converted {self.source_mode} → {self.mode} {self.size[0]}×{self.size[1]}"
        if self.outcome == "error":
            return f"{self.stage} stops: `{self.reason}`"
        return f"{self.outcome}: {self.reason}"


def _gray(size: tuple[int, int] = (12, 12), value: int = 0) -> Image.Image:
    """A small grayscale gradient (``value`` shifts it so images differ)."""
    w, h = size
    arr = (np.add.outer(np.arange(h) * 7, np.arange(w) * 5) + value) % 256
    return Image.fromarray(arr.astype(np.uint8), "L")


def _colour(size: int = 12, seed: int = 0) -> np.ndarray:
    """Random RGB pixels whose channels differ (so conversion keeps RGB)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    arr[..., 0] = 255 - arr[..., 1]
    return arr


def _truncated(path: Path, fmt: str) -> None:
    """Save a noise image and keep only the first half of the file."""
    full = path.with_name(path.name + ".full")
    Image.fromarray(_colour(32, seed=1), "RGB").save(full, format=fmt)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(path: Path, side: int) -> None:
    """A valid PNG header claiming side x side 8-bit gray pixels, with a token IDAT."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", zlib.compress(b"\x00")) + _png_chunk(b"IEND", b""))


def _exif_rotated(path: Path) -> None:
    """A 16x8 JPEG whose EXIF orientation 6 says "rotate 90° clockwise to display"."""
    exif = Image.Exif()
    exif[0x0112] = 6
    _gray((16, 8), 40).save(path, format="JPEG", quality=95, exif=exif.tobytes())


def _symlink(target: str, link: Path) -> bool:
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError):  # e.g. Windows without the privilege
        return False
    return True


def _good(folder: Path, names: list[str]) -> dict[str, Expected]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate(names):
        _gray(value=30 * i).save(folder / name)
        out[name] = Expected("converted", output=f"{folder.name}/{name}",
                             mode="L", size=(12, 12), source_mode="L")
    return out


def _per_file_cases(root: Path) -> dict[str, Expected]:
    """The ``dataset/`` tree: class ``normal`` holds the awkward files, ``lesion`` good ones."""
    ds = root / DATASET
    normal = ds / "normal"
    cases = {f"normal/{k}": v for k, v in _good(normal, ["ok_1.png", "ok_2.png"]).items()}
    cases |= {f"lesion/{k}": v for k, v in
              _good(ds / "lesion", ["l_1.png", "l_2.png", "l_3.png"]).items()}

    def conv(name: str, output: str, mode: str, size: tuple[int, int], source: str) -> None:
        cases[f"normal/{name}"] = Expected("converted", output=f"normal/{name}", mode=mode,
                                           size=size, source_mode=source)

    def excl(name: str, reason: str) -> None:
        cases[f"normal/{name}"] = Expected("excluded", reason)

    def ign(name: str, reason: str) -> None:
        cases[name] = Expected("ignored", reason)

    (normal / "empty.png").write_bytes(b"")
    excl("empty.png", "empty file (0 bytes)")
    _truncated(normal / "truncated.jpg", "JPEG")
    excl("truncated.jpg", "corrupt or truncated image")
    _truncated(normal / "truncated.png", "PNG")
    excl("truncated.png", "corrupt or truncated image")
    (normal / "text.png").write_text("this is a text file, not a PNG\n", encoding="utf-8")
    excl("text.png", "not a recognised image format")
    _bomb_png(normal / "bomb.png", BOMB_SIDE)
    excl("bomb.png", "decompression bomb")
    _gray((1, 1)).save(normal / "one_pixel.png")
    excl("one_pixel.png", "too small (1x1 px; need at least 4x4)")

    rgba = np.dstack([_colour(seed=2), np.full((12, 12), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(normal / "rgba.png")
    conv("rgba.png", "rgba.png", "RGB", (12, 12), "RGBA")
    Image.fromarray(_colour(seed=3), "RGB").quantize(16).save(normal / "palette.png")
    conv("palette.png", "palette.png", "RGB", (12, 12), "P")
    Image.new("CMYK", (12, 12), (0, 128, 255, 0)).save(normal / "cmyk.jpg", format="JPEG")
    conv("cmyk.jpg", "cmyk.png", "RGB", (12, 12), "CMYK")
    ramp = (np.arange(144, dtype=np.uint16).reshape(12, 12) * 450).astype(np.uint16)
    Image.fromarray(ramp).save(normal / "gray16.png")  # 16-bit grayscale PNG
    conv("gray16.png", "gray16.png", "L", (12, 12), "I;16")
    _exif_rotated(normal / "exif_rotated.jpg")
    conv("exif_rotated.jpg", "exif_rotated.png", "L", (8, 16), "L")

    for name, output in (("chest film 01.png", "chest_film_01.png"),
                         ("röntgen_ß.png", "r_ntgen__.png"), ("胸部.png", "_.png")):
        _gray(value=len(output)).save(normal / name)
        conv(name, output, "L", (12, 12), "L")

    (normal / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    ign("normal/.DS_Store", "hidden")
    (normal / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    ign("normal/Thumbs.db", "hidden")
    _gray().save(normal / "._ok_1.png")  # macOS AppleDouble companion of ok_1.png
    ign("normal/._ok_1.png", "hidden")
    (normal / "notes.txt").write_text("acquired 2024\n", encoding="utf-8")
    ign("normal/notes.txt", "not an image file extension")
    (ds / "README.txt").write_text("class per folder\n", encoding="utf-8")
    ign("README.txt", "file outside any class folder")

    linked = _symlink("loop_b.png", normal / "loop_a.png")  # a -> b -> a: a symlink loop
    if linked and _symlink("loop_a.png", normal / "loop_b.png"):
        ign("normal/loop_a.png", "broken symbolic link")
        ign("normal/loop_b.png", "broken symbolic link")
    if _symlink(".", normal / "again"):  # normal/again/again/... forever if followed
        ign("normal/again", "symlinked folder not followed")
    if _symlink("loop_root", ds / "loop_root"):
        ign("loop_root", "broken symbolic link")
    return {f"{DATASET}/{k}": v for k, v in cases.items()}


def _dataset_cases(root: Path) -> dict[str, Expected]:
    """Whole ``data.path`` trees that cannot be trained on, each with its one-line error."""
    _good(root / "empty_class" / "normal", ["a.png", "b.png", "c.png"])
    (root / "empty_class" / "empty").mkdir()
    _good(root / "unreadable_class" / "normal", ["a.png", "b.png", "c.png"])
    (root / "unreadable_class" / "broken").mkdir()
    (root / "unreadable_class" / "broken" / "text.png").write_text("no", encoding="utf-8")
    (root / "unreadable_class" / "broken" / "empty.png").write_bytes(b"")
    _good(root / "single_class" / "normal", ["a.png", "b.png", "c.png"])
    _good(root / "one_image" / "normal", ["a.png", "b.png", "c.png"])
    _good(root / "one_image" / "rare", ["only.png"])
    return {
        "empty_class": Expected(
            "error", "class 'empty' has no readable images; add images or remove the class",
            stage="prepare"),
        "unreadable_class": Expected(
            "error", "class 'broken' has no readable images", stage="prepare"),
        "single_class": Expected(
            "error", "has 1 class folder(s) (normal); need at least 2", stage="prepare"),
        "one_image": Expected(
            "error", "class 'rare' has 1 image", stage="split"),
    }


def make_corpus(root: Path) -> dict[str, Expected]:
    """Write the corpus under ``root`` (created; must not exist or be empty) and return
    ``{path relative to root: documented behaviour}``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; give a new folder")
    return {**_per_file_cases(root), **_dataset_cases(root)}


def markdown_table(cases: dict[str, Expected]) -> str:
    """The cases as a Markdown table (path, behaviour)."""
    rows = ["| case | behaviour |", "|---|---|"]
    rows += [f"| `{path}` | {exp.describe()} |" for path, exp in cases.items()]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python tests/data/bad/make_corpus.py OUT``: write the corpus, print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="new or empty folder to write the corpus to")
    args = parser.parse_args(argv)
    cases = make_corpus(args.out)
    sys.stdout.write(markdown_table(cases))


if __name__ == "__main__":
    main()
