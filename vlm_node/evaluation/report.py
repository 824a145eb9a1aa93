"""report.json, report.md and the `--compare` table.

report.json is the machine-readable record of a run (every figure, every frame); its
`key_figures` are the few numbers that decide whether a change helped, flat, so `--compare` and
CI can diff two runs without knowing the report's structure.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vlm_node.errors import ConfigError
from vlm_node.evaluation.metrics import Evaluation, per_frame_rows

REPORT_VERSION = 1

# key figure -> (label, unit, better): `better` is "higher"/"lower"/"" for the compare table.
KEY_FIGURES: dict[str, tuple[str, str, str]] = {
    "messages": ("image messages", "", ""),
    "analysed": ("analysed", "", "higher"),
    "not_analysed": ("not analysed (skipped)", "", "lower"),
    "dropped": ("dropped (not anonymized)", "", "lower"),
    "sign_precision": ("sign precision", "", "higher"),
    "sign_recall": ("sign recall", "", "higher"),
    "sign_f1": ("sign F1", "", "higher"),
    "speed_value_accuracy": ("speed value accuracy", "", "higher"),
    "false_confirmations": ("false confirmations", "", "lower"),
    "frames_to_confirm_p50": ("frames to confirm p50", "", "lower"),
    "face_recall": ("face recall", "", "higher"),
    "face_leak_rate": ("face leak rate", "", "lower"),
    "plate_recall": ("plate recall", "", "higher"),
    "plate_leak_rate": ("plate leak rate", "", "lower"),
    "latency_p50_ms": ("latency p50", "ms", "lower"),
    "latency_p95_ms": ("latency p95", "ms", "lower"),
    "latency_p99_ms": ("latency p99", "ms", "lower"),
    "frames_per_s": ("throughput", "frames/s", "higher"),
    "real_time_factor": ("real-time factor", "x", "higher"),
}


def machine_description() -> str:
    """CPU model, core count and NVIDIA GPUs the driver lists: timings mean little without.
    Read from /proc (no torch import just to ask about CUDA)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Model:"):
                gpus.append(line.split(":", 1)[1].strip())
    gpu = ", ".join(gpus) if gpus else "no NVIDIA GPU"
    return f"{model}, {os.cpu_count()} cores, {gpu}, {platform.system()} {platform.release()}"


def key_figures(ev: Evaluation) -> dict[str, float | int | None]:
    kinds = ev.anonymization.to_json()["per_kind"]
    latency = ev.timing.latency
    frames = ev.tracks.to_json()["frames_to_confirm"]
    return {
        "messages": ev.coverage.messages,
        "analysed": ev.coverage.by_status["analysed"],
        "not_analysed": ev.coverage.by_status["not_analysed"],
        "dropped": ev.coverage.by_status["dropped"],
        "sign_precision": ev.signs.total.precision,
        "sign_recall": ev.signs.total.recall,
        "sign_f1": ev.signs.total.f1,
        "speed_value_accuracy": ev.speed.value_accuracy,
        "false_confirmations": ev.tracks.false_confirmations,
        "frames_to_confirm_p50": frames["p50"] if frames else None,
        "face_recall": kinds.get("face", {}).get("recall"),
        "face_leak_rate": kinds.get("face", {}).get("leak_rate"),
        "plate_recall": kinds.get("plate", {}).get("recall"),
        "plate_leak_rate": kinds.get("plate", {}).get("leak_rate"),
        "latency_p50_ms": round(latency.p50, 1) if latency else None,
        "latency_p95_ms": round(latency.p95, 1) if latency else None,
        "latency_p99_ms": round(latency.p99, 1) if latency else None,
        "frames_per_s": ev.timing.frames_per_s,
        "real_time_factor": ev.timing.real_time_factor,
    }


def build_report(ev: Evaluation, plots: list[str] | None = None) -> dict[str, Any]:
    return {"version": REPORT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "run": {k: round(v, 3) if isinstance(v, float) else v
                    for k, v in asdict(ev.info).items()},
            "key_figures": key_figures(ev),
            "coverage": ev.coverage.to_json(),
            "signs": ev.signs.to_json(),
            "speed": ev.speed.to_json(),
            "tracks": ev.tracks.to_json(),
            "anonymization": ev.anonymization.to_json(),
            "timing": ev.timing.to_json(),
            "plots": list(plots or []),
            "frames": per_frame_rows(ev)}


# ------------------------------------------------------------------------------ markdown
def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip() if unit and unit != "x" else text + unit


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(_fmt(v) if not isinstance(v, str) else v for v in row) + " |"
            for row in rows]
    return out


def markdown(report: dict[str, Any]) -> str:
    run, cov, signs = report["run"], report["coverage"], report["signs"]
    playback = (f" (playback at {run['rate']:g}x the recorded rate)" if run["mode"] == "live"
                else "")
    lines = ["# vlm-node eval report", "",
             f"- bag: `{run['bag']}`, labels: `{run['labels']}`",
             f"- mode: {run['mode']}{playback}",
             f"- backend: {run['backend'] or 'n/a'} (configured: {run['configured_backend']})"
             + (f"; degraded: {run['degraded_reason']}" if run["degraded_reason"] else ""),
             "- cameras: " + ", ".join(f"{c} <- `{t}`" for c, t in run["cameras"].items()),
             f"- machine: {run['machine']}", f"- created: {report['created']}", "",
             "## Key figures", ""]
    lines += _table(["figure", "value"],
                    [[KEY_FIGURES[k][0], _fmt(v, KEY_FIGURES[k][1])]
                     for k, v in report["key_figures"].items()])
    lines += ["", "## Coverage", "",
              f"{cov['messages']} image messages: {cov['analysed']} analysed, "
              f"{cov['not_analysed']} not analysed (the node kept a newer frame, or the result "
              f"was stale), {cov['dropped']} dropped (not anonymized: never released); "
              f"{cov['degraded']} results degraded; {cov['unlabelled_messages']} messages "
              f"without a label, {cov['orphan_labels']} labels of no message in the bag."]
    if cov["reasons"]:
        lines.append("Reasons: " + ", ".join(f"{k}: {v}" for k, v in cov["reasons"].items()))
    lines += ["", "## Signs", "",
              f"{signs['frames']} analysed frames with labelled signs; matched at box IoU >= "
              "0.3 (same class within the frame where a box is missing).", ""]
    rows = [[cls, c["labelled"], c["tp"], c["fp"], c["fn"], c["precision"], c["recall"],
             c["f1"]] for cls, c in signs["per_class"].items()]
    a = signs["all"]
    rows.append(["**all**", a["labelled"], a["tp"], a["fp"], a["fn"], a["precision"],
                 a["recall"], a["f1"]])
    lines += _table(["class", "labelled", "TP", "FP", "FN", "precision", "recall", "F1"], rows)
    sp, tr = report["speed"], report["tracks"]
    lines += ["", f"Speed values (speed_limit with value and unit): {sp['value_ok']} of "
                  f"{sp['labelled']} exact ({_fmt(sp['value_accuracy'])}); "
                  f"{sp['value_ok']} of {sp['read']} read as speed_limit "
                  f"({_fmt(sp['accuracy_of_read'])})."]
    for m in sp["misread"]:
        lines.append(f"- {m['camera']} {m['stamp_ns']}: labelled {m['label']['value']} "
                     f"{m['label']['unit']}, read {m['read']['value']} {m['read']['unit']}")
    ftc = tr["frames_to_confirm"]
    lines += ["", "## Tracks (k-of-n confirmation)", "",
              f"{tr['readings']} readings in labelled frames: {tr['confirmed']} confirmed "
              f"({tr['confirmed_correct']} correct, {tr['false_confirmations']} false "
              f"confirmations), {tr['tentative']} tentative ({tr['tentative_wrong']} of them "
              f"wrong, kept from the planner). {tr['tracks_confirmed']} of {tr['tracks']} tracks "
              "confirmed" + (f"; frames until confirmed: p50 {ftc['p50']:g}, mean "
                             f"{ftc['mean']:g}, max {ftc['max']:g}." if ftc else ".")]
    an = report["anonymization"]
    lines += ["", "## Anonymization", ""]
    if an["scored"]:
        rows = [[k, c["labels"], c["matched"], c["recall"], c["precision"], c["leaked"],
                 c["leak_rate"]] for k, c in an["per_kind"].items()]
        lines += _table(["kind", "labelled", "found", "recall", "precision", "leaked",
                         "leak rate"], rows)
    else:
        lines.append("Not scored: the node publishes how many regions it redacted, not where "
                     "(run without --live for recall and leak rate). Redacted / labelled: "
                     + ", ".join(f"{k} {an['redacted'][k]} / {an['labelled'][k]}"
                                 for k in an["labelled"]) + ".")
    tm = report["timing"]
    lines += ["", "## Timing", ""]
    rows = [[name, d["count"], d["mean"], d["p50"], d["p95"], d["p99"], d["max"]]
            for name, d in (("latency", tm["latency_ms"]),
                            ("node latency", tm["node_latency_ms"]),
                            ("anonymize", tm["anonymize_ms"]),
                            ("analysis", tm["analysis_ms"])) if d]
    lines += _table(["ms", "frames", "mean", "p50", "p95", "p99", "max"], rows)
    lines += ["", f"Wall time {tm['wall_s']:.2f} s for {tm['recorded_s']:.2f} s of recording: "
                  f"{_fmt(tm['frames_per_s'])} frames/s, real-time factor "
                  f"{_fmt(tm['real_time_factor'])}" + (
                      f" (frames published over {run['playback_s']:.2f} s, wall time runs to "
                      "the last result)." if run["mode"] == "live" else
                      f"; model loading {run['load_s']:.2f} s not included.")]
    if report["plots"]:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in report["plots"]]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path


# ------------------------------------------------------------------------------ compare
def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a report.json: {exc}") from exc
    if not isinstance(report, dict) or not isinstance(report.get("key_figures"), dict):
        raise ConfigError(f"{path}: not a report.json of `vlm-node eval` (no key_figures)")
    return report


def _delta(d: float | int) -> str:
    if isinstance(d, int):
        return f"{d:+d}"
    return f"{d:+.3f}" if abs(d) < 10 else f"{d:+.1f}"


def _title(name: str, rep: dict[str, Any]) -> str:
    run = rep.get("run", {})
    return f"{name}: {run.get('mode', '?')} {run.get('backend', '?')}"


def compare(a: dict[str, Any], b: dict[str, Any], name_a: str = "a", name_b: str = "b"
            ) -> str:
    """A Markdown table of the key figures of two reports with b - a; figures where b is
    worse than a are marked, so a regression stands out."""
    rows = []
    for key, (label, unit, better) in KEY_FIGURES.items():
        va, vb = a["key_figures"].get(key), b["key_figures"].get(key)
        if va is None or vb is None:
            delta = "n/a"
        else:
            d = vb - va
            worse = (better == "higher" and d < 0) or (better == "lower" and d > 0)
            delta = _delta(d) + (" (worse)" if worse else "")
        rows.append([label + (f" ({unit})" if unit and unit != "x" else ""), _fmt(va),
                     _fmt(vb), delta])
    head = ["figure", _title(name_a, a), _title(name_b, b), "delta (b - a)"]
    return "\n".join(_table(head, rows)) + "\n"
