"""``python -m experiment``: train the disk classifier with the framework and with torch.nn, compare.

Examples::

    python -m experiment                              # 10 runs, the reports' settings
    python -m experiment --runs 3 --epochs 20 --json results/training.json
    python -m experiment --batchnorm --hidden 20 20 20 20 20 --activation tanh   # PyChrot's blocks
    python -m experiment --restart 10 --init xavier_normal                       # Ferrot and Richter
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .metrics import finite_or_none
from .model import ACTIVATIONS, DTYPES, INITS, LOSSES, Config
from .run import IMPLEMENTATIONS, ProgressBar, run_experiment

_ROWS = (
    ("train error (%)", "train_error", 100.0, "{:.2f}"),
    ("test error (%)", "test_error", 100.0, "{:.2f}"),
    ("precision", "precision", 1.0, "{:.4f}"),
    ("recall", "recall", 1.0, "{:.4f}"),
    ("F1", "f1", 1.0, "{:.4f}"),
    ("ms per epoch", "seconds_per_epoch", 1000.0, "{:.2f}"),
)


def parser() -> argparse.ArgumentParser:
    defaults = Config()
    p = argparse.ArgumentParser(
        prog="python -m experiment",
        description="Disk classification: the framework against its torch.nn twin (same weights, same batches).",
    )
    p.add_argument("--activation", choices=ACTIVATIONS, default=defaults.activation)
    p.add_argument("--loss", choices=LOSSES, default=defaults.loss)
    p.add_argument("--lr", type=float, default=defaults.lr, help="learning rate (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--runs", type=int, default=defaults.runs, help="seeds seed, seed+1, ... (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--dtype", choices=tuple(DTYPES), default=defaults.dtype)
    p.add_argument("--hidden", type=int, nargs="+", default=defaults.hidden, help="hidden layer sizes")
    p.add_argument(
        "--init", choices=INITS, default=defaults.init, help="weight initialisation (gain of the activation)"
    )
    p.add_argument("--momentum", type=float, default=defaults.momentum)
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--batchnorm", action="store_true", help="BatchNorm1d after each hidden activation")
    p.add_argument("--dropout", type=float, default=defaults.dropout, metavar="P", help="dropout after each block")
    p.add_argument(
        "--restart",
        type=int,
        nargs="?",
        const=10,
        default=defaults.restart,
        metavar="K",
        help="re-initialise a network whose loss has not improved after K epochs (default K: 10)",
    )
    p.add_argument("--restart-threshold", type=float, default=defaults.restart_threshold)
    p.add_argument("--max-restarts", type=int, default=defaults.max_restarts)
    p.add_argument("--n-train", type=int, default=defaults.n_train)
    p.add_argument("--n-test", type=int, default=defaults.n_test)
    p.add_argument("--threads", type=int, default=defaults.threads, help="torch intra-op threads (default %(default)s)")
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default=defaults.device, help="where both train (default %(default)s)"
    )
    p.add_argument("--no-torch", action="store_true", help="train the framework network only")
    p.add_argument("--json", type=Path, metavar="PATH", help="write training.json here")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no per-run lines")
    p.add_argument("--verbose", action="store_true", help="print the loss of every epoch")
    return p


def config_from(args: argparse.Namespace) -> Config:
    return Config(
        activation=args.activation,
        loss=args.loss,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        runs=args.runs,
        dtype=args.dtype,
        seed=args.seed,
        hidden=list(args.hidden),
        init=args.init,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batchnorm=args.batchnorm,
        dropout=args.dropout,
        restart=args.restart,
        restart_threshold=args.restart_threshold,
        max_restarts=args.max_restarts,
        n_train=args.n_train,
        n_test=args.n_test,
        torch=not args.no_torch,
        threads=args.threads,
        device=args.device,
    )


def table(result: dict[str, Any]) -> str:
    """Mean ± std of every metric over the runs, one column per implementation."""
    names = [n for n in IMPLEMENTATIONS if n in result["summary"]]
    lines = [f"{'over ' + str(len(result['runs'])) + ' runs':18}" + "".join(f"{n:>22}" for n in names)]
    for label, key, scale, fmt in _ROWS:
        cells = []
        for name in names:
            s = result["summary"][name][key]
            spread = "" if s["std"] is None else f" ± {fmt.format(s['std'] * scale)}"  # None: a single run
            cells.append(f"{fmt.format(s['mean'] * scale)}{spread}")
        lines.append(f"{label:18}" + "".join(f"{c:>22}" for c in cells))
    a = result["agreement"]
    if a["comparable"]:
        lines.append(
            f"loss agreement ({a['dtype']}): max relative difference {a['max_relative_difference_first_epochs']:.2e} "
            f"over the first {a['epochs_compared']} epochs, {a['max_relative_difference_all_epochs']:.2e} over all, "
            f"{a['max_relative_difference_final_weights']:.2e} in the final weights; "
            f"test predictions identical on {100 * a['test_prediction_agreement']:.1f}% of points (least similar run)"
        )
    diverged = {key.removeprefix("diverged_runs_"): k for key, k in a.items() if key.startswith("diverged_runs_") and k}
    if diverged:
        lines.append("diverged (non-finite loss): " + ", ".join(f"{n} in {k} run(s)" for n, k in diverged.items()))
    if not a["comparable"]:
        lines.append(f"loss agreement: not compared ({a['note']})")
    return "\n".join(lines)


def _run_line(index: int, run: dict[str, Any]) -> str:
    parts = [f"run {index + 1} (seed {run['seed']}):"]
    for name in IMPLEMENTATIONS:
        r = run.get(name)
        if r is not None:
            restarts = f", restarts after {r['restarts']}" if r["restarts"] else ""
            parts.append(
                f"{name} train {100 * r['train_error']:.1f}% test {100 * r['test_error']:.1f}% "
                f"({1000 * r['seconds_per_epoch']:.1f} ms/epoch{restarts})"
            )
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
            return 2
    try:
        config = config_from(args)
    except ValueError as error:
        parser().error(str(error))

    def on_run(index: int, run: dict[str, Any]) -> None:
        if args.verbose:
            for name in IMPLEMENTATIONS:
                if name in run:
                    losses = " ".join(f"{v:.5f}" for v in run[name]["loss"])
                    print(f"  {name} loss per epoch: {losses}")
        if not args.quiet:
            print(_run_line(index, run), flush=True)

    # The bar redraws one line in place: only on a terminal, never into a log file.
    bar = ProgressBar() if not args.quiet and sys.stderr.isatty() else None
    result = run_experiment(config, progress=bar, on_run=on_run)
    print(table(result))
    if args.json is not None:
        from verification.environment import environment

        env = environment(config.device)
        env["threads"] = config.threads  # the count the runs used (run_experiment restores the caller's)
        result = {"kind": result["kind"], "environment": env, **result}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        # Strict JSON (browsers reject NaN): a diverged run's losses are written as null.
        args.json.write_text(json.dumps(finite_or_none(result), indent=1, allow_nan=False))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
