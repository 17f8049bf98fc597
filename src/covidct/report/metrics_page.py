"""The metrics page of the Snakemake report: test figures first, with their confidence intervals
and baselines, or "not interpretable (n=...)" where they mean nothing; cross-validation; the
validation figures apart; the infection U-Net."""

from __future__ import annotations

import html

from covidct.evaluation.reports import CLASSIFIER_METRICS, FOLD_METRICS, SCORER_METRICS
from covidct.io import atomic_path
from covidct.severity import SEVERITY_CLASSES

STYLE = (
    "body{font-family:sans-serif;max-width:60em} table{border-collapse:collapse;margin:0.5em 0 1.5em} "
    "td,th{border:1px solid #999;padding:3px 8px;text-align:left} .warn{background:#fff3cd;border:2px solid "
    "#d39e00;padding:0.6em 1em;margin:1em 0} .na{color:#a00;font-weight:bold}"
)


def _e(text) -> str:
    return html.escape(str(text))


def plural(n: int, word: str) -> str:
    """``n`` and the word, in the plural unless n is 1.

    >>> plural(1, "scan"), plural(2, "subject")
    ('1 scan', '2 subjects')
    """
    return f"{n} {word}{'' if n == 1 else 's'}"


def fmt(v) -> str:
    """A number with 3 decimals, or a dash."""
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else _e(v)


def fmt_ci(est: dict | None) -> str:
    """``value [low, high]`` of an estimate, or why it is withheld."""
    if not est:
        return "-"
    if est.get("withheld"):
        return f"<span class='na'>{_e(est['withheld'])}</span>"
    if est.get("value") is None:
        return "undefined"
    ci = f" [{fmt(est['ci_low'])}, {fmt(est['ci_high'])}]" if est.get("ci_low") is not None else ""
    return f"{fmt(est['value'])}{ci}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are already HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _verdict(diff: dict | None, lower_is_better: bool, what: str) -> str:
    """Plain words for a paired difference (model - baseline) and its interval."""
    if not diff or diff.get("withheld") or diff.get("ci_low") is None:
        return ""
    low, high = diff["ci_low"], diff["ci_high"]
    if (high < 0) if lower_is_better else (low > 0):
        return f"the model beats {what} (difference {fmt_ci(diff)})"
    if (low > 0) if lower_is_better else (high < 0):
        return f"<span class='na'>the model is worse than {what}</span> (difference {fmt_ci(diff)})"
    return f"<span class='na'>the model does not beat {what}</span> (difference {fmt_ci(diff)} includes 0)"


def classifier_section(rep: dict, split: str, confidence: float) -> str:
    """Figures of the classifier on one split."""
    title = (
        f"<h3>Classifier, {split} split: {plural(rep['n_scans'], 'scan')} of "
        f"{plural(rep['n_subjects'], 'subject')}, {rep.get('n_positive', 0)} COVID-19</h3>"
    )
    note = f"<p><i>{_e(rep['note'])}</i></p>" if rep.get("note") else ""
    if not rep["interpretable"]:
        return title + note + f"<p class='na'>{_e(rep['reason'])}: no figure is shown.</p>"
    b = rep["baselines"]
    base = {
        "auc": "0.5 (chance)",
        "accuracy": f"{fmt_ci(b['prevalence_accuracy'])} (always the training majority class)",
        "brier": f"{fmt_ci(b['prevalence_brier'])} (always the training prevalence {fmt(b['train_prevalence'])})",
    }
    rows = [[m.label, fmt_ci(rep["metrics"][m.name]), base.get(m.name, "")] for m in CLASSIFIER_METRICS]
    cm = rep["confusion_matrix"]["rows_true_cols_pred"]
    verdict = _verdict(b.get("brier_minus_prevalence"), True, "the prevalence (Brier score)")
    return (
        title
        + note
        + table(["metric", f"value [{confidence:.0%} CI, bootstrap by subject]", "baseline"], rows)
        + f"<p>Threshold {fmt(rep['threshold'])} (chosen on val). Confusion matrix: TN {cm[0][0]}, FP {cm[0][1]}, "
        f"FN {cm[1][0]}, TP {cm[1][1]}.</p>" + (f"<p>{verdict}.</p>" if verdict else "")
    )


def scorer_section(rep: dict, split: str, confidence: float) -> str:
    """Figures of the scorer on one split."""
    title = (
        f"<h3>Scorer, {split} split: {plural(rep['n_scans'], 'scan')} of {plural(rep['n_subjects'], 'subject')}</h3>"
    )
    note = f"<p><i>{_e(rep['note'])}</i></p>" if rep.get("note") else ""
    if not rep["interpretable"]:
        return title + note + f"<p class='na'>{_e(rep['reason'])}: no figure is shown.</p>"
    b = rep["baselines"]
    base = {"mae": f"training mean ({fmt(b['train_mean'])} for everyone): {fmt_ci(b['train_mean_mae'])}"}
    if "segmentation_mae" in b:
        base["mae"] += f"<br>segmentation read-out (seg_score): {fmt_ci(b['segmentation_mae'])}"
        base["pearson_r"] = f"segmentation read-out: {fmt_ci(b['segmentation_pearson_r'])}"
    rows = [[m.label, fmt_ci(rep["metrics"][m.name]), base.get(m.name, "")] for m in SCORER_METRICS]
    verdicts = [
        v
        for v in (
            _verdict(b.get("mae_minus_train_mean"), True, "the training mean (MAE)"),
            _verdict(b.get("mae_minus_segmentation"), True, "the segmentation read-out (MAE)"),
        )
        if v
    ]
    dist = ", ".join(f"{k}: {v}" for k, v in rep["class_distance_counts"].items())
    return (
        title
        + note
        + table(["metric", f"value [{confidence:.0%} CI, bootstrap by subject]", "baseline"], rows)
        + f"<p>Scans by distance between true and predicted severity class ({', '.join(SEVERITY_CLASSES)}): "
        f"{dist}.</p>" + "".join(f"<p>{v}.</p>" for v in verdicts)
    )


def cv_section(cv: dict) -> str:
    """Cross-validation: mean +- sd over folds, and pooled out-of-fold figures."""
    out = [
        f"<h2>Cross-validation ({cv['folds']} folds, {cv['n_subjects']} subjects of train + val)</h2>",
        f"<p>{_e(cv['scheme'])}.</p>",
    ]
    rows = []
    for model, keys in FOLD_METRICS.items():
        for key in keys:
            m = cv["mean_sd"][model][key]
            value = "-" if m["mean"] is None else f"{m['mean']:.3f} +- {fmt(m['sd'])} ({m['n_folds']} folds)"
            rows.append([model, key, value])
    out.append(table(["model", "metric", "mean +- sd over folds"], rows))
    folds = [
        [
            str(e["fold"] + 1),
            str(e["n_test_subjects"]),
            (
                ""
                if e["interpretable"]["interpretable"]
                else f"<span class='na'>{_e(e['interpretable']['reason'])}</span>"
            ),
        ]
        for e in cv["per_fold"]
    ]
    out.append(table(["fold", "test subjects", "note"], folds))
    pooled = cv["pooled_out_of_fold"]
    c = pooled["classifier"]
    if c["interpretable"]:
        out.append(
            "<p>Pooled out-of-fold classifier: "
            + "; ".join(f"{m.label} {fmt_ci(c['metrics'][m.name])}" for m in CLASSIFIER_METRICS)
            + "</p>"
        )
    else:
        out.append(f"<p class='na'>Pooled out-of-fold classifier: {_e(c['reason'])}</p>")
    if pooled.get("scorer"):
        out.append(scorer_section(pooled["scorer"], "pooled out-of-fold", 0.95))
    return "".join(out)


def infection_section(inf: dict) -> str:
    """The infection U-Net's cross-validation (per variant, mean +- sd over folds) and the kept model."""
    cv = inf.get("cross_validation", {})
    rows = []
    for name, r in cv.get("variants", {}).items():
        if r.get("status") != "ok":
            rows.append([_e(f"{name}: failed"), _e(r.get("reason", "?"))])
            continue
        for where, label in (("at_best_epoch", f"epoch {r.get('best_epoch')}"), ("at_last_epoch", "last epoch")):
            for key, value in r.get(where, {}).items():
                if key in ("dice", "iou", "sensitivity", "specificity") or key.endswith("_dice"):
                    rows.append([_e(f"{name}, {label}: {key}"), f"{fmt(value['mean'])} ± {fmt(value['sd'])}"])
        rows.append([_e(f"{name}: s/epoch"), fmt(r.get("seconds_per_epoch"))])
    units = inf.get("units", "?")
    title = (
        f"<h2>Infection U-Net ({cv.get('folds', '?')}-fold cross-validation over {units} source units, "
        f"{inf.get('slices', '?')} slices; kept: {_e(inf.get('chosen_variant', '?'))}, "
        f"{inf.get('chosen_epochs', '?')} epochs, trained on all sources)</h2>"
    )
    note = (
        f"<p class='na'>{units} source units: a cross-validation over so few is not a result on its own "
        "(the epoch is chosen on the same folds: optimistic).</p>"
        if not isinstance(units, int) or units < 30
        else ""
    )
    return title + note + table(["", "mean ± sd over folds"], rows)


def cards_section(cards: list[dict]) -> str:
    """Which data each model learned from, from its model card (``covidct.models.card``): a model trained on
    synthetic phantoms only is said to be one, with what it takes for it to read a real patient."""
    rows = []
    for card in cards:
        sources = "; ".join(
            f"{src.get('name', '?')} ({src.get('kind', '?')}: "
            + ", ".join(f"{k} {v}" for k, v in src.items() if k not in ("name", "kind") and isinstance(v, int))
            + ")"
            for src in card.get("sources", [])
        )
        rows.append(
            [card.get("model", "?"), card.get("trained_on", "?"), sources or "none", card.get("code_version", "?")]
        )
    page = "<h2>Models</h2>" + table(
        ["model", "trained on", "sources", "code version"], [[_e(c) for c in r] for r in rows]
    )
    synthetic = [card.get("model", "?") for card in cards if card.get("trained_on") == "synthetic"]
    if synthetic:
        page += (
            f"<div class='warn'>Trained on synthetic phantoms only: {_e(', '.join(synthetic))}. Such a model reads "
            "a real patient only with <code>allow_synthetic_models: true</code>, and every output it gives then "
            "says so (the warning column of predictions.csv, the read-out's JSON, the QC titles).</div>"
        )
    return page + "<p>The whole cards: <code>results/models/*.card.md</code>.</p>"


def metrics_page(
    evaluation: dict,
    classifier_val: dict,
    scorer_val: dict,
    infection: dict | None = None,
    cross_validation: dict | None = None,
    cards: list[dict] | None = None,
) -> str:
    """The whole metrics page as HTML."""
    conf = evaluation.get("confidence", 0.95)
    parts = [f"<html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>"]
    if evaluation.get("demo"):
        parts.append(f"<div class='warn'><b>{_e(evaluation['warning'])}</b></div>")
    sp = evaluation["splits"]
    parts.append(
        "<h1>Metrics</h1><p>Headline: the <b>test</b> split, which chose nothing "
        f"({plural(sp['test']['scans'], 'scan')}, {plural(sp['test']['subjects'], 'subject')}). "
        f"Intervals: {conf:.0%} percentile "
        f"bootstrap over subjects ({evaluation['n_boot']} replicates). Figures from fewer than "
        f"{evaluation['min_subjects']} subjects, or from a split missing a class, are not shown.</p>"
    )
    parts.append("<h2>Test split</h2>")
    parts.append(classifier_section(evaluation["classifier"]["test"], "test", conf))
    parts.append(scorer_section(evaluation["scorer"]["test"], "test", conf))
    if cross_validation:
        parts.append(cv_section(cross_validation))
    parts.append("<h2>Validation split (apart: it chose checkpoints and threshold)</h2>")
    parts.append(classifier_section(evaluation["classifier"]["val"], "val", conf))
    parts.append(scorer_section(evaluation["scorer"]["val"], "val", conf))
    parts.append(
        f"<p>Training: classifier {classifier_val.get('epochs_run')} epochs "
        f"({classifier_val.get('train_seconds')} s), scorer {scorer_val.get('epochs_run')} epochs "
        f"({scorer_val.get('train_seconds')} s).</p>"
    )
    if infection:
        parts.append(infection_section(infection))
    if cards:
        parts.append(cards_section(cards))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_metrics_page(
    path,
    evaluation: dict,
    classifier: dict,
    scorer: dict,
    infection: dict,
    cross_validation: dict | None,
    cards: list[dict] | None = None,
) -> None:
    """The metrics page (``metrics_page``) as an HTML file, atomically."""
    page = metrics_page(evaluation, classifier, scorer, infection, cross_validation, cards)
    with atomic_path(path, suffix=".html") as tmp:
        tmp.write_text(page)
