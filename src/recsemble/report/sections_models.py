"""Report sections about the models: header facts, decision, metrics table and charts, slices."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from recsemble import __version__
from recsemble.report.data import (
    COMPARED_METRICS,
    ModelInfo,
    ReportData,
    bootstrap_settings,
    mapping,
    number,
)
from recsemble.report.figures import (
    FigureJson,
    history_slice_bars,
    item_slice_bars,
    item_slice_sizes,
    metric_bars,
)
from recsemble.report.html import (
    Section,
    attrs,
    chart,
    code,
    esc,
    fmt,
    missing,
    p_value,
    percent,
    table,
)

RERUN = f"Re-run {code('recsemble evaluate --json results.json')} with recsemble {__version__}."

# Numbers of results.json "decision" shown in the decision table, with their format.
DECISION_FORMATS = {
    "mean": lambda v: fmt(v),
    "baseline_mean": lambda v: fmt(v),
    "mean_diff": lambda v: fmt(v, signed=True),
    "ci_low": lambda v: fmt(v, signed=True),
    "ci_high": lambda v: fmt(v, signed=True),
    "relative_gain": percent,
    "relative_ci_low": percent,
    "relative_ci_high": percent,
    "p_value": p_value,
}


def header(data: ReportData) -> str:
    meta = data.meta
    users = number(meta.get("n_users"))
    facts = {
        "dataset": meta.get("dataset", "?"),
        "protocol": f"{meta.get('protocol', '?')}, test fraction {meta.get('test_fraction', '?')}"
        + _preparation(meta),
        "users evaluated": f"{int(users):,}" if users is not None else "?",
        "cut-offs": ", ".join(f"@{k}" for k in data.ks) + f" (charts use @{data.k})",
        "baseline": data.baseline or "none",
        "models": f"{len(data.plain)} (+{len(data.variants)} re-ranked variants)",
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    items = "".join(
        f"<div><dt>{esc(name)}</dt><dd{attrs(id=_fact_id(name))}>{esc(v)}</dd></div>"
        for name, v in facts.items()
    )
    return f'<dl class="facts">{items}</dl>'


#: benchmark-protocol.md, data preparation step 3: users with fewer are dropped.
_PROTOCOL_MIN_INTERACTIONS = 5


def _preparation(meta: Mapping[str, Any]) -> str:
    """The preparation settings results.json records, where they are not the protocol's
    defaults (users with 5+ interactions, every value kept); older files record none."""
    least, value = number(meta.get("min_user_interactions")), number(meta.get("min_value"))
    out = (
        ""
        if least is None or least == _PROTOCOL_MIN_INTERACTIONS
        else f", users with >= {least:g} interactions"
    )
    return out + ("" if value is None else f", only values >= {value:g}")


def _fact_id(name: str) -> str:
    return "fact-" + name.replace(" ", "-")


def decision_section(data: ReportData) -> Section:
    caption = (
        "The verdict in one sentence, then the numbers behind it: the paired difference between "
        "the model and the baseline over the same users, with its 95% bootstrap confidence "
        "interval. A CI that excludes 0 means the difference is unlikely to be noise."
    )
    found = data.decision()
    if found is None and not any(m.role == "model" for m in data.plain):
        # Re-running would not help here: a decision compares a model with the baseline.
        note = missing(
            f"no decision: only the baseline ({data.baseline or 'pop'}) was evaluated, so "
            "there is nothing to compare it with",
            f"Evaluate a model beside it, e.g. "
            f"{code('recsemble evaluate --models ensemble --json results.json')}.",
        )
        return Section("decision", "Decision", caption, note)
    if found is None:
        note = missing(
            "no decision",
            f"Re-run {code('recsemble evaluate')} (recsemble >= {esc(__version__)}): it writes "
            "the decision on the ensemble's entry.",
        )
        return Section("decision", "Decision", caption, note)
    _, decision = found
    statement = decision.get("statement")
    quote = f'<blockquote id="decision-statement">{esc(statement or "(no statement)")}</blockquote>'
    return Section("decision", "Decision", caption, quote + _decision_table(decision))


def _decision_number(decision: Mapping[str, Any], name: str) -> str:
    value = number(decision.get(name))
    shown = DECISION_FORMATS[name](value)
    if value is None:
        return f"<span{attrs(id='decision-' + name)}>{esc(shown)}</span>"
    marks = attrs(id=f"decision-{name}", data_field=name, data_value=repr(value))
    return f"<span{marks}>{esc(shown)}</span>"


def _decision_table(decision: Mapping[str, Any]) -> str:
    def num(name: str) -> str:
        return _decision_number(decision, name)

    def names(key: str) -> str:
        values = decision.get(key)
        listed = ", ".join(map(str, values)) if isinstance(values, list) and values else "none"
        return f"<span{attrs(id='decision-' + key.replace('_', '-'))}>{esc(listed)}</span>"

    ab_test = decision.get("ab_test")
    verdict = {True: "yes", False: "no"}.get(ab_test, "n/a") if isinstance(ab_test, bool) else "n/a"
    reasons = decision.get("reasons")
    reason_items = (
        "".join(f"<li>{esc(r)}</li>" for r in reasons) if isinstance(reasons, list) else ""
    )
    rows = [
        ["compared", f"{esc(decision.get('model', '?'))} vs {esc(decision.get('baseline', '?'))} "
                     f"on {esc(decision.get('metric', '?'))}"],
        ["model mean / baseline mean", f"{num('mean')} / {num('baseline_mean')}"],
        ["difference [95% CI]", f"{num('mean_diff')} [{num('ci_low')}, {num('ci_high')}]"],
        ["relative gain [95% CI]",
         f"{num('relative_gain')} [{num('relative_ci_low')}, {num('relative_ci_high')}]"],
        ["p-value", num("p_value")],
        ["slices won / lost / tied",
         f"{names('slices_won')} / {names('slices_lost')} / {names('slices_tied')}"],
        ["worth an A/B test", f"<strong{attrs(id='decision-ab-test', data_value=verdict)}>"
                              f"{verdict}</strong>"],
        ["because", f'<ul id="decision-reasons">{reason_items}</ul>'],
    ]  # fmt: skip
    return table(["", ""], ([f"<th>{esc(a)}</th>", b] for a, b in rows), id="decision-numbers")


def metrics_section(data: ReportData, figures: dict[str, FigureJson]) -> Section:
    k = data.k
    first = data.plain[0].entry if data.plain else {}
    resamples = bootstrap_settings(first)[0]
    caption = (
        f"Every model at @{k} (the baseline in grey italics). Under each value, in small type: "
        "the 95% bootstrap confidence interval of the mean over users "
        f"({resamples} resamples), where per-user values exist. The Δ columns are the paired "
        "difference from the baseline over the same users, with its 95% CI: green when the CI "
        "lies above 0, red when below. Coverage, Gini and long-tail share are list-level "
        "figures and have no per-user CI."
    )
    metrics = data.metrics()
    compared = [m for m in COMPARED_METRICS if any(p.comparison(m, k) for p in data.plain)]
    versus = data.baseline or "baseline"
    headers = ["model", *(f"Δ {m}@{k} vs {versus}" for m in compared)]
    headers += [f"{m}@{k}" for m in metrics]
    rows = [_metrics_row(data, model, metrics, compared) for model in data.plain]
    roles = [m.role for m in data.plain]
    body = '<div class="scroll">' + table(headers, rows, roles, id="metrics-table") + "</div>"
    if not compared and len(data.plain) > 1:
        body += missing("no paired comparison with the baseline (vs_baseline)", RERUN)
    if not any(mapping(m.entry.get("per_user")) for m in data.plain):
        body += missing("no per-user values, so no confidence intervals", RERUN)
    body += "<h3>Each metric as a chart</h3>"
    body += '<p class="caption">Pick the metric in the menu; the whiskers are the 95% CIs.</p>'
    body += chart("fig-metrics", metric_bars(data), figures)
    return Section("metrics", "Metrics", caption, body)


def _metrics_row(
    data: ReportData, model: ModelInfo, metrics: list[str], compared: list[str]
) -> list[str]:
    role = " (baseline)" if model.role == "baseline" else ""
    cells = [f"<td{attrs(data_model=model.name)}>{esc(model.name + role)}</td>"]
    cells.extend(_delta_cell(model.comparison(metric, data.k)) for metric in compared)
    for metric in metrics:
        value = model.value(metric, data.k)
        interval = data.interval(model, metric)
        ci = (
            f'<span class="ci">[{fmt(interval.low)}, {fmt(interval.high)}]</span>'
            if interval
            else ""
        )
        marks = attrs(data_metric=metric, data_value=None if value is None else repr(value))
        cells.append(f"<td{marks}>{fmt(value)}{ci}</td>")
    return cells


def _delta_cell(cmp: Mapping[str, Any]) -> str:
    diff, low, high = (number(cmp.get(key)) for key in ("mean_diff", "ci_low", "ci_high"))
    if diff is None:
        return "<td>—</td>"
    sign = (
        "sig-up"
        if low is not None and low > 0
        else "sig-down"
        if high is not None and high < 0
        else ""
    )
    tip = f"p (t-test) {p_value(number(cmp.get('p_ttest')))}, n = {cmp.get('n_users', '?')} users"
    ci = f"[{fmt(low, signed=True)}, {fmt(high, signed=True)}]"
    return (
        f"<td{attrs(title=tip, data_value=repr(diff))}><span{attrs(class_=sign or None)}>"
        f'{fmt(diff, signed=True)}</span><span class="ci">{ci}</span></td>'
    )


def slices_section(data: ReportData, figures: dict[str, FigureJson]) -> Section:
    k = data.k
    caption = (
        f"Where each model wins: NDCG@{k} for users grouped by how many interactions they had in "
        "training (cold = none), then for items grouped by popularity. Hover a bar for the "
        "difference from the baseline in that slice."
    )
    body = "<h3>By user history length</h3>"
    history = history_slice_bars(data)
    body += chart("fig-history-slices", history, figures) or missing(
        "no per-slice metrics (slices)", RERUN
    )
    body += "<h3>By item popularity</h3>"
    sizes = item_slice_sizes(data)
    items = item_slice_bars(data)
    if items is None:
        body += missing("no item-popularity slices (item_slices)", RERUN)
    else:
        described = "; ".join(
            f"{esc(group)}: {n_items:,} items, {n_test:,} test interactions"
            for group, (n_items, n_test) in sizes.items()
        )
        body += (
            '<p class="caption">Head = the 20% most popular items in training, tail = the rest '
            f"({described}). Left: how many test interactions on each group the top-{k} lists "
            "recovered. Right: how much of the lists goes to the tail: more tail slots with "
            "little recall loss means less popularity bias.</p>"
        )
        body += chart("fig-item-slices", items, figures)
    return Section("slices", "Slices", caption, body)
