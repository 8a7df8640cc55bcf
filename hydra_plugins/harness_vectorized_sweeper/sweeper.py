"""`hydra/sweeper=vectorized`: the shuffled sweeper, launching the points that share a compiled program as one job.

Points that differ only in values the training program takes as arguments (learning rate,
weight decay, Adam's betas and eps, the seed) train as one vmapped program of up to
`vectorize.max_points` points (harness/jobs/grouping.py); each point still gets its own record
and W&B run. Every other point is launched alone, as the shuffled sweeper launches it.
"""

from __future__ import annotations

from harness.core.config import TRACED
from harness.jobs.grouping import group_jobs, singles
from hydra_plugins.harness_shuffled_sweeper.sweeper import ShuffledSweeper


class VectorizedSweeper(ShuffledSweeper):
    @staticmethod
    def planned(jobs: list[list[str]], seed: int | None, config) -> list[list[str]]:
        return group_jobs(ShuffledSweeper.planned(jobs, seed, config), int(config.vectorize.max_points))

    def said(self, points: int, jobs: list[list[str]]) -> None:
        alone, most = singles(jobs), self.config.vectorize.max_points
        if most == 1:
            print(f"vectorized sweeper: {points} points in {len(jobs)} jobs, each alone (vectorize.max_points=1)",
                  flush=True)
            return
        print(f"vectorized sweeper: {points} points in {len(jobs)} jobs: {points - alone} points in "
              f"{len(jobs) - alone} vectorized jobs of up to {self.config.vectorize.max_points} "
              f"(vectorize.max_points), {alone} alone (no other point differs from them only in traced values: "
              f"{', '.join(TRACED)})", flush=True)
