"""TorchScript archives hold no absolute source paths, so clones in other folders reproduce
them byte for byte (repro.mode exact)."""

import io
import zipfile
from pathlib import Path

import torch

import medclass.models
from medclass.export.formats.torch_formats import portable_archive
from medclass.models import create_model


def _archive() -> bytes:
    torch.manual_seed(0)
    model = create_model("simple_cnn_tiny", num_classes=3, in_chans=1).eval()
    module = torch.jit.trace(model, torch.randn(1, 1, 16, 16))
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getvalue()


def _contents(archive: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return b"".join(zf.read(n) for n in zf.namelist())


def test_portable_archive_drops_paths_and_still_loads():
    raw = _archive()
    src = str(Path(medclass.models.__file__).resolve().parent).encode()
    assert src in _contents(raw)  # what the fix is for: torch.jit.save records the folder
    portable = portable_archive(raw)
    assert src not in _contents(portable)
    assert not [n for n in zipfile.ZipFile(io.BytesIO(portable)).namelist() if "debug" in n]
    assert portable_archive(raw) == portable  # (a second trace in this process would differ
    # in TorchScript's per-process class numbering, not in paths; DVC runs fresh processes)
    x = torch.randn(2, 1, 16, 16)
    a, b = torch.jit.load(io.BytesIO(raw)), torch.jit.load(io.BytesIO(portable))
    assert torch.equal(a(x), b(x))
