"""The table of a sweep (:mod:`nitrod_rs.sweep`): per configuration, the mean ± sample
standard deviation over its seeds of the best validation accuracy, the test accuracy at the
best epoch (under the paper's protocol: the best test accuracy, the paper's number) and the
final model's test accuracy, in percent, as the paper's tables give them; as Markdown, CSV and
JSON.

The means and variances are computed exactly from the integer counts (``correct / total`` as
fractions); only the standard deviation's square root is taken in floats. Counts (seeds, epochs,
test samples) are shown as the integers they are.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from ._sweep_spec import Run, value_text

#: The accuracy columns: key, heading.
COLUMNS = (("best_val_accuracy", "best val acc (%)"),
           ("best_epoch_test_accuracy", "test acc at best epoch (%)"),
           ("final_test_accuracy", "final test acc (%)"))

#: The set that selected the best epoch, in the table's words (``History.watched``).
_SELECTED = {"validation": "validation set", "test": "test set (paper protocol)", None: "–"}


def _ratio(correct: Any, total: Any) -> Fraction | None:
    if correct is None or not total:
        return None
    return Fraction(int(correct), int(total))


def accuracies(doc: Mapping[str, Any]) -> dict[str, Fraction | None]:
    """The three accuracies of one run's ``history.json``, exact."""
    vals = [_ratio(e.get("val_correct"), e.get("val_total")) for e in doc["epochs"]]
    known = [v for v in vals if v is not None]
    best_epoch = doc.get("best_epoch")
    at_best = next((e for e in doc["epochs"] if e["epoch"] == best_epoch), None)
    return {
        "best_val_accuracy": max(known) if known else None,
        "best_epoch_test_accuracy": (None if at_best is None else
                                     _ratio(at_best.get("test_correct"),
                                            at_best.get("test_total"))),
        "final_test_accuracy": _ratio(doc["test_correct"], doc["test_total"]),
    }


def stats(values: Sequence[Fraction]) -> dict[str, float | None]:
    """Mean and sample standard deviation (n − 1) in percent; the deviation is ``None`` for
    one value."""
    if not values:
        return {"mean": None, "std": None}
    n = len(values)
    mean = sum(values, Fraction(0)) / n
    std = None
    if n > 1:
        var = sum(((v - mean) ** 2 for v in values), Fraction(0)) / (n - 1)
        std = 100 * math.sqrt(var)
    return {"mean": float(100 * mean), "std": std}


def _pm(s: Mapping[str, float | None]) -> str:
    if s["mean"] is None:
        return "–"
    return f"{s['mean']:.2f}" + ("" if s["std"] is None else f" ± {s['std']:.2f}")


def _span(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def build(runs: Sequence[Run], docs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The table of the finished runs (``docs``: ``history.json`` by folder name), one row per
    configuration in the order of the spec. ``settings`` of a row holds the settings that
    differ between the configurations; ``common`` those that all share."""
    configs: dict[str, list[Run]] = {}
    for r in runs:
        configs.setdefault(r.config, []).append(r)
    keys = sorted({k for r in runs for k in r.settings} - {"model", "dataset"})
    firsts = [group[0].settings for group in configs.values()]
    varying = [k for k in keys
               if len({value_text(s.get(k)) if k in s else None for s in firsts}) > 1]
    common = {k: firsts[0][k] for k in keys if k not in varying and k in firsts[0]}
    rows = []
    for group in configs.values():
        s = group[0].settings
        done = [r for r in group if r.name in docs]
        accs = [accuracies(docs[r.name]) for r in done]
        row: dict[str, Any] = {
            "model": group[0].label,
            "dataset": s["dataset"],
            "settings": {k: s[k] for k in varying if k in s},
            "config": s,
            "seeds": len(done),
            "seeds_planned": len(group),
            "epochs": [len(docs[r.name]["epochs"]) for r in done],
            "test_samples": sorted({int(docs[r.name]["test_total"]) for r in done}),
            "runs": [{"name": r.name, "seed": r.seed,
                      **{k: (None if v is None else [v.numerator, v.denominator])
                         for k, v in a.items()}} for r, a in zip(done, accs)],
        }
        watched = {docs[r.name].get("watched") for r in done}
        row["selected_on"] = _SELECTED.get(watched.pop(), "–") if len(watched) == 1 else "–"
        for key, _ in COLUMNS:
            row[key] = stats([v for v in (a[key] for a in accs) if v is not None])
        rows.append(row)
    return {"runs_total": len(runs), "runs_finished": sum(1 for r in runs if r.name in docs),
            "common": common, "rows": rows}


def _settings_text(settings: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={value_text(v)}" for k, v in settings.items()) or "–"


def markdown(table: Mapping[str, Any]) -> str:
    """The table as Markdown, a line on what it shows above it."""
    lines = []
    common = _settings_text(table["common"])
    lines.append(f"{table['runs_finished']} of {table['runs_total']} runs; mean ± sample "
                 "standard deviation over the seeds" + ("" if common == "–" else
                                                        f"; every run: {common}"))
    lines.append("")
    head = ["model", "data set", "settings", "seeds", "epochs", "best epoch selected on",
            *(h for _, h in COLUMNS)]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["--:"] * 2 + ["---"] + ["--:"] * 3) + "|")
    for row in table["rows"]:
        seeds = str(row["seeds"]) + ("" if row["seeds"] == row["seeds_planned"]
                                     else f" of {row['seeds_planned']}")
        cells = [row["model"], row["dataset"], _settings_text(row["settings"]), seeds,
                 _span(row["epochs"]) if row["epochs"] else "–", row["selected_on"],
                 *(_pm(row[k]) for k, _ in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: Mapping[str, Any]) -> str:
    """One line per configuration; accuracies in percent, empty where there is none."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    acc = [f"{k}_{s}_pct" for k, _ in COLUMNS for s in ("mean", "std")]
    w.writerow(["model", "dataset", "settings", "seeds", "seeds_planned", "epochs_min",
                "epochs_max", "selected_on", *acc])
    for row in table["rows"]:
        ep = row["epochs"]
        w.writerow([row["model"], row["dataset"], _settings_text(row["settings"]),
                    row["seeds"], row["seeds_planned"], min(ep) if ep else "",
                    max(ep) if ep else "", row["selected_on"],
                    *("" if row[k][s] is None else repr(row[k][s])
                      for k, _ in COLUMNS for s in ("mean", "std"))])
    return out.getvalue()


def to_json(table: Mapping[str, Any]) -> str:
    return json.dumps(table, indent=2) + "\n"
