"""The bench's outputs: a terminal table, a JSON document and (with `rt[bench]`) charts."""
import json
import os

from .runner import METRICS

LEVELS = ["app", "system", "vm"]
COLOURS = {"app": "#4c72b0", "system": "#55a868", "vm": "#c44e52"}
CHART_HINT = "charts need matplotlib: pip install 'rt[bench]' (the table and JSON are complete without it)"


def _order(doc: dict) -> list[dict]:
    rank = {lv: i for i, lv in enumerate(LEVELS)}
    return sorted(doc["targets"], key=lambda t: (rank.get(t["level"], len(LEVELS)), t["peer"]))


def _cell(s: dict | None, unit: str) -> str:
    if not s:
        return "-"
    if unit == "KiB":  # shown in MiB
        s = {k: v / 1024 for k, v in s.items() if k != "n"}
    d = 1 if s["median"] < 10 else 0
    return f"{s['min']:.{d}f}/{s['median']:.{d}f}±{s['spread']:.{d}f}"


def table(doc: dict) -> str:
    heads = ["target", "level"] + [("mem MiB" if u == "KiB" else k + " ms") for k, _, u in METRICS] + ["density"]
    rows, notes = [], []
    for t in _order(doc):
        name = t["name"] + ("" if t["peer"] else " *")
        if t["status"] != "ok":
            rows.append([name, t["level"], f"{t['status']}: {t['note']}"])
            continue
        cells = []
        for key, _, unit in METRICS:
            s = t["metrics"].get(key)
            if s:
                cells.append(_cell(s, unit))
            elif key in t["not_applicable"]:
                cells.append("n/a")
                notes.append(f"{t['name']}: {key} not applicable: {t['not_applicable'][key]}")
            elif key in t["errors"]:
                cells.append("error")
            else:
                cells.append("-")
        for key, err in t["errors"].items():
            notes.append(f"{t['name']}: {key} failed: {err}")
        d = t.get("density")
        cells.append(f"{d['started_in_window']} in {d['window_s']:g} s" if d and d["curve"] else "-")
        rows.append([name, t["level"]] + cells)
        if t["note"]:
            notes.append(f"{t['name']}: {t['note']}")
    full = [heads] + [r for r in rows if len(r) > 3]
    widths = [max(len(r[i]) for r in full) for i in range(len(heads))]
    for r in rows:  # status rows still line up their name and level
        widths[0], widths[1] = max(widths[0], len(r[0])), max(widths[1], len(r[1]))
    out = ["  ".join(h.ljust(w) for h, w in zip(heads, widths))]
    for r in rows:
        if len(r) == 3:
            out.append(f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2]}")
        else:
            out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    out.append(f"cells: min/median±IQR over {doc['runs']} runs; * = rt; memory = cgroup charge "
               f"+ PSS of the processes kept outside it")
    out += [f"  - {n}" for n in notes]
    return "\n".join(out) + "\n"


def write_json(doc: dict, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def charts(doc: dict, outdir: str) -> list[str] | str:
    """Write latency.{png,svg} and memory.{png,svg}; a hint string when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter
    except ImportError:
        return CHART_HINT
    ok = [t for t in _order(doc) if t["status"] == "ok"]
    written: list[str] = []
    timed = [(k, label) for k, label, unit in METRICS if unit == "ms"]
    fig, axes = plt.subplots(1, len(timed), figsize=(4 * len(timed), 0.45 * len(ok) + 1.8), sharey=True)
    names = [t["name"] for t in ok]
    for ax, (key, label) in zip(axes, timed):
        med = [(t["metrics"].get(key) or {}).get("median", 0) for t in ok]
        lo = [m - ((t["metrics"].get(key) or {}).get("min", 0)) for m, t in zip(med, ok)]
        ax.barh(names, med, xerr=[lo, [0] * len(med)], color=[COLOURS.get(t["level"], "#8172b2") for t in ok],
                hatch=None, edgecolor=["black" if not t["peer"] else "none" for t in ok])
        if not any(med):
            ax.set_title(label, fontsize=10)
            ax.text(0.5, 0.5, "not applicable", ha="center", transform=ax.transAxes)
            continue
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("ms (median; whisker to min; log)")
        for y, m in enumerate(med):
            if m:
                ax.text(m, y, f" {m:.0f}" if m >= 10 else f" {m:.1f}", va="center", fontsize=8)
    axes[0].invert_yaxis()  # shared: once puts the lightest level on top
    fig.suptitle("rt bench: latency by isolation level (outlined = rt)", fontsize=11)
    written += _save(plt, fig, outdir, "latency")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    markers = iter("os^Dvx*+" * 4)
    for t in ok:
        curve = (t.get("density") or {}).get("curve") or []
        if curve:
            ax.plot([p["count"] for p in curve], [p["per_instance_kib"] / 1024 for p in curve], marker=next(markers),
                    linestyle="-" if not t["peer"] else "--", color=COLOURS.get(t["level"], "#8172b2"),
                    label=t["name"])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("running instances")
    ax.set_ylabel("host memory per instance, MiB (log)")
    ax.set_title("rt bench: memory per instance as instances are added", fontsize=11)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.grid(alpha=0.3)
    written += _save(plt, fig, outdir, "memory")
    return written


def _save(plt, fig, outdir: str, name: str) -> list[str]:
    fig.tight_layout()
    paths = [os.path.join(outdir, f"{name}.{ext}") for ext in ("png", "svg")]
    for p in paths:
        fig.savefig(p, dpi=110)
    plt.close(fig)
    return paths
