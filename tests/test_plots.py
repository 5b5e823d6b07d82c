"""The PNG figures: written, readable as images, not blank."""

from __future__ import annotations

import os

import numpy as np
import pytest
from matplotlib.image import imread

from jacnet import plots
from jacnet.record import TrainingRecord


def assert_picture(path, min_size=(200, 300)):
    """A readable PNG of at least ``min_size`` (rows, columns) with visible content."""
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] >= min_size[0] and image.shape[1] >= min_size[1]
    gray = image[..., :3].mean(axis=2)
    assert gray.std() > 0.05, "the picture is (nearly) blank"
    assert (gray < 0.5).mean() > 0.002, "no dark pixels: no text, lines or markers"


def _record(n=40, validation=True, test=True):
    epochs = []
    for k in range(1, n + 1):
        epochs.append({"epoch": k, "loss": 2.0 / k, "val_loss": 2.2 / k + 0.01 * k if validation
                       else None, "test_loss": 2.4 / k + 0.012 * k if test else None})
    return TrainingRecord(solver="adam", epochs=epochs, stop_reason="validation",
                          best_epoch=14)


@pytest.mark.parametrize("sets", [(True, True), (False, False), (True, False)])
def test_plots_loss_curves(tmp_path, sets):
    plots.loss_curves(_record(validation=sets[0], test=sets[1]), tmp_path / "loss.png")
    assert_picture(tmp_path / "loss.png")
    assert os.listdir(tmp_path) == ["loss.png"]  # written atomically, no temporary left


def test_plots_loss_curves_single_epoch(tmp_path):
    plots.loss_curves(_record(n=1), tmp_path / "loss.png")
    assert_picture(tmp_path / "loss.png")


def test_plots_predicted_vs_true_several_outputs(tmp_path):
    rng = np.random.default_rng(0)
    splits = {}
    for name, n in (("train", 50), ("validation", 10), ("test", 10)):
        t = rng.normal(size=(n, 2))
        splits[name] = (t, t + 0.3 * rng.normal(size=(n, 2)))
    plots.predicted_vs_true(splits, tmp_path / "pvt.png", names=["height", "weight"])
    assert_picture(tmp_path / "pvt.png", (300, 600))


def test_plots_predicted_vs_true_skips_empty_split(tmp_path):
    t = np.linspace(0, 1, 20)
    plots.predicted_vs_true({"train": (t, t**2), "test": (t[:0], t[:0])}, tmp_path / "p.png")
    assert_picture(tmp_path / "p.png")


def test_plots_confusion_matrix(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.choice(["cat", "dog", "bird"], size=60)
    pred = np.where(rng.random(60) < 0.8, y, "dog")
    plots.confusion_matrix(y, pred, ["bird", "cat", "dog"], tmp_path / "c.png")
    assert_picture(tmp_path / "c.png")


def test_plots_blank_picture_is_caught(tmp_path):
    from matplotlib.figure import Figure

    Figure(figsize=(5, 4)).savefig(tmp_path / "blank.png")
    with pytest.raises(AssertionError, match="blank"):
        assert_picture(tmp_path / "blank.png")


def test_plots_bad_input_is_named(tmp_path):
    empty = np.array([])
    with pytest.raises(ValueError, match="splits must hold at least one non-empty split"):
        plots.predicted_vs_true({"test": (empty, empty)}, tmp_path / "p.png")
    with pytest.raises(ValueError, match=r"splits\['test'\] must pair y_true and y_pred"):
        plots.predicted_vs_true({"test": (np.ones(3), np.ones(4))}, tmp_path / "p.png")
    with pytest.raises(ValueError, match=r"y_true holds labels that are not in classes: \['2'\]"):
        plots.confusion_matrix([0, 1, 2], [0, 1, 1], [0, 1], tmp_path / "c.png")
    with pytest.raises(ValueError, match="y_true and y_pred must have the same length"):
        plots.confusion_matrix([0, 1], [0], [0, 1], tmp_path / "c.png")
    assert not list(tmp_path.iterdir())


def test_plots_predicted_vs_true_of_a_diverged_model(tmp_path):
    """Predictions near 1e250 (finite) and inf: Pearson's R is undefined, not a warning."""
    t = np.linspace(0, 1, 20)
    with np.errstate(all="raise"):
        r = plots._pearson(t, t * 1e250)
    assert np.isnan(r) or abs(r) <= 1
    assert np.isnan(plots._pearson(t, np.full(20, np.inf)))
    plots.predicted_vs_true({"train": (t, t * 1e250)}, tmp_path / "p.png")
    assert_picture(tmp_path / "p.png")


def test_plots_loss_curves_without_an_epoch_says_so(tmp_path):
    record = TrainingRecord(solver="adam", epochs=[], stop_reason="non_finite")
    plots.loss_curves(record, tmp_path / "loss.png")
    assert_picture(tmp_path / "loss.png")


def _interval_splits(k=1, seed=0):
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in (("train", 80), ("validation", 15), ("test", 0)):
        t = rng.normal(size=(n, k))
        p = t + 0.2 * rng.normal(size=(n, k))
        splits[name] = (t, p, p - 0.35, p + 0.35)
    return splits


@pytest.mark.parametrize("k", [1, 2])
def test_plots_intervals(tmp_path, k):
    plots.intervals(_interval_splits(k), tmp_path / "i.png", names=["a", "b"][:k])
    assert_picture(tmp_path / "i.png", (250 * k, 600))
    assert os.listdir(tmp_path) == ["i.png"]


def test_plots_intervals_thins_many_rows(tmp_path):
    t = np.linspace(-3, 3, 5000)
    plots.intervals({"test": (t, t, t - 1, t + 1)}, tmp_path / "i.png", max_points=50)
    assert_picture(tmp_path / "i.png")


@pytest.mark.parametrize("k", [1, 3])
def test_plots_error_histogram(tmp_path, k):
    splits = {name: arrays[:2] for name, arrays in _interval_splits(k).items()}
    plots.error_histogram(splits, tmp_path / "e.png", names=["x", "y", "z"][:k])
    assert_picture(tmp_path / "e.png", (250, 300 * min(k, 2)))


def test_plots_error_histogram_of_a_diverged_model(tmp_path):
    t = np.linspace(0, 1, 10)
    plots.error_histogram({"train": (t, np.full(10, np.inf))}, tmp_path / "e.png")
    assert_picture(tmp_path / "e.png")


def test_plots_intervals_bad_input_is_named(tmp_path):
    t = np.zeros(5)
    with pytest.raises(ValueError, match="4 arrays of one shape"):
        plots.intervals({"test": (t, t, t[:3], t)}, tmp_path / "i.png")
    with pytest.raises(ValueError, match="at least one non-empty split"):
        plots.error_histogram({"test": (t[:0], t[:0])}, tmp_path / "e.png")
