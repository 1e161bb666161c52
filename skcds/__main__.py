"""Command line: ``python -m skcds demo`` (argument parsing only)."""

from __future__ import annotations

import argparse


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skcds", description="skcds commands")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="train a one-step sampler on the 9-mode GMM, report, plot and save it"
    )
    demo.add_argument("--out", default="skcds_demo_output", help="output folder")
    demo.add_argument("--max-iter", type=int, default=None, help="training iterations")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    # one intra-op thread: the demo's tensors are small, and a second thread slowed it 6x
    # whenever anything else ran on a 2-core machine (192 s instead of 29 s, measured)
    torch.set_num_threads(1)
    from ._demo import run_demo

    run_demo(args.out, max_iter=args.max_iter, random_state=args.seed)


if __name__ == "__main__":
    main()
