"""The benchmark's output: the header, progress lines, the table, the targets of issue 7 and compact JSON."""

from __future__ import annotations

import argparse
from typing import Any

from load import LABELS, Figure

SHARED_CORES = ("wrk runs on the same machine and cores as the server under test, with the same settings "
                "for every target: its CPU time is taken from the servers, so every figure is lower than on "
                "a machine where the load comes from elsewhere.")

# name, scenario, share of the ceiling's requests/s, p99 limit in ms, times Isso's requests/s
GOALS = [
    ("thread read", "read", 0.60, 25.0, 50.0),
    ("revalidation (304)", "revalidate", 0.80, None, None),
    ("comment accepted", "post", 0.20, None, 10.0),
]
BIG_THREAD_MS = 50.0
RSS_LIMIT_MB = 150.0
RSS_FLAT_MB = 10.0
GROWTH = 0.20


def header(info: dict[str, Any], args: argparse.Namespace) -> str:
    return (f"machine: {info['cores']} cores ({info['cpu']}), {info['memory']} memory, Linux {info['kernel']}, "
            f"Python {info['python']}, SQLite {info['sqlite']}, uvicorn {info['uvicorn']}, {info['wrk']}\n"
            f"load average at start: {' '.join(map(str, info['load_average_at_start']))}\n"
            f"client: wrk -t{args.threads} -c{args.connections}, {args.runs} runs of {args.duration:g} s per figure "
            f"(median), {args.warmup:g} s warm-up\n{SHARED_CORES}\n")


def progress_line(name: str, scenario: str, figure: Figure) -> str:
    cpu = f"{figure.server_cpu_us:7.0f}" if figure.server_cpu_us is not None else "      -"
    return (f"  {name:28} {scenario:11} {figure.rps:9.1f} req/s  p50 {figure.p50_ms:7.2f} ms  "
            f"p99 {figure.p99_ms:8.2f} ms  server CPU {cpu} us/req  {_statuses(figure.statuses())}")


def _statuses(statuses: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(statuses.items()))


def _name(result: dict[str, Any]) -> str:
    if result["target"] == "comments":
        return f"comments/{result['backend']} ({result['size']:,})"
    if result["target"] == "isso":
        return f"isso 0.14 ({result['size']:,})"
    return "ceiling (bare Starlette)"


def _find(results: list[dict[str, Any]], target: str) -> dict[str, Any] | None:
    return next((r for r in results if r["target"] == target), None)


def _rps(result: dict[str, Any] | None, scenario: str) -> float | None:
    if result is None or scenario not in result.get("scenarios", {}):
        return None
    return float(result["scenarios"][scenario]["rps"])


def table(results: list[dict[str, Any]], goals: list[dict[str, Any]], skipped: list[str]) -> str:
    ceiling, isso = _find(results, "ceiling"), _find(results, "isso")
    rows = [("target", "scenario", "req/s", "p50 ms", "p99 ms", "of ceiling", "x Isso", "CPU us/req", "answers")]
    for result in results:
        for scenario, fig in result.get("scenarios", {}).items():
            base, peer = _rps(ceiling, scenario), _rps(isso, scenario)
            of_ceiling = f"{100 * fig['rps'] / base:.0f} %" if base and result is not ceiling else "-"
            times_isso = f"{fig['rps'] / peer:.1f}" if peer and result["target"] == "comments" else "-"
            cpu = fig.get("server_cpu_us")
            rows.append((_name(result), LABELS[scenario], f"{fig['rps']:.1f}", f"{fig['p50_ms']:.2f}",
                         f"{fig['p99_ms']:.2f}", of_ceiling, times_isso, "-" if cpu is None else f"{cpu:.0f}",
                         _statuses(fig["statuses"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [""] + ["  ".join(c.ljust(w) if i < 2 or i == 8 else c.rjust(w)
                              for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    lines.insert(2, "  ".join("-" * w for w in widths))
    for result in results:
        extra = []
        if "big_thread" in result:
            big = result["big_thread"]
            extra.append(f"{big['comments']:,}-comment thread, first page ({big['bytes']:,} bytes): uncached median "
                         f"{big['cold_ms_median']} ms (max {big['cold_ms_max']} ms), cached {big['warm_ms_median']} ms")
        if "durability" in result:
            d = result["durability"]
            extra.append(f"durability: {d['acknowledged']:,} comments acknowledged, {d['stored']:,} stored "
                         f"({'every one' if d['ok'] else 'SOME MISSING'}; {d['commit']})")
        if result.get("memory"):
            extra.append("worker memory: " + memory_line(result["memory"]))
        if extra:
            lines.append(f"\n{_name(result)}:\n  " + "\n  ".join(extra))
    if goals:
        lines.append("\ntargets (issue 7):")
        for goal in goals:
            mark = "met " if goal["met"] else "MISS"
            lines.append(f"  [{mark}] {goal['name']}: {goal['value']} (goal {goal['goal']})")
    for note in skipped:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def memory_line(samples: list[dict[str, Any]]) -> str:
    first, last = samples[0], samples[-1]
    peak = max((mb for s in samples for mb in s["worker_rss_mb"].values()), default=0.0)
    per = ", ".join(f"{mb:.0f}" for mb in last["worker_rss_mb"].values())
    start = ", ".join(f"{mb:.0f}" for mb in first["worker_rss_mb"].values())
    return f"{start} MB at start, {per} MB after {last['requests']:,} requests (peak {peak:.0f} MB)"


def _memory_growth(samples: list[dict[str, Any]]) -> tuple[float, int] | None:
    """The largest rise of one worker's memory over the soak (after every scenario had run once),
    and the requests it spanned; None without a soak."""
    soak = [s for s in samples if s["when"] == "soak"]
    if len(soak) < 2:
        return None
    first, last = soak[0]["worker_rss_mb"], soak[-1]["worker_rss_mb"]
    rise = max((last[pid] - first[pid] for pid in last if pid in first), default=0.0)
    return rise, soak[-1]["requests"] - soak[0]["requests"]


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target of issue 7 that these results can judge: value, goal, met."""
    out: list[dict[str, Any]] = []
    ceiling, isso = _find(results, "ceiling"), _find(results, "isso")

    def add(name: str, value: str, goal: str, met: bool) -> None:
        out.append({"name": name, "value": value, "goal": goal, "met": bool(met)})

    ours = [r for r in results if r["target"] == "comments"]
    for result in ours:
        label = f"{result['backend']}, {result['size']:,} comments"
        for name, scenario, share, p99, times in GOALS:
            fig = result.get("scenarios", {}).get(scenario)
            if fig is None:
                continue
            base = _rps(ceiling, scenario)
            if base:
                add(f"{name} vs ceiling ({label})", f"{100 * fig['rps'] / base:.0f} %", f">= {share:.0%}",
                    fig["rps"] >= share * base)
            if p99 is not None:
                add(f"{name} p99 at 64 connections ({label})", f"{fig['p99_ms']:.1f} ms", f"< {p99:g} ms",
                    fig["p99_ms"] < p99)
            if scenario == "revalidate":
                not_modified = fig["statuses"].get("304", 0)
                total = sum(fig["statuses"].values())
                add(f"revalidation answered 304 ({label})", f"{not_modified:,} of {total:,}", "all",
                    total > 0 and not_modified == total)
            peer = _rps(isso, scenario)
            if times is not None and peer:
                add(f"{name} vs Isso ({label})", f"{fig['rps'] / peer:.1f} x", f">= {times:g} x",
                    fig["rps"] >= times * peer)
        if "durability" in result:
            d = result["durability"]
            add(f"every accepted comment stored ({label})", f"{d['stored']:,} stored of {d['acknowledged']:,} "
                "acknowledged", "all", d["ok"])
        if "big_thread" in result:
            big = result["big_thread"]
            add(f"{big['comments']:,}-comment thread, first page, uncached ({label})",
                f"{big['cold_ms_median']} ms median",
                f"< {BIG_THREAD_MS:g} ms", big["cold_ms_median"] < BIG_THREAD_MS)
        if result.get("memory"):
            peak = max((mb for s in result["memory"] for mb in s["worker_rss_mb"].values()), default=0.0)
            served = result["memory"][-1]["requests"]
            add(f"worker memory over {served:,} requests ({label})", f"peak {peak:.0f} MB", f"< {RSS_LIMIT_MB:g} MB",
                peak < RSS_LIMIT_MB)
            growth = _memory_growth(result["memory"])
            if growth is not None:
                rise, span = growth
                add(f"worker memory flat over the soak's last {span:,} requests ({label})", f"{rise:+.1f} MB",
                    f"< +{RSS_FLAT_MB:g} MB", rise < RSS_FLAT_MB)
    for backend in sorted({r["backend"] for r in ours}):
        sized = sorted((r for r in ours if r["backend"] == backend), key=lambda r: r["size"])
        if len(sized) < 2:
            continue
        small, large = sized[0], sized[-1]
        for scenario in ("read", "post"):
            a, b = _rps(small, scenario), _rps(large, scenario)
            if a and b:
                add(f"growth {LABELS[scenario]} ({backend}, {small['size']:,} -> {large['size']:,})",
                    f"{100 * (b - a) / a:+.0f} %", f"within {GROWTH:.0%}", abs(b - a) <= GROWTH * a)
    return out


def compact(result: dict[str, Any]) -> dict[str, Any]:
    """A result without the single runs, for the JSON printed at the end."""
    out = {k: v for k, v in result.items() if k not in ("scenarios", "profiles")}
    out["scenarios"] = {s: {k: v for k, v in f.items() if k != "runs"} for s, f in result.get("scenarios", {}).items()}
    return out
