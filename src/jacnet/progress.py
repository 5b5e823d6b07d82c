"""The one live progress display of training: a rich bar fed with the record's epoch entries.

``train(verbose=True)`` and ``jacnet train`` both show it: epoch of total, the bar, the
training, validation and test losses, the step size (``lr`` of the mini-batch solvers,
``mu`` of Levenberg-Marquardt), time elapsed and time left.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Progress"]


def _g(value: Any) -> str:
    """A loss for the bar: four significant digits, ``-`` when there is none."""
    return "-" if value is None else f"{value:.4g}"


class Progress:
    """A live bar over ``total`` epochs; :meth:`update` takes each epoch entry.

    Parameters
    ----------
    total : int
        The epoch budget.
    completed : int, default=0
        Epochs already done (a resumed run).
    console : rich.console.Console, optional
        Where to draw (default: rich's own console, on stdout).
    """

    def __init__(self, total: int, completed: int = 0, console: Any = None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("epoch"), MofNCompleteColumn(), BarColumn(bar_width=16),
            TextColumn("loss {task.fields[loss]}  val {task.fields[val]}  "
                       "test {task.fields[test]}  {task.fields[step]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False)
        self.task = self.bar.add_task("train", total=total, completed=completed, loss="-",
                                      val="-", test="-", step="")
        self.bar.start()

    def update(self, entry: dict[str, Any], net: Any = None) -> None:
        """Show the epoch ``entry`` (a record's epoch dict); usable as a train callback."""
        name = "mu" if "mu" in entry else "lr" if "lr" in entry else None
        step = "" if name is None else f"{name} {entry[name]:.2g}"
        self.bar.update(self.task, completed=entry["epoch"], loss=_g(entry["loss"]),
                        val=_g(entry.get("val_loss")), test=_g(entry.get("test_loss")),
                        step=step)

    def stop(self) -> None:
        self.bar.stop()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
