"""`hydra/sweeper=shuffled`: Hydra's basic sweeper, launching its jobs in a seeded random order.

The basic sweeper launches the grid in order: the first swept axis changes slowest,
so every run of one method happens in one stretch of the sweep's time. A machine
that drifts over minutes (thermal state, other load) then reads as a difference
between methods. Shuffled, the drift spreads over every configuration as noise,
which the findings' intervals and their same-program control can see. The order
depends on the seed alone, so `resume` plans the same jobs under the same numbers.
"""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from harness.jobs.sweep_plan import launch_order
from hydra_plugins.harness_grid_sweeper.sweeper import GridSweeper


class ShuffledSweeper(GridSweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None, seed: int = 0):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.seed = seed

    @staticmethod
    def planned(jobs: list[list[str]], seed: int | None, config) -> list[list[str]]:
        """The jobs this sweeper launches for the grid `jobs` (override lists), in order; the sweep's plan lists
        them (harness.jobs.callbacks.plan_jobs)."""
        return launch_order(jobs, seed)

    def split_arguments(self, overrides, max_batch_size):  # the basic sweeper's, an instance method here
        (grid,) = BasicSweeper.split_arguments(overrides, None)
        jobs = self.planned([list(job) for job in grid], self.seed, self.config)
        self.said(len(grid), jobs)
        assert max_batch_size is None or max_batch_size > 0  # as the basic sweeper asserts
        size = max_batch_size or max(len(jobs), 1)
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]

    def said(self, points: int, jobs: list[list[str]]) -> None:
        """What this sweeper tells the user about its jobs: nothing here."""
