"""The /stats picture: runs per day stacked by outcome, the day's fire lag p95 and the
day's tokens, three panels over one time axis, as PNG bytes.

Drawn with matplotlib's object-oriented API on the Agg canvas (`Figure` plus
`FigureCanvasAgg`, never pyplot): no display and no global figure registry. Rendering is
CPU work of about 0.2-0.3 s (bench/RESULTS.md), so callers run it on a worker thread
(`render_png_async`) and the event loop keeps firing meanwhile; one render at a time,
because matplotlib's font and text caches are shared and not documented thread-safe.
Charts have a thread of their own, so a burst of chart requests queues there instead of
filling the loop's default executor that other work (exports, file reads) uses.

    ./dev python -m bot.stats_chart --sample docs/stats-sample.png
redraws the README's sample from a fixed, seeded month of runs."""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from scheduler.models import RunFigure, RunStatus, RunTrigger
from scheduler.stats import ChatStats, DayFigures, summarise

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["HEIGHT_PX", "WIDTH_PX", "render_png", "render_png_async", "sample_stats"]

_DPI = 100
WIDTH_PX = 900
HEIGHT_PX = 720

#: (field of DayFigures, legend label, colour): the stacking order, bottom up.
_OUTCOMES = (
    ("succeeded", "succeeded", "#2e7d32"),
    ("failed", "failed / dead", "#c62828"),
    ("skipped", "skipped", "#f9a825"),
    ("unknown", "unknown", "#6a1b9a"),
    ("other", "cancelled / in progress", "#9e9e9e"),
)


def _span(stats: ChatStats) -> str:
    hours = round((stats.until - stats.since).total_seconds() / 3600)
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"


def _labels(days: list[DayFigures]) -> tuple[list[int], list[str]]:
    """Tick positions and labels: every day for a week, about eight ticks for longer."""
    step = max(1, math.ceil(len(days) / 8))
    ticks = list(range(0, len(days), step))
    return ticks, [days[i].day.strftime("%a %d %b") for i in ticks]


def _tokens(value: float, _pos: object) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:.0f}"


#: Serialises renders (see the module docstring); /stats is rare, so nobody waits long.
_RENDER = threading.Lock()
#: The charts' own thread (created on the first chart, not at import).
_CHARTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stats-chart")


def render_png(stats: ChatStats) -> bytes:
    """The chart of `stats` as a PNG (WIDTH_PX x HEIGHT_PX); a window without runs gets
    a chart that says so."""
    with _RENDER:
        return _draw(stats)


def _draw(stats: ChatStats) -> bytes:
    # matplotlib is imported by the first chart, not with the bot: it is about half of
    # the bot's start-up imports (a second on a busy core), paid at every start and
    # restart for a picture few chats ask for.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig = Figure(figsize=(WIDTH_PX / _DPI, HEIGHT_PX / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    title = f"Tickler /stats: the last {_span(stats)}"
    if stats.total == 0:
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.55, "No runs in this window", ha="center", va="center", fontsize=22)
        ax.text(0.5, 0.42, title, ha="center", va="center", fontsize=12, color="#555555")
        return _png(fig)

    days = stats.days
    x = list(range(len(days)))
    runs_ax, lag_ax, tok_ax = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 2], "hspace": 0.12}
    )
    fig.suptitle(title, fontsize=13, fontweight="bold")

    bottom = [0] * len(days)
    for name, label, colour in _OUTCOMES:
        heights = [getattr(d, name) for d in days]
        if not any(heights):
            continue
        runs_ax.bar(x, heights, bottom=bottom, color=colour, label=label, width=0.8)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    runs_ax.set_ylabel("runs per day")
    runs_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    runs_ax.legend(loc="upper left", fontsize=8, ncols=5, frameon=False)
    runs_ax.set_ylim(0, max(max(bottom) * 1.3, 1))

    lags = [d.lag_p95.total_seconds() if d.lag_p95 is not None else math.nan for d in days]
    known = [v for v in lags if not math.isnan(v)]
    minutes = bool(known) and max(known) >= 120
    shown = [v / 60 for v in lags] if minutes else lags
    lag_ax.plot(x, shown, color="#1565c0", marker="o", markersize=3, linewidth=1.5)
    lag_ax.set_ylabel("fire lag p95 (min)" if minutes else "fire lag p95 (s)")
    lag_ax.set_ylim(bottom=0)
    if not known:
        lag_ax.text(
            0.5,
            0.5,
            "no on-time fires started",
            transform=lag_ax.transAxes,
            ha="center",
            va="center",
            color="#777777",
        )

    tokens = [d.tokens for d in days]
    tok_ax.bar(x, tokens, color="#00838f", width=0.8)
    tok_ax.set_ylabel("tokens per day")
    tok_ax.yaxis.set_major_formatter(FuncFormatter(_tokens))
    if not any(tokens):
        tok_ax.text(
            0.5,
            0.5,
            "the agent reported no token use",
            transform=tok_ax.transAxes,
            ha="center",
            va="center",
            color="#777777",
        )

    ticks, labels = _labels(days)
    tok_ax.set_xticks(ticks, labels, fontsize=8)
    tok_ax.set_xlim(-0.6, len(days) - 0.4)
    for ax in (runs_ax, lag_ax, tok_ax):
        ax.grid(axis="y", color="#e0e0e0", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.93, bottom=0.07)
    return _png(fig)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" text chunk: the same figures give the same bytes on every version.
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


async def render_png_async(stats: ChatStats) -> bytes:
    """render_png on the charts' thread: the event loop keeps firing schedules meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(_CHARTS, render_png, stats)


def sample_stats(days: int = 30, seed: int = 21) -> ChatStats:
    """A made-up but plausible month of one chat (three daily schedules, an hourly one
    in office hours), the same for the same seed: the README's picture and the bench."""
    rng = random.Random(seed)
    until = datetime(2026, 12, 1, tzinfo=UTC)
    since = until - timedelta(days=days)
    figures: list[RunFigure] = []
    for n in range(days):
        day = since + timedelta(days=n)
        fires = [day + timedelta(hours=h) for h in (7, 8, 18)]
        if day.weekday() < 5:
            fires += [day + timedelta(hours=h) for h in range(9, 18)]
        for fire in fires:
            roll = rng.random()
            status = (
                RunStatus.SUCCEEDED
                if roll < 0.86
                else RunStatus.DEAD
                if roll < 0.92
                else RunStatus.SKIPPED
                if roll < 0.98
                else RunStatus.UNKNOWN
            )
            lag = rng.expovariate(1 / 0.4) + (6 if n in (11, 12) else 0)  # a slow spell
            started = None if status is RunStatus.SKIPPED else fire + timedelta(seconds=lag)
            tokens = rng.randint(900, 4200) if status is RunStatus.SUCCEEDED else None
            figures.append(
                RunFigure(
                    schedule_id=f"s{fire.hour % 4}",
                    status=status,
                    trigger=RunTrigger.SCHEDULE,
                    scheduled_for=fire,
                    started_at=started,
                    duration_ms=rng.randint(2_000, 40_000) if started else None,
                    tokens=tokens,
                )
            )
    return summarise(figures, since, until)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", metavar="PATH", required=True, help="write the sample PNG")
    args = parser.parse_args(argv)
    with open(args.sample, "wb") as out:
        out.write(render_png(sample_stats()))
    print(f"wrote {args.sample}")


if __name__ == "__main__":
    main()
