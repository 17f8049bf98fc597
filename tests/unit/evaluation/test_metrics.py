"""The plain metrics of the training step, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.evaluation.metrics import (
    auc,
    class_distance_table,
    classification_metrics,
    regression_metrics,
    youden_threshold,
)


def test_auc_youden_and_confusion_by_hand():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.3, 0.6, 0.4, 0.7, 0.9])
    assert auc(y, p) == pytest.approx(8 / 9)  # 8 of the 9 (positive, negative) pairs are ordered right
    assert auc([1, 1], [0.2, 0.3]) is None
    t = youden_threshold(y, p)
    assert t == pytest.approx(0.7) or t == pytest.approx(0.4)
    m = classification_metrics(y, p, threshold=0.5)
    assert m["confusion_matrix"]["rows_true_cols_pred"] == [[2, 1], [1, 2]]
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_regression_metrics_and_class_distance_table_by_hand():
    true = [5, 25, 45, 65, 85]
    pred = [10, 45, 45, 20, 85]  # classes: 0->0, 1->2, 2->2, 3->1, 4->4
    assert class_distance_table(true, pred) == {0: 3, 1: 1, 2: 1, 3: 0, 4: 0}
    m = regression_metrics(true, pred)
    assert m["mae"] == pytest.approx((5 + 20 + 0 + 45 + 0) / 5)
    assert m["rmse"] == pytest.approx(np.sqrt((25 + 400 + 0 + 2025 + 0) / 5))
    assert m["class_exact_accuracy"] == pytest.approx(0.6)
    assert m["class_within_one_accuracy"] == pytest.approx(0.8)
    assert m["pearson_r"] == pytest.approx(np.corrcoef(true, pred)[0, 1])
