"""`recsemble report`: results.json -> one self-contained HTML evaluation report.

Registered on the main app by cli.py; the shared helpers (error handling, console) are read
from there when the command runs, which keeps imports one-way. The page is built by report/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    results: Annotated[
        Path, typer.Argument(help="results.json written by `recsemble evaluate --json`.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the HTML report goes.")] = Path(
        "report.html"
    ),
    title: Annotated[
        str | None,
        typer.Option(help="Page title (default: from the dataset name).", show_default=False),
    ] = None,
) -> None:
    """Write the evaluation report: metrics with CIs, charts, slices, ensemble analysis,
    calibration, re-ranking trade-offs and the decision; one HTML file that opens offline."""
    from recsemble.cli import _errors_exit, say
    from recsemble.cli_options import check_not_inputs, check_outputs
    from recsemble.evaluation.files import read_results
    from recsemble.report import write_report

    with _errors_exit():
        check_outputs({"--out": out})
        check_not_inputs({"--out": out}, [results])
        written = write_report(read_results(results), out, title=title)
    size = written.stat().st_size
    say(f"report written to {written} ({size / 1e6:.1f} MB)")
