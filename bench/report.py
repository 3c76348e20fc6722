"""The table the harness prints, and the issue's targets checked against one run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Check", "postgres_table", "render", "targets"]


@dataclass(frozen=True)
class Check:
    name: str
    target: str
    measured: str
    met: bool | None  # None: not measured in this run

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "measured": self.measured,
            "met": self.met,
        }


def _on_postgres(result: dict[str, Any]) -> bool:
    return bool(result["extra"].get("store") == "postgresql")


def _find(results: list[dict[str, Any]], scenario: str, n: int | None, prefix: str) -> Any:
    """The first result of `scenario` (and `n`) whose system starts with `prefix`; the
    targets are SQLite's, so PostgreSQL's rows are not among them."""
    for r in results:
        if (
            r["scenario"] == scenario
            and (n is None or r["n"] == n)
            and r["system"].startswith(prefix)
            and not _on_postgres(r)
        ):
            return r
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _at_least(
    name: str, ratio: float | None, minimum: float, beside: str = "", *, lower: bool = False
) -> Check:
    """A ratio target: met when `ratio` >= `minimum`; not measured when it is None."""
    target = f">= {minimum:g}x" + (" lower" if lower else "")
    measured = f"{_x(ratio)} ({beside})" if beside else _x(ratio)
    return Check(name, target, measured, None if ratio is None else ratio >= minimum)


def targets(
    results: list[dict[str, Any]],
    bursts: tuple[int, ...],
    delay: tuple[float, float] = (1.0, 3.0),
) -> list[Check]:
    """The issue's targets (issue 23: the fast-agent ones against the ledger floor of the
    same run), at 10,000 schedules (or the largest burst of a quick run)."""
    n = 10_000 if 10_000 in bursts else max(bursts)
    checks: list[Check] = []
    claim = _find(results, "claim-only", n, "tickler")
    aps_claim = _find(results, "claim-only", n, "apscheduler")
    floor = _find(results, "claim-only", n, "ledger floor")
    if claim:
        vs_floor = _ratio(claim["rate"], floor and floor["rate"])
        vs_aps = _ratio(claim["rate"], aps_claim and aps_claim["rate"])
        rates = _beside(claim, floor)
        checks += [
            _at_least(f"claim-only {n:,}: vs the ledger floor", vs_floor, 0.6, rates),
            _at_least(f"claim-only {n:,}: vs APScheduler's store", vs_aps, 20),
        ]
    tickler = _find(results, "burst", n, "tickler")
    aps = _find(results, "burst", n, "apscheduler, grace")
    burst_floor = _find(results, "burst", n, "ledger floor")
    if tickler:
        vs_floor = _ratio(tickler["rate"], burst_floor and burst_floor["rate"])
        vs_aps = _ratio(tickler["rate"], aps and aps["rate"])
        lag = _ratio(aps and aps["lag_p99"], tickler["lag_p99"])
        rates = _beside(tickler, burst_floor)
        checks += [
            _at_least(f"burst {n:,}: vs the burst floor", vs_floor, 0.85, rates),
            _at_least(f"burst {n:,}: vs APScheduler", vs_aps, 5),
            _at_least(f"burst {n:,}: lag p99 below APScheduler's", lag, 5, lower=True),
            Check(
                f"burst {n:,}: dropped fires", "0", str(tickler["dropped"]), tickler["dropped"] == 0
            ),
        ]
    checks += _slow_agent_checks(results)
    checks += _fairness_checks(results, delay)
    checks += _million_checks(results)
    idle = _find(results, "idle", None, "tickler")
    if idle:
        pct = idle["extra"]["cpu_percent_of_one_core"]
        checks += [
            Check(f"idle {idle['n']:,}: CPU", "< 1% of a core", f"{pct:.2f}%", pct < 1),
            Check(
                f"idle {idle['n']:,}: RSS",
                "< 150 MB",
                f"{idle['peak_rss_mb']:.0f} MB",
                idle["peak_rss_mb"] < 150,
            ),
        ]
    start = _find(results, "startup", None, "tickler")
    if start:
        first = start["extra"].get("first_fire_s")
        checks.append(
            Check(
                f"startup {start['n']:,}: first fire",
                "<= 2 s",
                "none" if first is None else f"{first:.2f} s",
                first is not None and first <= 2,
            )
        )
    steady = _find(results, "steady", None, "tickler")
    if steady:
        extra = steady["extra"]
        once = (
            steady["dropped"] == 0
            and extra.get("doubled", 0) == 0
            and extra.get("succeeded") == extra.get("expected")
        )
        checks.append(
            Check(
                f"steady {steady['n']:,}: every fire exactly once",
                "yes",
                f"{extra.get('succeeded')}/{extra.get('expected')} succeeded, "
                f"{extra.get('doubled', 0)} doubled",
                once,
            )
        )
    return checks


def _beside(tickler: dict[str, Any], floor: dict[str, Any] | None) -> str:
    """Tickler's fires/s beside the floor's of the same run (when it ran)."""
    mine = f"{tickler['rate'] or 0:,.0f}"
    if floor is None or not floor["rate"]:
        return f"{mine} fires/s; no floor in this run"
    return f"{mine} vs {floor['rate']:,.0f} fires/s"


def _slow_agent_checks(results: list[dict[str, Any]]) -> list[Check]:
    """Every system's slow-agent figures; the verdicts are Tickler's targets, the
    other systems' rows are printed beside them against the same targets."""
    checks: list[Check] = []
    for r in results:
        if r["scenario"] != "slow-agent":
            continue
        e, who = r["extra"], "" if r["system"] == "tickler" else f" ({r['system']})"
        name = f"slow agent {r['n']:,}{who}"
        vs = e.get("vs_bound")
        seconds = "none" if r["seconds"] is None else f"{r['seconds']:.1f} s"
        checks += [
            Check(
                f"{name}: time vs bound",
                "<= 1.15x",
                f"{_x(vs)} ({seconds}; bound {e['bound_s']:.1f} s; "
                f"{e.get('agent_peak_in_flight', 0):,} in flight at most)",
                None if vs is None else vs <= 1.15,
            ),
            Check(
                f"{name}: peak RSS",
                "< 300 MB",
                f"{r['peak_rss_mb']:.0f} MB",
                r["peak_rss_mb"] < 300,
            ),
            Check(
                f"{name}: dropped / doubled",
                "0 / 0",
                f"{r['dropped']} / {e.get('doubled', 0)}",
                r["dropped"] == 0 and e.get("doubled", 0) == 0,
            ),
        ]
    return checks


def _fairness_checks(results: list[dict[str, Any]], delay: tuple[float, float]) -> list[Check]:
    """Chat B's fire lag: <= 1 s to the fast stub, <= one agent latency (the mean) +
    0.5 s to the slow one; plain due order and APScheduler against the same bound."""
    checks: list[Check] = []
    mean = sum(delay) / 2
    for r in results:
        if r["scenario"] != "fairness":
            continue
        e = r["extra"]
        slow = e["agent"] == "slow"
        bound, target = (mean + 0.5, f"<= {mean + 0.5:g} s") if slow else (1.0, "<= 1 s")
        lag = e.get("b_lag_s")
        where = f", round {e['b_round']} of {e['rounds']}" if e.get("b_round") else ""
        checks.append(
            Check(
                f"fairness {r['n']:,} ({r['system']}): B's lag",
                target,
                "none" if lag is None else f"{lag:.3f} s{where}",
                lag is not None and lag <= bound,
            )
        )
    return checks


def fairness_place(extra: dict[str, Any]) -> str:
    """Where chat B's fire went out: its dispatch round (Tickler's) and its place."""
    where = f"round {extra['b_round']} of {extra['rounds']}, " if extra.get("b_round") else ""
    return f"{where}number {extra.get('b_position') or 0:,} of {extra.get('dispatched') or 0:,}"


def _million_checks(results: list[dict[str, Any]]) -> list[Check]:
    checks: list[Check] = []
    for r in results:
        if r["scenario"] != "million":
            continue
        e, n = r["extra"], r["n"]
        if e["part"] == "idle":
            pct = e["cpu_percent_of_one_core"]
            checks += [
                Check(f"million ({n:,}): idle RSS", "< 200 MB", f"{r['peak_rss_mb']:.0f} MB",
                      r["peak_rss_mb"] < 200),
                Check(f"million ({n:,}): idle CPU over {r['seconds']:g} s", "< 1% of a core",
                      f"{pct:.2f}%", pct < 1),
            ]  # fmt: skip
        elif e["part"] == "startup":
            first = e.get("first_fire_s")
            checks.append(
                Check(
                    f"million ({n:,}): start-up to first fire",
                    "< 3 s",
                    "none" if first is None else f"{first:.2f} s",
                    first is not None and first < 3,
                )
            )
        elif e["part"] == "plans":
            claim = [line for name, plan in e["plans"].items() if "claim" in name for line in plan]
            scans = [line for line in claim if line.startswith("SCAN schedules")]
            searched = any(line.startswith("SEARCH schedules USING") for line in claim)
            checks.append(
                Check(
                    f"million ({n:,}): due query plan",
                    "index search",
                    "; ".join(scans) if scans else "SEARCH schedules USING an index",
                    searched and not scans,
                )
            )
    return checks


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def postgres_table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tickler's bursts on SQLite and on PostgreSQL side by side: one row per burst and
    store, with the ratio to SQLite's fires/s in the same run."""
    rows: list[dict[str, Any]] = []
    for sqlite in results:
        if sqlite["system"] != "tickler" or sqlite["scenario"] not in ("burst", "claim-only"):
            continue
        if _on_postgres(sqlite):
            continue
        same = [
            r
            for r in results
            if _on_postgres(r) and (r["scenario"], r["n"]) == (sqlite["scenario"], sqlite["n"])
        ]
        if not same:
            continue
        for r in [sqlite, *same]:
            extra = r["extra"]
            rows.append(
                {
                    "scenario": r["scenario"],
                    "n": r["n"],
                    "store": f"PostgreSQL x{extra['replicas']}" if _on_postgres(r) else "SQLite",
                    "rate": r["rate"],
                    "vs_sqlite": _ratio(r["rate"], sqlite["rate"]),
                    "lag_p99": r["lag_p99"],
                    "cpu_us_per_fire": extra.get("cpu_us_per_fire"),
                    "server_cpu_us_per_fire": extra.get("server_cpu_us_per_fire"),
                    "dropped": r["dropped"],
                    "doubled": extra.get("doubled", 0),
                    "per_engine": extra.get("ledger", {}).get("attempts_per_engine"),
                }
            )
    return rows


def _postgres_lines(report: dict[str, Any]) -> list[str]:
    where = report.get("postgres")
    if isinstance(where, str):
        return ["", f"PostgreSQL rows {where}"]
    rows = postgres_table(report["results"])
    if not rows:
        return []
    server = "" if not where else f" (PostgreSQL {where.get('version')})"
    lines = [
        "",
        f"Tickler on PostgreSQL beside SQLite, measured in this run{server}",
        f"  {'burst':<20}{'store':<16}{'fires/s':>9}{'vs SQLite':>10}{'lag p99':>9}"
        f"{'CPU us/fire':>12}{'server us/fire':>15}{'dropped':>8}{'doubled':>8}  fires per engine",
    ]
    for r in rows:
        engines = "/".join(map(str, r["per_engine"])) if r["per_engine"] else "-"
        lines.append(
            f"  {r['scenario'] + ' ' + format(r['n'], ','):<20}{r['store']:<16}"
            f"{_num(r['rate'], ',.0f'):>9}{_x(r['vs_sqlite']):>10}{_num(r['lag_p99'], '.3f'):>9}"
            f"{_num(r['cpu_us_per_fire'], ',.0f'):>12}"
            f"{_num(r['server_cpu_us_per_fire'], ',.0f'):>15}"
            f"{r['dropped']:>8}{r['doubled']:>8}  {engines}"
        )
    return lines


def render(report: dict[str, Any]) -> str:
    results: list[dict[str, Any]] = report["results"]
    lines: list[str] = []
    quick = " (QUICK MODE: small sizes, not the issue's)" if report["mode"] == "quick" else ""
    lines.append(
        f"Tickler benchmarks{quick}; concurrency {report['concurrency']}, "
        f"limit loop and APScheduler post with {report['client']}; "
        f"every system on the {report.get('event_loop', 'asyncio')} event loop"
    )
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["scenario"], r["n"]), []).append(r)
    for (scenario, n), rows in groups.items():
        lines.append("")
        if scenario == "probe":
            lines.append(f"HTTP clients, {n:,} POSTs at concurrency {report['concurrency']}")
            for name, rate in rows[0]["extra"].items():
                lines.append(f"  {name:<26}{rate:>10,.0f} POST/s")
            continue
        lines.append(f"{scenario}, {n:,} schedules")
        if scenario in ("burst", "claim-only", "steady"):
            lines.append(
                f"  {'system':<34}{'fires/s':>9}{'lag p50':>9}{'lag p99':>9}{'lag max':>9}"
                f"{'RSS MB':>8}{'dropped':>8}{'CPU us/fire':>12}"
            )
            for r in rows:
                lines.append(
                    f"  {r['system']:<34}{_num(r['rate'], ',.0f'):>9}"
                    f"{_num(r['lag_p50'], '.3f'):>9}{_num(r['lag_p99'], '.3f'):>9}"
                    f"{_num(r['lag_max'], '.3f'):>9}{r['peak_rss_mb']:>8.0f}{r['dropped']:>8}"
                    f"{_num(r['extra'].get('cpu_us_per_fire'), ',.0f'):>12}"
                )
                for note in r["notes"]:
                    lines.append(f"      {note}")
            base = rows[0]
            for r in rows[1:]:
                if _on_postgres(r):
                    ratio = _ratio(r["rate"], base["rate"])
                    lines.append(
                        f"  PostgreSQL x{r['extra']['replicas']} / SQLite: {_x(ratio)} fires/s"
                    )
                    continue
                ratio = _ratio(base["rate"], r["rate"])
                lines.append(f"  tickler vs {r['system']}: {_x(ratio)} fires/s")
            if scenario == "steady":
                e = base["extra"]
                lines.append(
                    f"  {e.get('succeeded')}/{e.get('expected')} fires succeeded, "
                    f"{e.get('distinct_fires')} distinct, agent saw {e.get('agent_posts')} POSTs "
                    f"for {e.get('agent_distinct')} keys"
                )
        elif scenario == "slow-agent":
            lines.append(
                f"  {'system':<34}{'seconds':>9}{'bound':>8}{'vs bound':>9}{'lag p99':>9}"
                f"{'RSS MB':>8}{'dropped':>8}{'doubled':>8}{'in flight':>10}{'CPU us/fire':>12}"
            )
            for r in rows:
                e = r["extra"]
                lines.append(
                    f"  {r['system']:<34}{_num(r['seconds'], '.1f'):>9}{e['bound_s']:>8.1f}"
                    f"{_x(e.get('vs_bound')):>9}{_num(r['lag_p99'], '.3f'):>9}"
                    f"{r['peak_rss_mb']:>8.0f}{r['dropped']:>8}{e.get('doubled', 0):>8}"
                    f"{e.get('agent_peak_in_flight', 0):>10,}"
                    f"{_num(e.get('cpu_us_per_fire'), ',.0f'):>12}"
                )
                for note in r["notes"]:
                    lines.append(f"      {note}")
        elif scenario == "fairness":
            for r in rows:
                lag = r["extra"].get("b_lag_s")
                lines.append(
                    f"  {r['system']:<44} chat B's lag {_num(lag, '.3f')} s "
                    f"({fairness_place(r['extra'])})"
                )
        elif scenario == "million":
            for r in rows:
                e = r["extra"]
                if e["part"] == "idle":
                    lines.append(
                        f"  seeded in {e['seeded_s']:.1f} s (bulk SQL); idle: CPU "
                        f"{r['cpu_s']:.3f} s over {r['seconds']:g} s "
                        f"({e['cpu_percent_of_one_core']:.2f}% of a core), peak RSS "
                        f"{r['peak_rss_mb']:.0f} MB"
                    )
                elif e["part"] == "startup":
                    lines.append(
                        f"  start-up: first fire {_num(e.get('first_fire_s'), '.2f')} s after "
                        f"exec (one schedule due at start); peak RSS {r['peak_rss_mb']:.0f} MB"
                    )
                else:
                    lines.append("  EXPLAIN QUERY PLAN of the engine's due queries:")
                    for name, plan in e["plans"].items():
                        lines.append(f"    {name}:")
                        lines += [f"      {line}" for line in plan]
        elif scenario == "idle":
            for r in rows:
                lines.append(
                    f"  {r['system']:<20} CPU {r['cpu_s']:.3f} s over {r['seconds']:g} s "
                    f"({r['extra']['cpu_percent_of_one_core']:.2f}% of a core), "
                    f"peak RSS {r['peak_rss_mb']:.0f} MB"
                )
        elif scenario == "startup":
            for r in rows:
                e = r["extra"]
                lines.append(
                    f"  {r['system']}: first fire {_num(e.get('first_fire_s'), '.2f')} s after "
                    f"process start; all {e['missed']:,} missed fires recorded after "
                    f"{_num(e.get('all_missed_recorded_s'), '.2f')} s; peak RSS "
                    f"{r['peak_rss_mb']:.0f} MB"
                )
    lines += _postgres_lines(report)
    lines.append("")
    lines.append(f"Targets  {'':<36} {'target':<15} {'verdict':<13} measured")
    for t in report["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"  {t['name']:<44} {t['target']:<15} {verdict:<13} {t['measured']}")
    return "\n".join(lines)
