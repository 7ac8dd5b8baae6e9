"""The drift section (in the evaluation report and in `mammo-tfx monitor`'s page) and the monitor page with its
plots: the distributions of the request windows against the served model's training data."""
from __future__ import annotations

import datetime
import os
from typing import Dict, List, Optional, Sequence

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup
from matplotlib.figure import Figure
from tensorflow_metadata.proto.v0 import statistics_pb2

from mammo_tfx import names
from mammo_tfx.monitoring.drift import ALL_EXAMPLES, DriftResults, slices
from mammo_tfx.monitoring.monitor import MonitorResult, RequestImage
from mammo_tfx.report.plots import png_bytes

DRIFT_TABLE_ID = "drift"
MONITOR_HTML = "monitoring.html"

_SECTION = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""
<h2>{{ title }}</h2>
<p class="note">{{ explanation }} Baseline: {{ baseline or "none" }}. Jensen-Shannon divergence for numeric features,
L-infinity distance (the largest change of one value's share) for categorical ones; a row drifts above its
threshold.</p>
{% if drifted %}<p><b class="status-failed">{{ drifted }} comparison(s) above the threshold.</b></p>
{% elif rows %}<p class="status-passed">No comparison above its threshold.</p>{% endif %}
{% if notes %}<ul class="note">{% for note in notes %}<li>{{ note }}</li>{% endfor %}</ul>{% endif %}
{% if table_html %}<div class="scroll">{{ table_html }}</div>{% endif %}
""")

_PAGE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Served requests: skew and drift</title>
<style>
  body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #222; }
  h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
  table { border-collapse: collapse; font-size: 0.8em; } th, td { border: 1px solid #ccc; padding: 3px 6px; }
  .note { color: #666; font-size: 0.85em; } .status-failed { color: #b00020; } .status-passed { color: #1b7a1b; }
  img { max-width: 100%; border: 1px solid #ddd; margin: 6px 0; }
</style></head>
<body>
<h1>Served requests: skew and drift</h1>
<p>Logs: {{ log_dir }}. Current window: {{ current }} images; previous window: {{ previous }} images.
Generated {{ generated }}.</p>
{{ section }}
{% for figure in figures %}<h2>{{ figure.title }}</h2><img src="{{ figure.src }}" alt="{{ figure.title }}">
{% endfor %}
</body></html>
""")


def drift_table(results: DriftResults) -> pd.DataFrame:
    """One row per comparison, drifted ones first."""
    rows = sorted(results.rows, key=lambda row: (not row.drifted, row.kind, row.split, row.slice != ALL_EXAMPLES,
                                                 row.slice, row.feature))
    return pd.DataFrame([{"check": row.kind, "split": row.split, "slice": row.slice, "feature": row.feature,
                          "comparator": row.comparator.replace("_", " "), "value": f"{row.value:.3f}",
                          "threshold": f"{row.threshold:g}", "status": "drifted" if row.drifted else "ok"}
                         for row in rows])


def drift_section_html(results: DriftResults, title: str, explanation: str) -> Markup:
    """An HTML section: verdict, notes and the table of comparisons."""
    table = drift_table(results)
    table_html = None
    if not table.empty:
        table_html = table.to_html(index=False, table_id=DRIFT_TABLE_ID, escape=True, border=0).replace(
            "<td>drifted</td>", '<td class="status-failed">drifted</td>')
    return Markup(_SECTION.render(title=title, explanation=explanation, baseline=results.baseline,
                                  drifted=len(results.drifted), rows=results.rows, notes=results.notes,
                                  table_html=Markup(table_html) if table_html else None))


def _training_histogram(training: Optional[statistics_pb2.DatasetFeatureStatisticsList], feature: str
                        ) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(bucket edges, shares) of a numeric feature's standard histogram over all training examples."""
    if training is None:
        return None
    dataset = slices(training).get(ALL_EXAMPLES)
    for candidate in (dataset.features if dataset is not None else []):
        if (candidate.path.step[0] if candidate.path.step else candidate.name) != feature:
            continue
        for histogram in candidate.num_stats.histograms:
            if histogram.type == histogram.STANDARD and histogram.buckets:
                edges = np.array([b.low_value for b in histogram.buckets] + [histogram.buckets[-1].high_value])
                counts = np.array([b.sample_count for b in histogram.buckets])
                return edges, counts / max(counts.sum(), 1.0)
    return None


def _density(values: Sequence[float], edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(values, bins=edges)
    return counts / max(counts.sum(), 1) / np.diff(edges)


def distributions_png(result: MonitorResult) -> bytes:
    """One panel per pixel statistic (training, previous and current window) and one for the answered
    probabilities (previous and current window), as densities (share of images per unit of the value)."""
    features = (*names.IMAGE_STATISTICS, names.PROBABILITY)
    figure = Figure(figsize=(12, 6.5))
    for index, feature in enumerate(features):
        axes = figure.add_subplot(2, 3, index + 1)

        def values(images: List[RequestImage]) -> List[float]:
            if feature == names.PROBABILITY:
                return [image.probability for image in images if image.probability is not None]
            return [image.statistics[feature] for image in images]

        training = None if feature == names.PROBABILITY else _training_histogram(result.training_statistics, feature)
        windows = [(values(images), label, colour) for images, label, colour in (
            (result.previous, "previous window", "tab:blue"), (result.current, "current window", "tab:red"))]
        seen = [v for shown, _, _ in windows for v in shown] + ([] if training is None else list(training[0]))
        low, high = (min(seen), max(seen)) if seen else (0.0, 1.0)
        edges = np.linspace(low, high if high > low else low + 1e-3, 21)
        if training is not None:
            bucket_edges, shares = training
            widths = np.maximum(np.diff(bucket_edges), 1e-9)
            axes.bar(bucket_edges[:-1], shares / widths, width=widths, align="edge", alpha=0.35, color="grey",
                     label="training")
        for shown, label, colour in windows:
            if shown:
                axes.step(edges, np.append(_density(shown, edges), 0.0), where="post", color=colour, label=label)
        axes.set_title(feature.replace("_", " "), fontsize=9)
        axes.set_ylabel("density", fontsize=8)
        axes.tick_params(labelsize=7)
        if index == 0:
            axes.legend(fontsize=7)
    figure.tight_layout()
    return png_bytes(figure)


def recall_png(result: MonitorResult) -> Optional[bytes]:
    """The share of images answered "recall" per window; None when the model answers no recall decision."""
    shares: Dict[str, float] = {}
    for images, label in ((result.previous, "previous window"), (result.current, "current window")):
        decided = [image.recall for image in images if image.recall is not None]
        if decided:
            shares[label] = sum(decided) / len(decided)
    if not shares:
        return None
    figure = Figure(figsize=(5, 3))
    axes = figure.add_subplot(1, 1, 1)
    axes.bar(list(shares), list(shares.values()), color=["tab:blue", "tab:red"][-len(shares):])
    axes.set_ylabel("share recalled")
    axes.set_ylim(0, 1)
    return png_bytes(figure)


def write_monitor_report(result: MonitorResult, log_dir: str, out_dir: str) -> str:
    """`out_dir/monitoring.html` with the skew/drift section and its plots; returns the page's path."""
    os.makedirs(out_dir, exist_ok=True)
    figures = []
    for file_name, title, png in (("distributions.png", "Distributions", distributions_png(result)),
                                  ("recall.png", "Recall decisions", recall_png(result))):
        if png is None:
            continue
        with open(os.path.join(out_dir, file_name), "wb") as handle:
            handle.write(png)
        figures.append({"title": title, "src": file_name})
    section = drift_section_html(
        result.results, "Skew and drift of served requests",
        "Skew: the current window's images against the statistics of the data the served model was trained on. "
        "Drift: the current window against the previous one, answers included.")
    page = _PAGE.render(log_dir=log_dir, current=len(result.current), previous=len(result.previous),
                        generated=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                        section=section, figures=figures)
    path = os.path.join(out_dir, MONITOR_HTML)
    with open(path, "w") as handle:
        handle.write(page)
    return path
