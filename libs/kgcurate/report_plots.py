"""The curation report from small aggregates, pure Python (matplotlib Agg, no Spark).

Input is a plain dict of aggregated numbers (histograms of counts, a top list, per-source and
bad-record totals), never pairs, so rendering costs the same for 1k or 1B pairs. Output is an
``index.html`` that links one PNG per plot.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

# CJK entry names lack glyphs in the default font; the HTML tables show them, the plot shows boxes.
warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")


def rank_curve(hist: Sequence[tuple[float, int]]) -> tuple[list[int], list[float]]:
    """Sorted-counts curve (rank, count), descending, from a (count, number of entries) histogram."""
    xs: list[int] = []
    ys: list[float] = []
    rank = 0
    for count, n in sorted(hist, key=lambda cn: -cn[0]):
        if count <= 0 or n <= 0:
            continue
        xs += [rank + 1, rank + n]
        ys += [count, count]
        rank += n
    return xs, ys


def head_tail(hist: Sequence[tuple[float, int]], t: float | None) -> dict[str, Any]:
    """Units and matches at or below t (tail: p = min(1, t / count) = 1, kept in full) and above it
    (head, subsampled). A count equal to t is tail: ``--tail-share`` picks a t that is a count."""
    total = sum(c * n for c, n in hist)
    if t is None or total == 0:
        return {"t": t, "tail_entries": None, "head_entries": None, "tail_share": None}
    tail = [(c, n) for c, n in hist if c <= t]
    return {
        "t": t,
        "tail_entries": sum(n for _, n in tail),
        "head_entries": sum(n for c, n in hist if c > t),
        "tail_share": sum(c * n for c, n in tail) / total,
    }


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def count_curves(data: dict[str, Any]) -> list[tuple[str, Sequence[tuple[float, int]]]]:
    """The curves of the count plot, (label, histogram): the matched counts t applied to (a ``--per-qid`` run's
    units, qids and entries naming none; else entries), then the curated set's per-entry counts."""
    if data.get("hist_units"):
        before = ("matched, per unit (qid_counts; entries naming no qid)", data["hist_units"])
    else:
        before = ("matched (entry_counts)", data.get("hist_before") or [])
    return [before, ("curated (per entry)", data.get("hist_after") or [])]


def plot_counts(data: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, hist in count_curves(data):
        xs, ys = rank_curve(hist)
        if xs:
            ax.plot(xs, ys, label=label, drawstyle="steps-post")
    t = data.get("t")
    if t:
        ax.axhline(t, color="red", linestyle="--", linewidth=1, label=f"t = {t:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("entry rank")
    ax.set_ylabel("pairs per entry")
    ax.set_title("Sorted entry counts before and after balancing")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no matches yet", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_bars(labels: Sequence[str], series: dict[str, Sequence[float]], title: str, path: Path,
              horizontal: bool = False, log: bool = False) -> Path:
    height = max(3.5, 0.28 * len(labels) + 1.5) if horizontal else 4.5
    fig, ax = plt.subplots(figsize=(8, height))
    if not labels:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        width = 0.8 / max(1, len(series))
        for i, (name, values) in enumerate(series.items()):
            pos = [j + i * width for j in range(len(labels))]
            (ax.barh if horizontal else ax.bar)(pos, values, width, label=name)
        ticks = [j + width * (len(series) - 1) / 2 for j in range(len(labels))]
        if horizontal:
            ax.set_yticks(ticks, labels)
            ax.invert_yaxis()
            if log:
                ax.set_xscale("log")
        else:
            ax.set_xticks(ticks, labels, rotation=20, ha="right")
            if log:
                ax.set_yscale("log")
        if len(series) > 1:
            ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):  # before int: True is an int
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _curated_runs_html(data: dict[str, Any]) -> list[str]:
    """The curated sets kept side by side: parameters, sizes, entity coverage, pairs shared."""
    runs = data.get("curated_runs") or []
    if not runs:
        return []
    cols = ("run_id", "created_at", "pairs_out", "t", "target_size", "tail_share", "seed", "per_qid",
            "entities_covered", "entity_set_size")
    overlap = data.get("run_overlap") or []
    return [
        "<h2>Curated sets side by side</h2>",
        _table(cols, [[r.get(c) for c in cols] for r in runs]),
        "<p>Pairs shared by each two sets (the diagonal is each set's size):</p>",
        _table(["run_id", *[r["run_id"] for r in runs]], overlap),
    ]


def plot_loss_curves(runs: Sequence[dict[str, Any]], path: Path) -> Path:
    """Training loss against step, one line per train run (its manifest's ``loss_curve``)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for run in runs:
        points = run.get("loss_curve") or []
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=str(run.get("train_run_id")))
            drawn += 1
    if drawn:
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no loss curve recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("Training loss")
    return _save(fig, path)


def _training_html(training: dict[str, Any], loss_png: Path) -> list[str]:
    """Train runs (with their loss curve) and the eval_runs metrics: only when those tables exist."""
    runs, evals = training.get("runs") or [], training.get("evals") or []
    run_cols = ("train_run_id", "model", "status", "finished_at", "samples_seen", "final_loss")
    eval_cols = ("train_run_id", "model", "dataset", "metric", "value", "samples", "created_at", "checkpoint")
    return [
        "<h2>Training and evaluation</h2>",
        _table(run_cols, [[r.get(c) for c in run_cols] for r in runs]) if runs else "<p>no train runs</p>",
        f"<img src='{loss_png.name}' alt='training loss'>",
        _table(eval_cols, [[e.get(c) for c in eval_cols] for e in evals]) if evals else "<p>no evaluations</p>",
    ]


def render(data: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write the PNGs and ``index.html`` into ``out_dir``; returns their paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = data.get("sizes", {})
    top = data.get("top_entries", [])
    sources = data.get("sources", [])
    bad = data.get("bad_records", [])
    crawls = data.get("crawls", [])
    curated = "curated" in sizes  # no curated set: its columns say "-", not 0 (a set that kept nothing)
    files = {
        "counts": plot_counts(data, out / "entry_counts.png"),
        "sizes": plot_bars(list(sizes), {"pairs": list(sizes.values())}, "Pairs at each stage", out / "sizes.png"),
        "crawls": plot_bars([str(c["crawl"]) for c in crawls], {"pairs": [c["pairs"] for c in crawls]},
                            "Pairs per crawl", out / "crawls.png", horizontal=True),
        "top": plot_bars([f"{e['entry']} ({e['source']})" for e in top],
                         {"matched": [e["count"] for e in top],
                          **({"curated": [e["after"] for e in top]} if curated else {})},
                         "Top entries by matched pairs", out / "top_entries.png", horizontal=True, log=True),
        "sources": plot_bars([s["source"] for s in sources],
                             {"entries": [s["entries"] for s in sources],
                              "entries matched": [s["entries_matched"] for s in sources],
                              "matches": [s["matches"] for s in sources],
                              **({"curated matches": [s.get("curated_matches", 0) for s in sources]}
                                 if curated else {})},
                             "Per metadata source", out / "sources.png", log=True),
        "bad": plot_bars([f"{b['job']}: {b['reason']}"[:60] for b in bad], {"records": [b["n"] for b in bad]},
                         "Bad records by job and reason", out / "bad_records.png", horizontal=True),
    }
    training = data.get("training") or {}
    if training:
        files["loss"] = plot_loss_curves(training.get("runs") or [], out / "training_loss.png")
    ht = head_tail(data.get("hist_units") or data.get("hist_before") or [], data.get("t"))
    run = data.get("run") or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>kgcurate report</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{max-width:100%}</style></head><body>",
        f"<h1>kgcurate report</h1><p>lake: {html.escape(str(data.get('lake', '')))}"
        f" &middot; generated {html.escape(str(data.get('generated_at', '')))}</p>",
        "<h2>Sizes</h2>", _table(["stage", "pairs"], list(sizes.items())),
        f"<img src='{files['sizes'].name}' alt='sizes'>",
        _table(["crawl", "pairs"], [[c["crawl"], c["pairs"]] for c in crawls]),
        f"<img src='{files['crawls'].name}' alt='pairs per crawl'>",
        "<h2>Balancing</h2>",
        _table(["run_id", "t", "target_size", "tail_share", "seed", "per_qid"],
               [[run.get(k) for k in ("run_id", "t", "target_size", "tail_share", "seed", "per_qid")]]),
        _table([f"tail {'qids and entries' if run.get('per_qid') else 'entries'} (count <= t)", "head",
                "tail share of matches"], [[ht["tail_entries"], ht["head_entries"], ht["tail_share"]]]),
        *([f"<p>{html.escape(data['moved_on'])}</p>"] if data.get("moved_on") else []),
        f"<img src='{files['counts'].name}' alt='entry counts'>",
        *_curated_runs_html(data),
        "<h2>Top entries</h2>",
        _table(["entry", "sources", "qids", "matched", "curated"],
               [[e["entry"], e["source"], e.get("qid"), e["count"], e.get("after")] for e in top]),
        f"<img src='{files['top'].name}' alt='top entries'>",
        "<h2>Per source</h2>",
        _table(["source", "entries", "entries matched", "matches", "curated matches"],
               [[s["source"], s["entries"], s["entries_matched"], s["matches"], s.get("curated_matches")]
                for s in sources]),
        f"<img src='{files['sources'].name}' alt='sources'>",
        "<h2>Bad records and ingest</h2>",
        _table(["job", "reason", "records"], [[b["job"], b["reason"], b["n"]] for b in bad]),
        _table(["job", "status (latest attempt)", "files", "records", "rows out", "bad records", "attempts"],
               [[g["job"], g["status"], g["files"], g["records"], g["rows_out"], g["bad_records"], g.get("attempts")]
                for g in data.get("ingest", [])]),
        f"<img src='{files['bad'].name}' alt='bad records'>",
        *(_training_html(training, files["loss"]) if training else []),
        "</body></html>",
    ]
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    files["html"] = index
    return files
