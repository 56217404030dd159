"""Summaries of repeated measurements: minimum, median and spread (interquartile range)."""
import statistics


def summarize(values: list[float]) -> dict | None:
    if not values:
        return None
    vals = sorted(values)
    if len(vals) >= 2:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1 = q3 = vals[0]
    return {"n": len(vals), "min": vals[0], "median": statistics.median(vals), "max": vals[-1],
            "p25": q1, "p75": q3, "spread": q3 - q1}


def fmt(summary: dict | None, digits: int = 1) -> str:
    """`min / median ±spread`, or '-' when nothing was measured."""
    if not summary:
        return "-"
    return f"{summary['min']:.{digits}f} / {summary['median']:.{digits}f} ±{summary['spread']:.{digits}f}"
