"""``recon batch CAPTURES --out RUNS [recon train options]``: every capture (each sub-folder of
CAPTURES, or each entry of a manifest .json) goes process → train → eval → export as a Ray task.

Batch options are listed below; every other option is a ``recon train`` option applied to every
capture (``--preset``, ``--steps``, ``--method``, ...). Re-running the same command skips finished
captures and resumes interrupted ones from their checkpoints. docs/cluster.md has the details.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from recon.errors import ReconError

_EPILOG = """\
Every other option is a `recon train` option for every capture (see `recon train --help`;
a manifest can add options per capture). Exit code 0: all captures done; 3: some failed
(the others finished; RUNS/batch.json has each error); 2: bad input; 130: interrupted.
Ray is the cluster extra: pip install "recon[cluster]". docs/cluster.md has the details."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, via recon.cli
        raise ReconError(f"{message}; see `{self.prog} --help`")


def _parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, allow_abbrev=False, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Process, train, evaluate and export many captures as Ray tasks (a local cluster on "
                            "127.0.0.1 unless --address names one).")
    p.add_argument("captures", type=Path, metavar="CAPTURES",
                   help="a folder with one capture per sub-folder, or a manifest .json (docs/cluster.md)")
    p.add_argument("--out", type=Path, required=True, metavar="RUNS",
                   help="where the runs go: RUNS/NAME per capture, RUNS/batch.json summary, RUNS/_batch/ records and logs")
    p.add_argument("--address", default=None,
                   help="join the Ray cluster at this address (HOST:PORT or ray://HOST:PORT) instead of a local one")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local cluster (default: all)")
    p.add_argument("--num-gpus", type=int, default=None, help="GPUs of the local cluster (default: all)")
    p.add_argument("--cpus-per-capture", type=float, default=1.0, help="CPUs each capture's task declares (default 1)")
    p.add_argument("--gpus-per-capture", type=float, default=None,
                   help="GPUs each capture's task declares (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--memory-gb", type=float, default=2.0, help="memory each capture's task declares, in GB (default 2)")
    p.add_argument("--retries", type=int, default=1,
                   help="retry a capture that crashed or failed unexpectedly this many times (bad input is not retried)")
    p.add_argument("--export", nargs="+", default=["ply"], metavar="FORMAT",
                   help="`recon export` formats for each run (default ply; none: no export)")
    return p


@dataclass
class BatchRequest:
    captures: list
    out: Path
    train_options: list[str]
    options: object


def parse(argv: list[str], prog: str = "recon batch", offline: bool = False) -> BatchRequest:
    """Parse ``recon batch`` options; the train options are checked with ``recon train``'s parser.
    ``offline``: do not read CAPTURES (check the command line only)."""
    from recon.cluster.batch import BatchOptions
    from recon.cluster.captures import Capture, check_options, discover
    from recon.commands.train import parse as train_parse

    ns, rest = _parser(prog).parse_known_args(argv)
    check_options(rest, "recon batch")
    for name, v in (("--cpus-per-capture", ns.cpus_per_capture), ("--memory-gb", ns.memory_gb)):
        if not v > 0:
            raise ReconError(f"{name} {v}: must be > 0")
    if ns.gpus_per_capture is not None and ns.gpus_per_capture < 0:
        raise ReconError(f"--gpus-per-capture {ns.gpus_per_capture}: must be >= 0")
    if ns.retries < 0:
        raise ReconError(f"--retries {ns.retries}: must be >= 0")
    for name, v in (("--num-cpus", ns.num_cpus), ("--num-gpus", ns.num_gpus)):
        if v is not None and v < 0:
            raise ReconError(f"{name} {v}: must be >= 0")
    export: tuple[str, ...] = ()
    if [e.lower() for e in ns.export] != ["none"]:
        from exporters.export import parse_formats

        export = tuple(parse_formats(ns.export))
    if ns.out.exists() and not ns.out.is_dir():
        raise ReconError(f"--out {ns.out} is a file; give a folder for the runs")
    caps = [Capture("check", ns.captures)] if offline else discover(ns.captures)
    seen = set()
    for c in caps:  # fail on a bad option before any cluster starts (once per distinct option set)
        words = tuple(c.options)
        if words in seen:
            continue
        seen.add(words)
        # tyro's own message (the option and value at fault) becomes one line in recon.cli.
        train_parse([str(c.path), "--out", str(ns.out / c.name)] + rest + list(words), prog="recon train",
                    offline=True)
    opts = BatchOptions(address=ns.address, num_cpus=ns.num_cpus, num_gpus=ns.num_gpus,
                        cpus_per_capture=ns.cpus_per_capture, gpus_per_capture=ns.gpus_per_capture,
                        memory_gb=ns.memory_gb, retries=ns.retries, export=export)
    return BatchRequest(caps, ns.out, rest, opts)


def command(req: BatchRequest) -> int:
    from recon.cluster.batch import run_batch

    return run_batch(req.captures, req.out, req.train_options, req.options)


command.parse = parse  # type: ignore[attr-defined]


def main(captures: Path, out: Path, argv: Optional[list[str]] = None) -> int:
    """Python entry point: the same as ``recon batch CAPTURES --out OUT ARGV...``."""
    return command(parse([str(captures), "--out", str(out)] + list(argv or [])))
