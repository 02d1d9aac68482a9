"""The process group of the training stages (head, finetune, kfold) when torchrun starts them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from medclass.config import Params
from medclass.train import distributed
from medclass.train.distributed import DistInfo


@contextlib.contextmanager
def dist_session(params: Params) -> Iterator[DistInfo]:
    """torch.distributed for the stage's duration (a no-op in one process); ranks other than 0
    log warnings only, so every message appears once."""
    with distributed.session(params.train.device) as info:
        if not info.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        yield info
