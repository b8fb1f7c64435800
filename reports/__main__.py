"""``python -m reports [--only PAGE] --results DIR``: render the HTML pages into DIR/html."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .loaders import PAGES
from .render import render


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports", description="Render the verification, benchmark and training results as HTML."
    )
    parser.add_argument("--results", default="results", help="directory holding the results JSON files")
    parser.add_argument("--only", choices=PAGES, help="render this page (and the overview) only")
    args = parser.parse_args(argv)
    results = Path(args.results)
    if results.exists() and not results.is_dir():
        parser.error(f"--results {results}: a file; give the folder that holds the results JSON files")
    if not results.exists():
        print(
            f"reports: no folder {results}: every page says 'No results yet' "
            "(make verify, make bench and make train write the results there)",
            file=sys.stderr,
        )
    written, errors = render(args.results, args.only)
    for path in written:
        print(path)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
