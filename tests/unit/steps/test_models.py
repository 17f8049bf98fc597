"""The steps of workflow/rules/models.smk on tiny inputs (the training steps run in the workflow tests)."""

from __future__ import annotations

import numpy as np

from covidct.models.data import read_hdf5


def test_build_hdf5_writes_three_splits_by_subject(tmp_path):
    import pandas as pd

    from covidct.steps import build_hdf5

    shape = (4, 8, 8)
    rng = np.random.default_rng(8)
    patients, npys = [], []
    for i in range(40):
        path = tmp_path / f"p{i}.npy"
        np.save(path, rng.random(shape, dtype=np.float32))
        npys.append(str(path))
        patients.append(
            {
                "patient_id": f"p{i}",
                "label": str(i % 2),
                "score": f"{i}.5" if i % 2 else "",
                "split": "test" if i == 3 else "",
                "subject_id": f"s{i // 4}",
            }
        )
    counts = build_hdf5(
        npys,
        tmp_path / "train.h5",
        tmp_path / "val.h5",
        tmp_path / "test.h5",
        tmp_path / "split.tsv",
        patients,
        val_fraction=0.3,
        test_fraction=0.3,
        shape=shape,
    )
    table = pd.read_csv(tmp_path / "split.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["patient_id", "subject_id", "split", "label", "score"]
    assert table.groupby("subject_id")["split"].nunique().max() == 1
    assert set(table[table["subject_id"] == "s0"]["split"]) == {"test"}  # p3's pin took its subject along
    for split in ("train", "val", "test"):
        data = read_hdf5(tmp_path / f"{split}.h5")
        assert data["patient_ids"] == table[table["split"] == split]["patient_id"].tolist()
        assert counts[split] == len(data["patient_ids"]) > 0
