"""Start a stage in this process, or through torchrun when the job has more than one process.

Every stage starts here: it first pins the environment for ``repro.mode: exact``
(``medclass.repro``), which the libraries read when they load, so before torch is imported.

dvc.yaml runs ``python -m medclass.launch --nnodes N --nproc-per-node P --rdzv-endpoint E
medclass.stages.<stage>`` with N, P, E templated from ``train.*`` params. With one process in
all the stage runs here (no launcher overhead, one-line errors); otherwise the flags go to
PyTorch's own launcher (``torch.distributed.run``, i.e. ``torchrun``) with the c10d rendezvous.
"""

from __future__ import annotations

import argparse
import runpy
import sys

from medclass.repro import launcher_pins


def torchrun_args(nnodes: int, nproc_per_node: int, rdzv_endpoint: str, module: str) -> list[str]:
    """torchrun's argument list for a stage module."""
    return ["--nnodes", str(nnodes), "--nproc-per-node", str(nproc_per_node),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint,
            "--max-restarts", "0", "-m", module]


def main(argv: list[str] | None = None) -> None:
    """Parse the launcher flags and run ``module`` (in-process or under torchrun)."""
    parser = argparse.ArgumentParser(prog="python -m medclass.launch", description=__doc__)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--nproc-per-node", type=int, default=1)
    parser.add_argument("--rdzv-endpoint", default="localhost:0")
    parser.add_argument("module", help="stage module, e.g. medclass.stages.finetune")
    args = parser.parse_args(argv)
    launcher_pins()  # repro.mode exact: before anything below imports torch
    if args.nnodes < 1 or args.nproc_per_node < 1:
        parser.exit(2, "error [launch]: --nnodes and --nproc-per-node must be >= 1; fix "
                       "train.nnodes / train.nproc_per_node in params.yaml\n")
    if args.nnodes * args.nproc_per_node == 1:
        sys.argv = [args.module]
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
        return
    if args.nnodes > 1 and args.rdzv_endpoint.endswith(":0"):
        parser.exit(2, f"error [launch]: train.nnodes={args.nnodes} needs train.rdzv_endpoint "
                       "set to host:port of a node every node can reach (e.g. node0:29400)\n")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    cmd = torchrun_args(args.nnodes, args.nproc_per_node, args.rdzv_endpoint, args.module)
    print("[launch] torchrun " + " ".join(cmd), file=sys.stderr, flush=True)
    try:
        torchrun(cmd)
    except ChildFailedError as exc:
        codes = sorted({f.exitcode for f in exc.failures.values()})
        print(f"error [launch]: {args.module} failed on {len(exc.failures)} process(es) "
              f"(exit {codes}); the first error line above names the cause", file=sys.stderr)
        raise SystemExit(codes[0] if len(codes) == 1 and codes[0] > 0 else 1) from None


if __name__ == "__main__":
    main()
