"""`infergraph replay --html REPORT`: the replay report as one self-contained HTML page.

Pure: `html_report(report_json)` takes `router.replay.Report.as_json()` and returns the page.
The plots are SVG drawn here (a stacked bar per route: agreeing and differing requests; and,
for live replays, the latency distributions as cumulative curves), so the report needs neither
matplotlib (the bench extra) nor a network connection to open.
"""

from __future__ import annotations

from html import escape
from typing import Any, Final

import orjson

AGREE: Final = "#3a7d44"
DIFFER: Final = "#c0392b"
RECORDED: Final = "#1f77b4"
CANDIDATE: Final = "#ff7f0e"
WIDTH: Final = 640  # px: the plots' width, readable on a laptop and in a CI artefact viewer


def agreement_svg(by_route: dict[str, dict[str, int]]) -> str:
    """One bar per route, agreeing (green) then differing (red), scaled to the largest route."""
    label_width, bar_height, gap = 220, 18, 8
    height = max(1, len(by_route)) * (bar_height + gap) + gap
    largest = max((v["requests"] for v in by_route.values()), default=1) or 1
    scale = (WIDTH - label_width - 80) / largest
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="agreement by route">'
    ]
    for row, (route, counts) in enumerate(by_route.items()):
        y = gap + row * (bar_height + gap)
        agreeing, total = counts["agreeing"], counts["requests"]
        ok_width, bad_width = agreeing * scale, (total - agreeing) * scale
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end" font-size="12">'
            f"{escape(route)}</text>"
        )
        parts.append(
            f'<rect x="{label_width}" y="{y}" width="{ok_width:.1f}" height="{bar_height}" '
            f'fill="{AGREE}"><title>{agreeing} agree</title></rect>'
        )
        parts.append(
            f'<rect x="{label_width + ok_width:.1f}" y="{y}" width="{bad_width:.1f}" '
            f'height="{bar_height}" fill="{DIFFER}"><title>{total - agreeing} differ</title></rect>'
        )
        parts.append(
            f'<text x="{label_width + ok_width + bad_width + 6:.1f}" y="{y + 13}" '
            f'font-size="12">{agreeing}/{total}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def latency_svg(recorded: list[float], candidate: list[float]) -> str:
    """The two latency distributions as cumulative curves (x: ms, y: share of requests)."""
    height, margin = 240, 40
    top = max([*recorded, *candidate, 1e-9])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="latency distributions">',
        f'<line x1="{margin}" y1="{height - margin}" x2="{WIDTH - 10}" y2="{height - margin}" '
        'stroke="#444"/>',
        f'<line x1="{margin}" y1="10" x2="{margin}" y2="{height - margin}" stroke="#444"/>',
        f'<text x="{WIDTH - 10}" y="{height - 8}" text-anchor="end" font-size="12">'
        f"{top:.1f} ms</text>",
        f'<text x="{margin}" y="{height - 8}" font-size="12">0 ms</text>',
        '<text x="4" y="16" font-size="12">100%</text>',
    ]
    for values, colour, name in (
        (recorded, RECORDED, "recorded"),
        (candidate, CANDIDATE, "candidate"),
    ):
        ordered = sorted(values)
        points = []
        for index, value in enumerate(ordered, 1):
            x = margin + value / top * (WIDTH - 10 - margin)
            y = (height - margin) - index / len(ordered) * (height - margin - 10)
            points.append(f"{x:.1f},{y:.1f}")
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{" ".join(points)}"><title>{name}</title></polyline>'
        )
    parts.append(
        f'<text x="{WIDTH - 10}" y="24" text-anchor="end" font-size="12" fill="{RECORDED}">'
        f'recorded</text><text x="{WIDTH - 10}" y="40" text-anchor="end" font-size="12" '
        f'fill="{CANDIDATE}">candidate</text></svg>'
    )
    return "".join(parts)


def html_report(report: dict[str, Any]) -> str:
    summary = report["summary"]
    title = (
        f"Replay: {summary['differing']} of {summary['requests']} requests differ "
        f"({report['mode']})"
    )
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p>Candidate graph <code>{escape(report['graphHash'])}</code>; recorded on "
        + ", ".join(f"<code>{escape(h)}</code> ({n})" for h, n in report["recordedGraphs"].items())
        + f"; tolerance abs {report['tolerance']['abs']:g}, "
        f"rel {report['tolerance']['rel']:g}.</p>",
        "<h2>Agreement by route</h2>",
        agreement_svg(summary["byRoute"]),
    ]
    latencies = [r["latencyMs"] for r in report["requests"] if "latencyMs" in r]
    if latencies:
        body += [
            "<h2>Latency</h2>",
            latency_svg([x["recorded"] for x in latencies], [x["candidate"] for x in latencies]),
            "<pre>" + escape(orjson.dumps(summary["latencyMs"]).decode()) + "</pre>",
        ]
    body.append("<h2>Requests that differ</h2>")
    differing = [r for r in report["requests"] if r["differs"]]
    if not differing:
        body.append("<p>None.</p>")
    for request in differing:
        details = {
            k: request[k]
            for k in ("status", "decisions", "stepsAdded", "stepsRemoved", "answer", "errors")
            if request[k] and (k != "status" or request[k]["recorded"] != request[k]["candidate"])
        }
        body.append(
            f"<h3>{escape(request['id'])} <small>{escape(request['where'])}, route "
            f"{escape(request['route'])}</small></h3><pre>"
            + escape(orjson.dumps(details, option=orjson.OPT_INDENT_2).decode())
            + "</pre>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>body{{font-family:sans-serif;max-width:60em;"
        "margin:2em auto}pre{background:#f4f4f4;padding:.5em;overflow:auto}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
