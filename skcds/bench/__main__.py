"""``python -m skcds.bench``: the benchmark harness from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _parser() -> argparse.ArgumentParser:
    from ._budgets import BUDGETS
    from ._posteriordb import POSTERIORS
    from ._posteriordb_run import PDB_BUDGETS, PDB_METHODS
    from ._run import METHODS
    from ._targets import TARGETS

    parser = argparse.ArgumentParser(
        prog="python -m skcds.bench",
        description="Reproduce the paper's Tables 1-2 side by side with skcds's numbers "
        "(--mode benchmark), or measure training and sampling speed (--mode speed).",
    )
    parser.add_argument(
        "--mode", choices=["benchmark", "speed", "posteriordb"], default="benchmark"
    )
    parser.add_argument(
        "--targets",
        type=_names,
        default=None,
        help=f"comma-separated: {','.join(TARGETS)} (posteriordb mode: "
        f"{','.join(POSTERIORS)}); all by default",
    )
    parser.add_argument(
        "--methods",
        type=_names,
        default=None,
        help=f"comma-separated: {','.join(METHODS)} (posteriordb mode: "
        f"{','.join(PDB_METHODS)}); all by default",
    )
    parser.add_argument(
        "--posteriordb",
        default=None,
        help="posteriordb's posterior_database folder (default: $SKCDS_POSTERIORDB, then "
        "../shared/data/posteriordb/posterior_database)",
    )
    parser.add_argument(
        "--precondition",
        choices=["auto", "laplace", "none"],
        default="auto",
        help="the samplers' precondition (posteriordb mode)",
    )
    parser.add_argument(
        "--budget",
        choices=sorted({*BUDGETS, *PDB_BUDGETS}),
        default="smoke",
        help="smoke: minutes on 2 CPU cores; cpu: about an hour per target on 2 cores "
        "(posteriordb mode: at most 5 minutes per posterior and method on one thread; "
        "cpu_long: 2500 iterations); "
        "paper: the paper's budget, for a GPU (not in posteriordb mode)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--out", default="bench_results", help="output folder")
    parser.add_argument(
        "--data", default=None, help="folder with ionosphere.csv and pines.csv (default: search)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--baseline-loss", choices=["kl", "log_variance"], default="kl", help="PIS and DDS loss"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of torch")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true", help="redraw table and plots from OUT/results.json"
    )
    return parser


def main(argv=None) -> None:
    """Run the harness with command-line arguments ``argv`` (``sys.argv`` by default)."""
    args = _parser().parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == "posteriordb":
        _run_posteriordb(args)
        return
    if args.mode == "speed":
        from ._speed import run_speed, speed_table

        targets = args.targets or []
        target = targets[0] if len(targets) == 1 else "gmm9"
        result = run_speed(target, device=args.device, out=args.out, seed=args.seed)
        print("\n".join(speed_table(result)))
        return
    if args.report_only:
        from ._report import write_report

        results = json.loads((Path(args.out) / "results.json").read_text())
        print("\n".join(write_report(results, args.out, plots=not args.no_plots)))
        return
    from ._run import METHODS, run_benchmark
    from ._targets import TARGETS

    try:
        run_benchmark(
            args.targets or list(TARGETS),
            args.methods or list(METHODS),
            budget=args.budget,
            device=args.device,
            out=args.out,
            data_dir=args.data,
            seed=args.seed,
            baseline_loss=args.baseline_loss,
            plots=not args.no_plots,
        )
    except ValueError as error:
        sys.exit(f"error: {error}")
    print((Path(args.out) / "table.md").read_text())


def _run_posteriordb(args) -> None:
    from ._posteriordb import POSTERIORS
    from ._posteriordb_run import PDB_BUDGETS, PDB_METHODS, posteriordb_table, run_posteriordb

    if args.budget not in PDB_BUDGETS:
        sys.exit(f"error: --mode posteriordb has budgets {sorted(PDB_BUDGETS)}; got {args.budget}")
    names, methods = args.targets or list(POSTERIORS), args.methods or list(PDB_METHODS)
    for given, known, what in ((names, POSTERIORS, "targets"), (methods, PDB_METHODS, "methods")):
        unknown = [g for g in given if g not in known]
        if unknown:
            sys.exit(f"error: unknown {what} {unknown}; choose from {list(known)}")
    try:
        rows = run_posteriordb(
            names,
            methods,
            budget=args.budget,
            out=Path(args.out) / "posteriordb",
            path=args.posteriordb,
            seed=args.seed,
            precondition=args.precondition,
        )
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    print("\n".join(posteriordb_table(rows)))


if __name__ == "__main__":
    main()
