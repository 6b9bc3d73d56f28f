"""Experiments: what trains models and judges them, above training, sampling and evaluation.

- `budget`: training recipes compared at fixed wall-clock budgets (`budget_comparison`).
- `folder_parity`: the folder path on real data: the cost of its cache and parity with the built-in loader.
- `benchmark`: throughput of the image pipeline (training steps and sampling) on this machine.
"""

from imgflow.experiments.budget import BudgetReport, budget_comparison

__all__ = ["BudgetReport", "budget_comparison"]
