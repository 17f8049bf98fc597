"""Infection U-Net in the pipeline: folds by source unit, sources (kinds, errors, lesion-free volumes),
augmentation in the input space, degenerate runs, cross-validated training from 3D lesion-type sources, volume
inference (infection and lesion types) and segmentation severity on held-out synthetic phantoms."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from covidct.demo.anatomy import LESION_CONSOLIDATION, LESION_GGO, make_phantom
from covidct.demo.cohort import write_infection_training
from covidct.demo.spec import PhantomSpec
from covidct.errors import CovidctError
from covidct.infection import (
    SliceGroup,
    assign_folds,
    cross_validate,
    load_sources,
    load_unet,
    segment_volume,
    severity,
    train,
)
from covidct.infection.augment import ZOOM, augment_pairs
from covidct.infection.inputs import CLIP


def test_folds_keep_units_whole_balanced_and_order_free():
    names = [f"v{i}" for i in range(11)]
    folds = assign_folds(names, 5, seed=1)
    assert set(folds) == set(names) and sorted(np.bincount(list(folds.values()))) == [2, 2, 2, 2, 3]
    assert assign_folds(names[::-1], 5, seed=1) == folds
    assert assign_folds(names, 5, seed=2) != folds
    with pytest.raises(CovidctError, match="at least 5 images or volumes"):
        assign_folds(names[:3], 5, seed=1)


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(CovidctError, match="exactly one of images"):
        load_sources([{"masks": str(tmp_path)}], 32)
    with pytest.raises(CovidctError, match="unknown key"):
        load_sources([{"volumes": "a", "masks": "b", "window": [0, 1]}], 32)
    with pytest.raises(CovidctError, match="lesion_free source gives volumes"):
        load_sources([{"volumes": "a", "masks": "b", "lesion_free": True}], 32)
    (tmp_path / "v").mkdir()
    (tmp_path / "m").mkdir()
    with pytest.raises(CovidctError, match="no volumes"):
        load_sources([{"volumes": str(tmp_path / "v"), "masks": str(tmp_path / "m")}], 32)
    with pytest.raises(CovidctError, match="mixes binary and lesion-type"):
        load_sources([{"volumes": "a", "masks": "b"}, {"volumes": "c", "masks": "d", "labels": "types"}], 32)


def test_lesion_free_volumes_with_their_lungs_and_an_excluded_region(tmp_path):
    """A lesion-free source gives clean slices of its lungs (all-zero labels), ``max_slices`` of them, none
    of the slices an exclude mask touches; one group per volume."""
    write_infection_training(tmp_path, n=1, matrix=64, pixel_spacing_mm=6.0)
    import SimpleITK as sitk

    lungs = sitk.ReadImage(str(next((tmp_path / "lungs").iterdir())))
    away = sitk.GetArrayFromImage(lungs) * 0
    zs = np.nonzero(sitk.GetArrayFromImage(lungs).any(axis=(1, 2)))[0]
    away[zs[len(zs) // 2], 30:34, 30:34] = 1  # one slice in the middle
    (tmp_path / "exclude").mkdir()
    out = sitk.GetImageFromArray(away)
    out.CopyInformation(lungs)
    sitk.WriteImage(out, str(tmp_path / "exclude" / next((tmp_path / "lungs").iterdir()).name))
    src = {"volumes": str(tmp_path / "volumes"), "lungs": str(tmp_path / "lungs"), "lesion_free": True}
    groups = load_sources([src], 32, max_slices=1000)
    assert len(groups) == 1 and groups[0].lesion_free and not groups[0].y.any()
    n_all = len(groups[0].x)
    excluded = load_sources([{**src, "exclude": str(tmp_path / "exclude")}], 32, max_slices=1000)
    # 6 mm phantom slices on the 1.5 mm grid: the excluded phantom slice covers a few grid slices
    assert 0 < n_all - len(excluded[0].x) <= 6
    assert len(load_sources([src], 32, max_slices=8)[0].x) == 8
    assert groups[0].x.min() >= CLIP[0] and groups[0].x.max() <= CLIP[1]


def test_augmentation_keeps_labels_and_the_input_range():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(6, 64, 64, 1)).astype(np.float32)
    y = np.zeros((6, 64, 64, 1), np.uint8)
    y[:, 20:40, 20:40] = 1
    y[:, 25:30, 25:30] = 2
    xa, ya = augment_pairs(x, y, rng)
    assert xa.shape == x.shape and ya.shape == y.shape and set(np.unique(ya)) <= {0, 1, 2}
    assert xa.min() >= CLIP[0] and xa.max() <= CLIP[1]
    assert not np.allclose(xa, x)
    # the lesion moves with the image, not away from it: its area stays within the zoom range (area x zoom^2),
    # give or take the elastic field (up to about 3 % of the side)
    lo, hi = ZOOM[0] ** 2 * 0.85, ZOOM[1] ** 2 * 1.15
    assert all(lo < (ya[i] > 0).sum() / 400 < hi for i in range(6))


def _blobs(n: int, size: int, seed: int) -> list[SliceGroup]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    groups = []
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        cy, cx = rng.integers(8, size - 8, 2)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = 1
        img = rng.normal(0, 1, (size, size)) + 3 * mask
        groups.append(SliceGroup(f"u{i}", img[None, ..., None].astype(np.float32), mask[None, ..., None]))
    return groups


def test_degenerate_run_is_retried_then_reported_failed(caplog):
    """A run that cannot learn (learning rate 0: flat loss) is retried with new seeds, then its variant is
    reported failed in the cross-validation, and training refuses to keep a model."""
    groups = _blobs(6, 32, seed=3)
    cv = cross_validate(groups, ["dice"], folds=2, epochs=3, base_filters=2, learning_rate=0.0, warmup_epochs=0,
                        retries=1, augment=False, batch_size=4)  # fmt: skip
    entry = cv["variants"]["dice"]
    assert entry["status"] == "failed" and "degenerate" in entry["reason"]
    attempts = entry["folds"][0]["attempts"]
    assert len(attempts) == 2 and attempts[1]["seed"] == attempts[0]["seed"] + 1000
    assert all(a["degenerate"] for a in attempts)
    assert "retrying with another seed" in caplog.text
    from covidct.infection.train import choose

    with pytest.raises(CovidctError, match="every infection U-Net variant was degenerate"):
        choose(cv)


def test_every_epoch_says_its_loss_held_out_dice_and_eta(caplog, monkeypatch):
    import logging

    from covidct import runtime
    from covidct.infection.data import stack
    from covidct.infection.train import fit

    monkeypatch.setattr(runtime, "LONG_CPU_SECONDS", 0.0)  # every CPU training is "long" here
    progress = runtime.Progress("infection U-Net", 4, gpu=False, cheaper="infection.size 128")
    train_x, train_y = stack(_blobs(3, 32, seed=5))
    held_x, held_y = stack(_blobs(1, 32, seed=6))
    with caplog.at_level(logging.INFO, logger="covidct.runtime"):
        fit(train_x, train_y, "dice_ce", 2, base_filters=2, augment=False, x_held=held_x, y_held=held_y,
            progress=progress, label="dice_ce fold 1/2")  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert [line.split(":")[0] for line in lines] == [f"infection U-Net dice_ce fold 1/2 epoch {e}/2" for e in (1, 2)]
    assert all(", held-out Dice 0." in line or ", held-out Dice 1." in line for line in lines)
    assert "3 of 4 planned epochs left, ETA " in lines[0] and "2 of 4 planned epochs left, ETA " in lines[1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no GPU is visible" in warnings[0] and "infection.size 128" in warnings[0]


def test_threshold_is_chosen_on_held_out_folds_and_lesion_free_lungs_hold_it_back():
    """An under-confident model (lesion at p 0.35, background 0.2) is best cut at 0.35 (pooled Dice of the
    held-out pixels), which the nested estimate confirms fold by fold; lesion-free lungs at p 0.37 forbid
    every threshold that marks them, and of equal ones the fixed 0.5 stays."""
    from covidct.infection.train import THRESHOLD_GRID, calibrate_threshold, threshold_counts

    def fold(n: int, free_p: float | None = None) -> dict:
        truth = np.zeros((n, 16, 16), np.uint8)
        truth[:, 4:10, 4:10] = 1
        prob = np.where(truth > 0, 0.35, 0.2).astype(np.float32)[..., None]
        out = {"counts": threshold_counts(list(truth), list(prob)), "free": None, "free_pixels": 0}
        if free_p is not None:
            free = np.full((2, 16, 16, 1), free_p, np.float32)
            free[:, :8] = 0.05  # half of each lesion-free slice below every threshold
            out |= {"free": threshold_counts(list(np.zeros((2, 16, 16))), list(free)), "free_pixels": free.size}
        return out

    plain = calibrate_threshold([fold(3), fold(2)])
    assert plain["threshold"] == 0.35  # 0.25, 0.30 and 0.35 all give Dice 1; the one nearest 0.5
    assert plain["out_of_fold_dice"][THRESHOLD_GRID.tolist().index(0.5)] == 0.0
    assert plain["nested"]["dice"]["mean"] == 1.0 and plain["nested"]["dice_at_fixed_threshold"]["mean"] == 0.0
    assert plain["nested"]["pooled_dice"]["mean"] == 1.0 and plain["out_of_fold_pooled_dice"][0] < 1.0
    assert plain["folds"][1]["pooled_counts"][THRESHOLD_GRID.tolist().index(0.35)] == [2 * 36, 0, 0]
    assert plain["nested"]["thresholds"] == [0.35, 0.35] and "lesion_free_marked_percent" not in plain
    held_back = calibrate_threshold([fold(3, free_p=0.37), fold(2, free_p=0.37)])
    marked = dict(zip(held_back["grid"], held_back["lesion_free_marked_percent"]))
    assert marked[0.35] == 50.0 and marked[0.4] == 0.0
    # 0.35 and below would mark half of the lesion-free pixels; every threshold allowed misses the lesion as
    # 0.5 does, so the fixed one stays
    assert held_back["threshold"] == 0.5
    assert held_back["nested"]["dice"]["mean"] == held_back["nested"]["dice_at_fixed_threshold"]["mean"] == 0.0


def test_fold_models_of_one_variant_average_into_one_model_file(tmp_path):
    """``ensemble_folds``: the fold models (one variant, so one layer name) are kept as one model whose output
    is their mean, and it saves and loads as the sidecar's model."""
    from covidct.infection.train import ensemble
    from covidct.infection.unet import build_unet, load_model

    models = [build_unet(32, 2, "dice_ce") for _ in range(2)]
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 1)).astype(np.float32)
    want = (models[0].predict(x, verbose=0) + models[1].predict(x, verbose=0)) / 2
    model = ensemble(models)
    model.save(tmp_path / "ensemble.keras")
    np.testing.assert_allclose(load_model(tmp_path / "ensemble.keras").predict(x, verbose=0), want, atol=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small lesion-type U-Net cross-validated (2 folds) and trained on 6 synthetic phantoms' slices (the
    default 3D source)."""
    root = tmp_path_factory.mktemp("inf")
    # 64x64 phantoms of 6 mm pixels: the tiny U-Net (64 px input) sees them at native resolution
    write_infection_training(root / "train", n=6, matrix=64, pixel_spacing_mm=6.0)
    train_dir = root / "train"
    source = {"volumes": str(train_dir / "volumes"), "masks": str(train_dir / "masks"),
              "lungs": str(train_dir / "lungs"), "labels": "types"}  # fmt: skip
    metrics = train([source], root / "unet.keras", root / "metrics.json", size=64, base_filters=8,
                    variants=("dice_ce",), folds=2, epochs=40, batch_size=8, learning_rate=2e-3, augment=False,
                    max_slices_per_volume=24)  # fmt: skip
    return root, metrics


def test_cross_validated_training_on_synthetic_volumes_learns(trained):
    root, metrics = trained
    cv = metrics["cross_validation"]
    assert set(cv["fold_of"].values()) == {0, 1} and len(cv["fold_of"]) == 6
    entry = cv["variants"]["dice_ce"]
    held = [set(f["held_out"]) for f in entry["folds"]]
    assert not held[0] & held[1] and held[0] | held[1] == set(cv["fold_of"])  # each unit held out once
    assert entry["status"] == "ok" and metrics["chosen_variant"] == "dice_ce"
    assert metrics["chosen_epochs"] == entry["best_epoch"] == int(np.argmax(entry["mean_dice_curve"])) + 1
    # an empty prediction scores Dice 1 on lesion-free slices and 0 on the others
    last = [f["curve"][-1] for f in entry["folds"]]
    assert all(0 < c["truth_fraction"] < 0.3 for c in last)
    empty = entry["at_best_epoch"]["dice_of_empty_prediction"]["mean"]
    assert 0.1 < empty < 0.6
    assert entry["at_best_epoch"]["dice"]["mean"] > empty + 0.15
    assert entry["at_best_epoch"]["ground_glass_dice_pooled"]["mean"] > 0.3
    assert metrics["classes"] == 3 and metrics["class_names"] == ["background", "ground_glass", "consolidation"]
    assert json.loads((root / "unet.json").read_text())["classes"] == 3  # the sidecar beside the model
    assert json.loads((root / "metrics.json").read_text())["cv_dice"] == pytest.approx(metrics["cv_dice"])
    assert metrics["final"]["epochs"] == metrics["chosen_epochs"] == len(metrics["final"]["history"])
    # the threshold is chosen on the held-out folds, told with its nested estimate, and kept for inference
    chosen = entry["threshold"]
    assert metrics["threshold"] == chosen["threshold"] == json.loads((root / "unet.json").read_text())["threshold"]
    fixed_at = chosen["grid"].index(0.5)
    assert chosen["out_of_fold_dice"][chosen["grid"].index(chosen["threshold"])] >= chosen["out_of_fold_dice"][fixed_at]
    assert len(chosen["nested"]["thresholds"]) == 2 and 0 < chosen["nested"]["dice"]["mean"] <= 1


def test_volume_severity_and_types_on_held_out_phantoms(trained):
    """Held-out phantoms (other seeds than the training ones) of 0, 10 and 20 % infection: the healthy one
    reads healthy, the severity ranks them with room between, each read within 10 points, lesion types
    mostly right where infection is found. This 64 px U-Net of 6 phantoms under-reads: measured while
    writing this (lung-cropped input space), 0.6 / 3.8 / 11.7 for 0 / 10 / 20; an earlier input space (whole
    slices) read 0.7 / 6.7 / 16.2. Accuracy on real scans is measured in bench/infection_real.py."""
    root, _ = trained
    model, sidecar = load_unet(root / "unet.keras")
    read = {}
    for score in (0.0, 10.0, 20.0):
        phantom = make_phantom(PhantomSpec("heldout", 3300 + int(score), score > 0, score, 48, 5.0, 64, 6.0))
        lung = phantom.lung_labels > 0
        mask, types = segment_volume(model, sidecar, phantom.hu, lung)
        assert not (mask & ~lung).any() and types is not None
        assert np.array_equal(types > 0, mask > 0) and set(np.unique(types)) <= {0, LESION_GGO, LESION_CONSOLIDATION}
        read[score] = severity(mask, lung)
        assert read[score] == pytest.approx(phantom.score, abs=10.0), read
        both = (mask > 0) & (phantom.lesion_kind > 0)
        if both.sum() > 50:
            assert (types[both] == phantom.lesion_kind[both]).mean() > 0.7
    assert read[0.0] < 2.0 and read[0.0] + 2.0 < read[10.0] and read[10.0] + 4.0 < read[20.0], read


def test_a_volume_slice_exported_as_an_8bit_jpeg_keeps_its_labels_on_its_pixels():
    """``export_slice`` crops to the slice's lungs, shrinks, quantizes and JPEG-compresses; the labels follow
    the same crop and resize, so a lesion stays where it was."""
    from covidct.infection.data import EXPORT_MARGIN, EXPORT_SIDE_PX, export_slice

    hu = np.full((200, 240), 40.0, np.float32)
    lung = np.zeros(hu.shape, bool)
    lung[40:160, 30:110] = lung[40:160, 130:210] = True
    hu[lung] = -850.0
    mask = np.zeros(hu.shape, np.uint8)
    mask[80:120, 50:90] = 1
    hu[mask > 0] = -400.0
    image, labels = export_slice(hu, lung, mask, np.random.default_rng(3))
    assert image.dtype == np.uint8 and labels.shape == image.shape
    # the 120 x 180 lung box with at most EXPORT_MARGIN per side, not enlarged
    assert max(image.shape) <= min(EXPORT_SIDE_PX[1], round(180 * (1 + 2 * EXPORT_MARGIN[1])))
    assert image[labels > 0].mean() > image[(labels == 0)].min() + 20  # the lesion is brighter than clean lung
    assert 0.05 < labels.mean() < 0.15  # 40 x 40 of a 120 x 180 box (plus margin)
    assert export_slice(hu, np.zeros_like(lung), mask, np.random.default_rng(3)) is None


def test_volume_source_with_exports_adds_each_slice_as_a_2d_export(tmp_path):
    """``exports: true`` adds the 2D-path views of a volume's slices to its own group (never another unit), with
    the lesions where they are on the HU views."""
    write_infection_training(tmp_path, n=1, matrix=64, pixel_spacing_mm=6.0)
    src = {"volumes": str(tmp_path / "volumes"), "masks": str(tmp_path / "masks"), "lungs": str(tmp_path / "lungs")}
    plain = load_sources([src], 32, max_slices=12)
    both = load_sources([{**src, "exports": True}], 32, max_slices=12)
    assert len(plain) == len(both) == 1
    n = len(plain[0].x)
    assert n < len(both[0].x) <= 2 * n  # slices without lungs the 2D finder can see are left out
    exported = both[0].y[n:]
    assert exported.any() and both[0].x[n:].min() >= CLIP[0] and both[0].x[n:].max() <= CLIP[1]
    # the lesion's share of the lungs is about the same in both views
    share = [float(y[lz > 0].mean()) for y, lz in ((plain[0].y, plain[0].lung), (exported, both[0].lung[n:]))]
    assert abs(share[0] - share[1]) < 0.5 * share[0], share
    with pytest.raises(CovidctError, match="exports apply to volumes"):
        load_sources([{"images": "a", "masks": "b", "exports": True}], 32)


def test_folds_as_jobs_of_their_own_make_the_same_cross_validation(tmp_path, monkeypatch):
    """The workflow runs each fold as a job (``train_fold``) and the final training reads their folders
    (``train(fold_dirs=...)``): the same folds, held-out units and choice as in one process; a folder made
    with other settings, or a missing fold, is refused by name. (Plumbing: runs this short count as healthy.)"""
    import importlib

    from covidct.infection.train import train_fold

    # the module, not the function ``train`` that ``covidct.infection`` exports under the same name
    monkeypatch.setattr(importlib.import_module("covidct.infection.train"), "degenerate", lambda history, checked: None)

    write_infection_training(tmp_path / "src", n=4, matrix=32, pixel_spacing_mm=12.0)
    source = {"volumes": str(tmp_path / "src" / "volumes"), "masks": str(tmp_path / "src" / "masks"),
              "lungs": str(tmp_path / "src" / "lungs"), "labels": "types"}  # fmt: skip
    settings = dict(size=32, base_filters=2, folds=2, epochs=2, batch_size=8, augment=False, max_slices_per_volume=4)
    dirs = [tmp_path / f"dice_ce_fold{k + 1}" for k in range(2)]
    infos = [train_fold([source], d, "dice_ce", k, ensemble_folds=True, **settings) for k, d in enumerate(dirs)]
    assert all((d / "fold.json").is_file() and (d / "counts.npz").is_file() and (d / "model.keras").is_file()
               for d in dirs)  # fmt: skip
    metrics = train([source], tmp_path / "jobs.keras", tmp_path / "jobs.json", variants=("dice_ce",),
                    fold_dirs=dirs, **settings)  # fmt: skip
    alone = train([source], tmp_path / "one.keras", tmp_path / "one.json", variants=("dice_ce",), **settings)
    jobs_cv, one_cv = metrics["cross_validation"], alone["cross_validation"]
    assert jobs_cv["fold_of"] == one_cv["fold_of"]
    for ours, theirs, info in zip(
        jobs_cv["variants"]["dice_ce"]["folds"], one_cv["variants"]["dice_ce"]["folds"], infos
    ):
        assert ours == info["record"]
        assert (ours["held_out"], ours["train_slices"], len(ours["curve"])) == (
            theirs["held_out"], theirs["train_slices"], len(theirs["curve"]))  # fmt: skip
    assert "threshold" in jobs_cv["variants"]["dice_ce"] and (tmp_path / "jobs.keras").is_file()
    # the fold models averaged: read from the folders
    ensembled = train([source], tmp_path / "ens.keras", tmp_path / "ens.json", variants=("dice_ce",),
                      fold_dirs=dirs, ensemble_folds=True, **settings)  # fmt: skip
    assert ensembled["ensemble"] == 2
    # as the workflow's final job reads them: in a process that trained no fold (the losses not yet registered)
    script = (
        "import json, sys\n"
        "from covidct.infection.train import train\n"
        "a = json.loads(sys.argv[1])\n"
        "m = train([a['source']], a['out'], a['metrics'], variants=('dice_ce',), fold_dirs=a['dirs'],\n"
        "          ensemble_folds=True, **a['settings'])\n"
        "print('ensemble', m['ensemble'])\n"
    )
    args = {"source": source, "out": str(tmp_path / "fresh.keras"), "metrics": str(tmp_path / "fresh.json"),
            "dirs": [str(d) for d in dirs], "settings": settings}  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script, json.dumps(args)], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0 and "ensemble 2" in run.stdout, run.stderr[-3000:]
    with pytest.raises(CovidctError, match="other settings.*epochs"):
        train([source], tmp_path / "x.keras", tmp_path / "x.json", variants=("dice_ce",), fold_dirs=dirs,
              **(settings | {"epochs": 3}))  # fmt: skip
    with pytest.raises(CovidctError, match="folds missing: dice_ce fold 2"):
        train([source], tmp_path / "x.keras", tmp_path / "x.json", variants=("dice_ce",), fold_dirs=dirs[:1],
              **settings)  # fmt: skip
    assert not (tmp_path / "x.keras").exists()
