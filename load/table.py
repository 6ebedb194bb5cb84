"""The bench's results as a Markdown table, plus the derived figures and targets."""

from typing import Any

CONCURRENCY = (1, 16, 64)


def _cell(entry: dict[str, Any] | None, key: str, fmt: str) -> str:
    if not entry or key not in entry:
        return "-"
    s = entry[key]
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def render(report: dict[str, Any]) -> str:
    env = report["environment"]
    stacks = ", ".join(f"{k} {v}" for k, v in env.get("http_stacks", {}).items())
    lines = [
        f"Bench {env['time_utc']}: {env['cores']} cores ({env['cpu']}), load average at start "
        f"{' '.join(env['loadavg_at_start'])}, at the end "
        f"{' '.join(env.get('loadavg_at_end', ['?']))}; Python {env['python']}, "
        f"aiohttp {env['aiohttp']}, {stacks}, "
        f"uvloop {env['uvloop']}, {env['wrk']}, {env['nginx']}. wrk and backends on core "
        f"{env['cores_used']['wrk+backends']}, server on core {env['cores_used']['server']}. "
        "Medians (min-max) over the repeats.",
        "",
        "| scenario | c | req/s | p50 µs | p90 µs | p99 µs | CPU s/1k req | peak RSS MB "
        "| load 1m before→after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in report["scenarios"].items():
        for c in CONCURRENCY:
            entry = result.get(f"c{c}")
            rss = f"{result['peak_rss_mb']:.0f}" if "peak_rss_mb" in result and c == 64 else ""
            errors = f" ⚠ {entry['errors']} errors" if entry and entry.get("errors") else ""
            load = (
                f"{result['loadavg_before']:.2f}→{result['loadavg_after']:.2f}"
                if c == 1 and "loadavg_after" in result
                else ""
            )
            lines.append(
                f"| {name}{errors} | {c} | {_cell(entry, 'rps', '{:.0f}')} | "
                f"{_cell(entry, 'p50_us', '{:.0f}')} | {_cell(entry, 'p90_us', '{:.0f}')} | "
                f"{_cell(entry, 'p99_us', '{:.0f}')} | {_cell(entry, 'cpu_s_per_1k', '{:.3f}')} | "
                f"{rss} | {load} |"
            )
    lines += ["", "| derived figure | value |", "|---|---:|"]
    for key, value in report.get("derived", {}).items():
        if isinstance(value, dict):
            for name, v in value.items():
                lines.append(f"| {key}: {name} | {v:.0f} |")
        else:
            lines.append(f"| {key} | {value:.2f} |")
    rows = report.get("targets")
    if rows:
        lines += ["", "| issue 15 target | measured | met |", "|---|---:|:---:|"]
        for row in rows:
            lines.append(
                f"| {row['target']} | {row['value']:.3g} | {'yes' if row['met'] else 'NO'} |"
            )
    scaling = report.get("scaling")
    if scaling:
        lines += ["", "| graph nodes | validate ms | compile ms | execute ms (in process) |"]
        lines.append("|---:|---:|---:|---:|")
        for row in scaling["graphs"]:
            lines.append(
                f"| {row['nodes']} | {row['validate_ms']:.2f} | {row['compile_ms']:.2f} | "
                f"{row['execute_ms']:.3f} |"
            )
        mem = scaling.get("in_flight")
        if mem:
            lines.append(
                f"\nMemory per in-flight request: {mem['kb_per_request']:.1f} KB "
                f"({mem['requests']} requests held by a {mem['delay_ms']:g} ms backend; "
                f"RSS {mem['idle_rss_mb']:.1f} -> {mem['loaded_rss_mb']:.1f} MB)."
            )
    endurance = report.get("endurance")
    if endurance and endurance["rss_start_mb"] is not None:
        lines.append(
            f"\nRSS under load ({endurance['seconds']} s, {endurance['connections']} connections, "
            f"{endurance['requests']} requests, 1-step Sequence): "
            f"{endurance['rss_start_mb']:.1f} MB after warm-up, {endurance['rss_end_mb']:.1f} MB "
            f"at the end ({endurance['growth']:+.1%}), max {endurance['rss_max_mb']:.1f} MB."
        )
    return "\n".join(lines) + "\n"
