"""Graders for the image labs' exercises (networks and the VAE): `check_<exercise>(fn)` runs a student's function on
fixed inputs, compares it with imgflow's own module within a stated tolerance, prints PASS / FAIL (and what differs)
/ TODO, and returns the verdict (imgflow.core.grading.CheckResult).

- networks: the U-Net's parts, patchify, one adaLN-Zero DiT block
- vae: the reparameterised sample and the KL term
"""

from imgflow.core.grading import reset, results, summary
from imgflow.exercises import networks, vae
from imgflow.exercises.networks import *  # noqa: F403
from imgflow.exercises.vae import *  # noqa: F403

__all__ = ["reset", "results", "summary", *networks.__all__, *vae.__all__]
