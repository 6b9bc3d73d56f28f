"""toy: the 2-D lab on top of the shared core (imgflow.core).

Densities you can sample and score, the exact marginal fields of a Gaussian mixture under
any Gaussian path, the classic processes as core SDEs, MLP fields and one training loop for
the core's losses, and the validations (`python -m toy`). Paths, losses, conversions,
dynamics and solvers all come from imgflow.core; nothing here re-implements them.
"""

from toy.densities import Checkerboard, Circles, Density, Gaussian, GaussianMixture, Moons
from toy.gmm_fields import GaussianMixtureMarginals
from toy.irreducible import LossEstimate, flow_matching_excess, irreducible_flow_matching_loss
from toy.metrics import energy_distance, excess_kurtosis, null_distance_band, null_energy_band, relative_l2, sliced_wasserstein
from toy.models import MLPConditionalField, MLPFlowMap, MLPScore, MLPVectorField, build_mlp
from toy.processes import BrownianMotion, LangevinDynamics, LinearDecayODE, OrnsteinUhlenbeck
from toy.training import (
    train,
    train_flow_matching,
    train_interpolant,
    train_lagrangian_distillation,
    train_mean_flow,
    train_mean_flow_distillation,
    train_score_matching,
)

__all__ = [
    "BrownianMotion",
    "Checkerboard",
    "Circles",
    "Density",
    "Gaussian",
    "GaussianMixture",
    "GaussianMixtureMarginals",
    "LangevinDynamics",
    "LinearDecayODE",
    "LossEstimate",
    "MLPConditionalField",
    "MLPFlowMap",
    "MLPScore",
    "MLPVectorField",
    "Moons",
    "OrnsteinUhlenbeck",
    "build_mlp",
    "energy_distance",
    "excess_kurtosis",
    "flow_matching_excess",
    "irreducible_flow_matching_loss",
    "null_distance_band",
    "null_energy_band",
    "relative_l2",
    "sliced_wasserstein",
    "train",
    "train_flow_matching",
    "train_interpolant",
    "train_lagrangian_distillation",
    "train_mean_flow",
    "train_mean_flow_distillation",
    "train_score_matching",
]
