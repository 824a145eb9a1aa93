"""PNG plots of a report: confusion matrix of sign classes, latency histogram, per-frame timeline.

Drawn with matplotlib's object API (`Figure`, rendered by Agg) rather than pyplot: no global
backend or figure state, so plotting works headless (vehicles, CI) and from any thread.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vlm_node.evaluation.matching import NONE

DPI = 100


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    return path


def confusion_matrix(report: dict[str, Any], path: Path) -> Path:
    """Labelled class (rows) against read class (columns); the (none) row holds false
    readings, the (none) column missed signs."""
    confusion: dict[str, dict[str, int]] = report["signs"]["confusion"]
    rows = sorted(k for k in confusion if k != NONE) + [NONE]
    cols = sorted({c for v in confusion.values() for c in v if c != NONE} | set(rows) - {NONE})
    cols.append(NONE)
    grid = np.array([[confusion.get(r, {}).get(c, 0) for c in cols] for r in rows])
    side = max(4.0, 0.55 * len(cols) + 2.5)
    fig = Figure(figsize=(side, max(3.5, 0.5 * len(rows) + 2.0)))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("read as")
    ax.set_ylabel("labelled")
    top = grid.max() if grid.size else 0
    for (i, j), n in np.ndenumerate(grid):
        if n:
            ax.text(j, i, str(n), ha="center", va="center",
                    color="white" if n > top / 2 else "black")
    ax.set_title("sign classes (IoU >= 0.3)")
    fig.tight_layout()
    return _save(fig, path)


def latency_histogram(report: dict[str, Any], path: Path) -> Path:
    values = [f["latency_ms"] for f in report["frames"] if f["latency_ms"] is not None]
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    if values:
        ax.hist(values, bins=min(30, max(5, len(values) // 2)), color="tab:blue", alpha=0.8)
        stats = report["timing"]["latency_ms"]
        for name, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            ax.axvline(stats[name], color="black", linestyle=style,
                       label=f"{name} {stats[name]:.0f} ms")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no analysed frame", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title(f"latency per frame ({report['run']['mode']})")
    fig.tight_layout()
    return _save(fig, path)


def timeline(report: dict[str, Any], path: Path) -> Path:
    """Top: latency of each frame over bag time, per camera (live: dashed, the node's own
    share); frames without a result are marked at zero. Bottom: signs read correctly, missed
    and false readings per frame."""
    frames = report["frames"]
    fig = Figure(figsize=(8.0, 5.0))
    ax_lat, ax_sig = fig.subplots(2, 1, sharex=True)
    t0 = min((f["log_time_ns"] for f in frames), default=0)

    def t(f: dict[str, Any]) -> float:
        return (f["log_time_ns"] - t0) / 1e9

    for cam in sorted({f["camera"] for f in frames}):
        done = [f for f in frames if f["camera"] == cam and f["latency_ms"] is not None]
        line, = ax_lat.plot([t(f) for f in done], [f["latency_ms"] for f in done],
                            marker=".", label=cam)
        node = [f for f in done if f.get("node_latency_ms") is not None]
        if node:  # live: the node's own share; the gap is time queued before it
            ax_lat.plot([t(f) for f in node], [f["node_latency_ms"] for f in node],
                        linestyle="--", color=line.get_color(), label=f"{cam} (in node)")
    for status, marker in (("not_analysed", "x"), ("dropped", "v")):
        skipped = [t(f) for f in frames if f["status"] == status]
        if skipped:
            ax_lat.scatter(skipped, [0] * len(skipped), marker=marker, color="red",
                           label=status.replace("_", " "))
    ax_lat.set_ylabel("latency (ms)")
    if frames:
        ax_lat.legend(fontsize="small")
    scored = [f for f in frames if "labelled_signs" in f]
    x = np.array([t(f) for f in scored])
    ok = np.array([f["signs_correct"] for f in scored])
    missed = np.array([f["labelled_signs"] - f["signs_correct"] for f in scored])
    false = np.array([f["false_readings"] for f in scored])
    period = float(np.median(np.diff(np.sort(x)))) if len(x) > 1 else 0.1
    width = 0.8 * period if period > 0 else 0.08
    ax_sig.bar(x, ok, width, color="tab:green", label="read correctly")
    ax_sig.bar(x, missed, width, bottom=ok, color="tab:orange", label="missed / misread")
    ax_sig.bar(x, false, width, bottom=ok + missed, color="tab:red", label="false reading")
    ax_sig.set_ylabel("signs")
    ax_sig.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_sig.set_xlabel("bag time (s)")
    if scored:
        ax_sig.legend(fontsize="small")
    fig.suptitle("per-frame timeline")
    fig.tight_layout()
    return _save(fig, path)


def write_plots(report: dict[str, Any], out_dir: Path) -> list[str]:
    """All plots into `out_dir`; returns their file names (relative, for report.md)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = [confusion_matrix(report, out_dir / "confusion.png"),
            latency_histogram(report, out_dir / "latency.png"),
            timeline(report, out_dir / "timeline.png")]
    return [p.name for p in made]
