"""The report of ``bench/serving_latency.py``: one table per use case, and the issue's goals.

The goals are what the benchmark is run to check (fraud p99 <= 8 ms and feed p99 <= 50 ms at 8
clients, BentoML's RPS at 32 clients at least half of bare FastAPI's), so they live with the
table that states whether they hold.
"""

from __future__ import annotations

from tabulate import tabulate

from bench.serving_world import ENDPOINTS

P99_GOAL_MS = {"fraud": 8.0, "feed": 50.0}  # at GOAL_CLIENTS
GOAL_CLIENTS = 8
RPS_GOAL_CLIENTS, RPS_GOAL_RATIO = 32, 0.5


def report(
    use_case: str, rows: list[dict], workers: int = 1, started: dict[str, int] | None = None
) -> str:
    by = {(r["target"], r["clients"]): r for r in rows}
    table = []
    for r in rows:
        base = by.get(("fastapi", r["clients"]))
        p99_ratio = rps_ratio = ""
        if r["target"] == "bentoml" and base:
            p99_ratio = f"{r['p99_ms'] / base['p99_ms']:.2f}"
            rps_ratio = f"{r['rps'] / base['rps']:.2f}"
        table.append(
            [
                r["target"],
                r["clients"],
                r["requests"],
                r["errors"],
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['rps']:.0f}",
                p99_ratio,
                rps_ratio,
                r.get("split", ""),
                f"{r['load']:.2f}" if "load" in r else "",
            ]
        )
    headers = ["target", "clients", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "RPS"]
    headers += ["p99 B/F", "RPS B/F", "conns/worker", "load 1m"]
    header = f"== {use_case} ({ENDPOINTS[use_case]}), {workers} worker(s) per server"
    if started:
        header += " (started: " + ", ".join(f"{t} {n}" for t, n in started.items()) + ")"
    header += " =="
    lines = [header, tabulate(table, headers, "github")]
    goal = P99_GOAL_MS.get(use_case)
    for target in ("fastapi", "bentoml"):
        r = by.get((target, GOAL_CLIENTS))
        if goal is not None and r:
            met = "met" if r["p99_ms"] <= goal else "NOT met"
            lines.append(
                f"goal p99 <= {goal:g} ms at {GOAL_CLIENTS} clients, {target}: "
                f"{r['p99_ms']:.2f} ms -> {met}"
            )
    bento, base = by.get(("bentoml", RPS_GOAL_CLIENTS)), by.get(("fastapi", RPS_GOAL_CLIENTS))
    if bento and base:
        ratio = bento["rps"] / base["rps"]
        met = "met" if ratio >= RPS_GOAL_RATIO else "NOT met"
        lines.append(
            f"goal RPS >= {RPS_GOAL_RATIO:g}x FastAPI at {RPS_GOAL_CLIENTS} clients: "
            f"{bento['rps']:.0f} vs {base['rps']:.0f} = {ratio:.2f}x -> {met}"
        )
    return "\n".join(lines)
