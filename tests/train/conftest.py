"""Shared fixtures of the training tests."""

from collections.abc import Callable

import pytest

import medclass.train.loop as loop


@pytest.fixture
def interrupt_at(monkeypatch) -> Callable[[Callable[[], object], int], None]:
    """``interrupt_at(run, n)``: call ``run()`` with ``fit``'s n-th epoch raising
    KeyboardInterrupt (as Ctrl-C would), check it raised, then restore the real epoch."""
    def run_interrupted(run: Callable[[], object], n: int) -> None:
        real, calls = loop.train_one_epoch, {"n": 0}

        def flaky(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(loop, "train_one_epoch", flaky)
        with pytest.raises(KeyboardInterrupt):
            run()
        monkeypatch.setattr(loop, "train_one_epoch", real)

    return run_interrupted
