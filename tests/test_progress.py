"""Tests of jacnet.progress: the one live bar shows what each epoch entry holds."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

import jacnet as jn
from jacnet.progress import Progress


def shown(entries, total=10):
    buf = io.StringIO()
    with Progress(total, console=Console(file=buf, width=200, force_terminal=False)) as bar:
        for e in entries:
            bar.update(e)
    return buf.getvalue()


def test_progress_shows_epoch_losses_and_the_step_size():
    text = shown([{"epoch": 3, "loss": 0.123456, "val_loss": 0.5, "test_loss": None,
                   "mu": 0.001}])
    assert "3/10" in text and "loss 0.1235" in text and "val 0.5" in text
    assert "test -" in text and "mu 0.001" in text and "ETA" in text
    text = shown([{"epoch": 1, "loss": 2.0, "lr": 0.01}])
    assert "lr 0.01" in text and "val -" in text


def test_train_verbose_draws_the_bar(capsys):
    x = np.linspace(-1, 1, 40)[:, None]
    net = jn.Network([jn.Dense(1, 3, "tanh"), jn.Dense(3, 1)], seed=0)
    jn.train(net, x, x**2, solver="lm", max_epochs=2, verbose=True)
    out = capsys.readouterr().out
    assert "2/2" in out and "mu" in out
