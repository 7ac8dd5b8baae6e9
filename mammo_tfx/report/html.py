"""The self-contained report page: tables as HTML, figures as <img> with paths relative to the page."""
from __future__ import annotations

import datetime
from typing import Any, Mapping, Optional, Sequence

import jinja2
from markupsafe import Markup
import pandas as pd

from mammo_tfx import names
from mammo_tfx.report.evaluation import ValidationSummary
from mammo_tfx.report.naming import feature_label

# Element ids the page promises (tests and readers find the tables by them).
GATE_TABLE_ID = "gate-results"
METRIC_TABLE_ID = "slice-metrics"
FAIRNESS_TABLE_ID = "fairness-rates"
SCREENING_TABLE_ID = "screening-units"

_TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
  body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #222; }
  h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
  table { border-collapse: collapse; font-size: 0.8em; margin: 8px 0; }
  th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; white-space: nowrap; }
  th { background: #f0f0f0; }
  .meta td:first-child { font-weight: bold; }
  .status-failed { color: #b00020; font-weight: bold; } .status-passed { color: #1b7a1b; }
  .note { color: #666; font-size: 0.85em; }
  img { max-width: 100%; border: 1px solid #ddd; margin: 6px 0; }
  .scroll { overflow-x: auto; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<table class="meta">
  <tr><td>Evaluation</td><td>{{ evaluation_uri }}</td></tr>
  {% if model_name %}<tr><td>Model</td><td>{{ model_name }}</td></tr>{% endif %}
  <tr><td>Outputs</td><td>{{ outputs }}</td></tr>
  <tr><td>TFMA validation</td><td>{{ validation_text }}</td></tr>
  <tr><td>Generated</td><td>{{ generated }}</td></tr>
</table>

<h2>Gate results</h2>
{% if gate_verdict %}<p>Gate verdict: <b>{{ gate_verdict }}</b></p>{% endif %}
{% if gate_table_html %}{{ gate_table_html }}{% else %}<p class="note">{{ gate_note }}</p>{% endif %}

{% if screening %}
<h2>Screening units</h2>
<p class="note">Image, breast and exam side by side on the {{ screening.split }} split, from the screening evaluation
({{ screening.uri }}): a breast's score is the {{ screening.breast_rule }} of its views' calibrated probability, its
label the maximum of theirs; an exam's score is the maximum over its breasts. AUC with a percentile bootstrap interval
({{ screening.bootstrap_samples }} resamples); sensitivity and specificity at each unit's threshold with Wilson
intervals. Image AUC per slice below comes from TFMA; these figures from the screening evaluation.</p>
<ul>{% for line in screening.operating_point %}<li>{{ line }}</li>{% endfor %}</ul>
<div class="scroll">{{ screening_table_html }}</div>
{% if screening.roc_src %}<img src="{{ screening.roc_src }}" alt="ROC per screening unit">
{% else %}<p class="note">No ROC points in the unit evaluation.</p>{% endif %}
{% endif %}

<h2>Metrics per slice</h2>
<p class="note">Values with [confidence interval] when TFMA computed one (shown as computed, so a
jackknife interval may reach past 0 or 1). A slice with fewer than
{{ min_examples }} examples or fewer than {{ min_per_class }} positives or negatives reads "insufficient".</p>
<div class="scroll">{{ metric_table_html }}</div>

{% if drift_html %}{{ drift_html }}{% endif %}

{% for figure in figures %}
<h2>{{ figure.title }}</h2>
{% if figure.src %}<img src="{{ figure.src }}" alt="{{ figure.title }}">
{% else %}<p class="note">{{ figure.missing }}</p>{% endif %}
{% endfor %}

<h2>Fairness: AUC and error rates per group</h2>
<p class="note">Groups of {{ fairness_features }}. FPR = false positive rate (negatives flagged), FNR = false negative
rate (positives missed), with their counts, at each threshold; "unknown" is the group of scans whose dataset does not
say. A group that is too small or holds one class reads "insufficient".</p>
{% if fairness_table_html %}<div class="scroll">{{ fairness_table_html }}</div>
{% else %}<p class="note">No such groups in this evaluation.</p>{% endif %}
</body>
</html>
""")


def _table_html(table: pd.DataFrame, table_id: str) -> Optional[str]:
    if table.empty:
        return None
    return table.to_html(index=False, table_id=table_id, escape=True, border=0, na_rep="")


def _status_classes(table_html: str) -> str:
    """Colours the status cells of the gate table (pandas cannot class single cells)."""
    for status in ("failed", "passed"):
        table_html = table_html.replace(f"<td>{status}</td>", f'<td class="status-{status}">{status}</td>')
    return table_html


def validation_text(validation: Optional[ValidationSummary]) -> str:
    if validation is None:
        return "no validation result written"
    if validation.missing_thresholds:
        return "no thresholds configured (TFMA blesses nothing)"
    if validation.ok:
        return "ok"
    shown = "; ".join(validation.failures[:5]) + ("; ..." if len(validation.failures) > 5 else "")
    return f"failed ({len(validation.failures)}): {shown}"


def render_report_html(*, evaluation_uri: str, model_name: str, outputs: Sequence[str],
                       validation: Optional[ValidationSummary], gate_table: Optional[pd.DataFrame],
                       metric_table: pd.DataFrame, fairness_table: pd.DataFrame,
                       figures: Sequence[Mapping[str, Optional[str]]], min_examples: int, min_per_class: int,
                       blessed: Optional[bool] = None,
                       fairness_features: Sequence[str] = names.FAIRNESS_FEATURES,
                       screening: Optional[Mapping[str, Any]] = None, drift_html: Optional[Markup] = None) -> str:
    """`figures`: dicts with `title`, `src` (relative PNG path, or None) and `missing` (why it is absent).
    `screening`: the "Screening units" section (`table`, `split`, `breast_rule`, `bootstrap_samples`, `uri`,
    `operating_point` lines, `roc_src`), None for a run without a screening evaluation.
    `fairness_features`: the slicing features whose groups `fairness_table` compares. `drift_html`: the "Data
    drift" section (mammo_tfx/report/monitoring.py), None for a run without a drift check."""
    gate_html = _table_html(gate_table, GATE_TABLE_ID) if gate_table is not None else None
    fairness_html = _table_html(fairness_table, FAIRNESS_TABLE_ID)
    return _TEMPLATE.render(
        title="Mammography model evaluation report",
        evaluation_uri=evaluation_uri,
        model_name=model_name,
        outputs=", ".join(outputs),
        validation_text=validation_text(validation),
        generated=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        gate_table_html=Markup(_status_classes(gate_html)) if gate_html else None,
        gate_verdict=None if blessed is None else ("blessed" if blessed else "NOT blessed"),
        gate_note="No gate results were given." if gate_table is None else "The gate results list no gates.",
        metric_table_html=Markup(_table_html(metric_table, METRIC_TABLE_ID) or "<p>No metrics.</p>"),
        fairness_table_html=Markup(fairness_html) if fairness_html else None,
        fairness_features=", ".join(feature_label(feature) for feature in fairness_features),
        figures=figures,
        min_examples=min_examples,
        min_per_class=min_per_class,
        screening=screening,
        drift_html=drift_html,
        screening_table_html=Markup(_table_html(screening["table"], SCREENING_TABLE_ID) or "<p>No figures.</p>")
        if screening else None,
    )
