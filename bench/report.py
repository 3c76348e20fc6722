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


def targets(results: list[dict[str, Any]], bursts: tuple[int, ...]) -> list[Check]:
    """The issue's targets, at 10,000 schedules (or the largest burst of a quick run)."""
    n = 10_000 if 10_000 in bursts else max(bursts)
    checks: list[Check] = []
    tickler = _find(results, "burst", n, "tickler")
    limit = _find(results, "burst", n, "limit")
    aps = _find(results, "burst", n, "apscheduler, grace")
    burst_floor = _find(results, "burst", n, "ledger floor")
    if tickler:
        vs_limit = _ratio(tickler["rate"], limit and limit["rate"])
        # What the ledger itself reaches against the same limit, in the same run.
        floor_vs_limit = _ratio(burst_floor and burst_floor["rate"], limit and limit["rate"])
        beside = "" if floor_vs_limit is None else f" (ledger floor {_x(floor_vs_limit)})"
        vs_aps = _ratio(tickler["rate"], aps and aps["rate"])
        lag = _ratio(aps and aps["lag_p99"], tickler["lag_p99"])
        checks += [
            Check(
                f"burst {n:,}: vs limit loop",
                ">= 0.80x",
                _x(vs_limit) + beside,
                None if vs_limit is None else vs_limit >= 0.8,
            ),
            Check(
                f"burst {n:,}: vs APScheduler",
                ">= 5x",
                _x(vs_aps),
                None if vs_aps is None else vs_aps >= 5,
            ),
            Check(
                f"burst {n:,}: lag p99 below APScheduler's",
                ">= 5x lower",
                _x(lag),
                None if lag is None else lag >= 5,
            ),
            Check(
                f"burst {n:,}: dropped fires", "0", str(tickler["dropped"]), tickler["dropped"] == 0
            ),
        ]
    claim = _find(results, "claim-only", n, "tickler")
    aps_claim = _find(results, "claim-only", n, "apscheduler")
    floor = _find(results, "claim-only", n, "ledger floor")
    if claim:
        vs_aps = _ratio(claim["rate"], aps_claim and aps_claim["rate"])
        # The target beside what the ledger itself allows on this machine in this run.
        ceiling = f" (ledger floor {floor['rate']:,.0f})" if floor and floor["rate"] else ""
        checks += [
            Check(
                f"claim-only {n:,}: fires/s",
                ">= 20,000",
                f"{claim['rate'] or 0:,.0f}{ceiling}",
                (claim["rate"] or 0) >= 20_000,
            ),
            Check(
                f"claim-only {n:,}: vs APScheduler's store",
                ">= 20x",
                _x(vs_aps),
                None if vs_aps is None else vs_aps >= 20,
            ),
        ]
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
