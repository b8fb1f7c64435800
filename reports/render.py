"""Rendering the pages: one Jinja2 template per page, written into ``<results>/html/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from verification.environment import environment

from . import benchmarks_page, formatting, loaders, training_page, verification_page

NAV = (("index", "Overview"), ("verification", "Verification"), ("benchmarks", "Benchmarks"), ("training", "Training"))
TITLES = dict(NAV) | {"index": "Results overview", "verification": "Gradient verification"}


def _jinja() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(formatting.FILTERS)
    return env


def _verdict(results: loaders.Results) -> dict[str, Any]:
    """The one line a reader looks for first: are all gradients verified?"""
    data = results.verification
    if results.errors_for("verification"):
        return {
            "cls": "bad",
            "headline": "✗ The verification results could not be read",
            "lines": [str(e) for e in results.errors_for("verification")],
            "command": "make verify",
        }
    if data is None:
        return {"cls": "na", "headline": "Gradients not verified yet", "lines": [], "command": "make verify"}
    found = verification_page.problems(data)
    lines = []
    if found["failed"]:
        lines.append("Failed: " + ", ".join(found["failed"]) + ".")
    mutation = data.get("mutation")
    if mutation:
        caught, total = mutation["caught"], mutation["total"]
        lines.append(f"The checker caught {caught} of {total} deliberately wrong backward passes.")
    if found["missing"]:
        lines.append("Modules without a verification spec: " + ", ".join(found["missing"]) + ".")
    headline = verification_page.headline(data)
    cls = verification_page.verdict_class(data)
    return {"cls": cls, "headline": headline, "lines": lines, "command": None}


def _cards(results: loaders.Results) -> list[dict[str, Any]]:
    cards = []
    for page in loaders.PAGES:
        card: dict[str, Any] = {"page": page, "title": TITLES[page], "command": None, "lines": []}
        errors = results.errors_for(page)
        if errors:
            card.update(cls="bad", lines=[f"{e.path.name} could not be read." for e in errors])
        if not results.has(page):
            card.update(cls=card.get("cls", "na"), command=loaders.COMMANDS[page])
            if not errors:
                card["lines"] = ["No results yet."]
        elif page == "verification":
            data = results.verification
            failed = sum(not m["ok"] for m in data["modules"])
            card["cls"] = "bad" if failed or not data["ok"] else "good"
            card["lines"] = [f"{len(data['modules'])} modules, {failed} failed."]
            if data.get("mutation"):
                card["lines"].append(f"Mutation score {formatting.percent(data['mutation']['score'])}.")
        elif page == "benchmarks":
            for device, data in results.benchmarks.items():
                summary = benchmarks_page.device_summary(data, device)
                labels = benchmarks_page.labels(data)
                card["lines"].append(
                    f"{device.upper()}: {summary['comparisons']} comparisons, geometric mean "
                    f"{labels['framework']}/{labels['torch']} {formatting.ratio(summary['geomean'])}."
                )
                failures = data.get("failures") or []
                if failures:
                    card["cls"] = "bad"
                    card["lines"].append(
                        f"{device.upper()}: {len(failures)} not timed (their sides disagree, or they failed to build)."
                    )
            card.setdefault("cls", "na")
        else:
            summary = results.training["summary"]
            card["cls"] = card.get("cls", "na")
            for impl in ("framework", "torch"):
                if impl in summary:
                    card["lines"].append(
                        f"{impl}: test error {formatting.mean_std(summary[impl].get('test_error'), 'percent')}."
                    )
        cards.append(card)
    return cards


def _produced(results: loaders.Results) -> list[tuple[str, dict[str, Any] | None]]:
    produced: list[tuple[str, dict[str, Any] | None]] = []
    if results.verification is not None:
        produced.append(("verification.json", results.verification.get("environment")))
    for device, data in results.benchmarks.items():
        produced.append((f"benchmarks-{device}.json", data.get("machine_info", {}).get("environment")))
    if results.training is not None:
        produced.append(("training.json", results.training.get("environment")))
    return produced


def page_context(page: str, results: loaders.Results) -> dict[str, Any]:
    """The template variables of one page (the common ones are added by :func:`render`)."""
    if page == "index":
        return {"verdict": _verdict(results), "cards": _cards(results), "produced": _produced(results)}
    if page == "benchmarks":
        return benchmarks_page.context(results.benchmarks)
    data = getattr(results, page)
    if data is None:
        return {"data": None}
    return (verification_page if page == "verification" else training_page).context(data)


def render(directory: Path | str, only: str | None = None) -> tuple[list[Path], list[loaders.ResultsError]]:
    """Write ``only``'s page (or every page) and the index; return their paths and the read errors
    of the results they show. A page whose results are missing says which command makes them."""
    directory = Path(directory)
    results = loaders.load(directory)
    pages = (only,) if only else loaders.PAGES
    out = directory / "html"
    out.mkdir(parents=True, exist_ok=True)
    jinja = _jinja()
    common = {"nav": NAV, "directory": str(directory), "rendered": environment()}
    written = []
    for page in (*pages, "index"):
        errors = [] if page == "index" else results.errors_for(page)
        html = jinja.get_template(f"{page}.html").render(
            **common, **page_context(page, results), title=TITLES[page], current=page, errors=errors
        )
        path = out / f"{page}.html"
        path.write_text(html, encoding="utf-8")
        written.append(path)
    shown = [e for page in pages for e in results.errors_for(page)]
    return written, shown
