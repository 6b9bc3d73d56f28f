"""Graders for the 2-D labs' exercises: `check_<exercise>(fn)` runs a student's function on fixed inputs, compares it
with the library (or the exact formula) within a stated tolerance, prints PASS / FAIL (and what differs) / TODO, and
returns the verdict (imgflow.core.grading.CheckResult). One module per lab:

- processes: lab 1 (ODE/SDE steps, Brownian motion, Ornstein–Uhlenbeck, Langevin)
- paths_and_losses: lab 2 (schedules, the conditional path, flow and score matching)
- guidance: lab 3 (label dropout, the guided field, the classifier-free-guidance loss)
- mean_flow: lab 5 (the MeanFlow loss)
"""

from imgflow.core.grading import reset, results, summary
from toy.exercises import guidance, mean_flow, paths_and_losses, processes
from toy.exercises.guidance import *  # noqa: F403
from toy.exercises.mean_flow import *  # noqa: F403
from toy.exercises.paths_and_losses import *  # noqa: F403
from toy.exercises.processes import *  # noqa: F403

__all__ = ["reset", "results", "summary", *guidance.__all__, *mean_flow.__all__, *paths_and_losses.__all__, *processes.__all__]
