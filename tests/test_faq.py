"""The answers of docs/faq.md as numbers: the flow-matching loss's irreducible part, and label dropout's share."""

from __future__ import annotations

import math

import pytest
import torch

from imgflow.core import GaussianPath, LinearSchedule, flow_matching_loss
from imgflow.nn.embeddings import apply_label_drop, drop_labels, label_drop_mask
from toy import (
    GaussianMixture,
    GaussianMixtureMarginals,
    MLPVectorField,
    flow_matching_excess,
    irreducible_flow_matching_loss,
    train_flow_matching,
)

LAB_MIXTURE = dict(nmodes=5, std=0.5, scale=5.0)  # the mixture of the toy checks' flow matching (toy/checks/trained_models.py)


def gaussian_var(s: float, t: float) -> float:
    """Per coordinate, data N(mu, s^2 I) on the linear path, a = z - eps, b = x_t = t z + (1 - t) eps:
    Var(a | b) = Var a - Cov(a, b)^2 / Var b = (s^2 + 1) - (t s^2 - (1 - t))^2 / (t^2 s^2 + (1 - t)^2)."""
    return (s * s + 1) - (t * s * s - (1 - t)) ** 2 / (t * t * s * s + (1 - t) ** 2)


def simpson(f, lo: float, hi: float, n: int = 2000) -> float:
    """Simpson's rule on n + 1 points: for the smooth integrands here its error is far below the Monte Carlo one."""
    h = (hi - lo) / n
    return h / 3 * sum(f(lo + i * h) * (1 if i in (0, n) else 4 if i % 2 else 2) for i in range(n + 1))


def gaussian_floor_uniform(s: float) -> float:
    """L_irr for t ~ U[0, 1]: the mean of Var(a | b) over t."""
    return simpson(lambda t: gaussian_var(s, t), 0.0, 1.0)


def gaussian_floor_logit_normal(s: float, mean: float, std: float) -> float:
    """L_irr for t = sigmoid(mean + std n), n ~ N(0, 1): integral of Var(a | b) at t(n) against the normal density
    over |n| <= 10 (the integrand is bounded by s^2 + 1, so the tails beyond contribute < 1e-22)."""
    def f(n: float) -> float:
        return gaussian_var(s, 1 / (1 + math.exp(-(mean + std * n)))) * math.exp(-n * n / 2) / math.sqrt(2 * math.pi)
    return simpson(f, -10.0, 10.0)


@pytest.mark.parametrize("s, sampling", [(0.5, "uniform"), (2.0, "uniform"), (2.0, "logit_normal")])
def test_irreducible_loss_matches_the_closed_form_of_a_gaussian(s, sampling):
    data = GaussianMixture(torch.tensor([[1.0, -2.0]]), torch.eye(2)[None] * s * s)
    est = irreducible_flow_matching_loss(data, GaussianPath(LinearSchedule()), 100_000, time_sampling=sampling,
                                         time_mean=0.5, time_std=1.2, seed=1)
    exact = gaussian_floor_uniform(s) if sampling == "uniform" else gaussian_floor_logit_normal(s, 0.5, 1.2)
    assert abs(est.value - exact) < 4 * est.standard_error, (s, sampling, est, exact)
    assert est.standard_error < 0.01 * exact  # the estimate is tight enough to mean something
    if sampling == "logit_normal":  # the time distribution matters: the uniform floor is ~30 SE away here
        assert abs(gaussian_floor_uniform(s) - exact) > 20 * est.standard_error


@pytest.fixture(scope="module")
def lab():
    mixture = GaussianMixture.symmetric_2D(**LAB_MIXTURE)
    path = GaussianPath(LinearSchedule(), p_data=mixture)
    torch.manual_seed(3)
    fresh = mixture.sample(40_000), torch.rand(40_000)   # draws independent of the estimates' generator
    return mixture, path, irreducible_flow_matching_loss(mixture, path, 40_000, seed=2), fresh


def mean_and_se(per_sample: torch.Tensor) -> tuple[float, float]:
    return float(per_sample.mean()), float(per_sample.std()) / math.sqrt(per_sample.numel())


def test_the_exact_fields_loss_is_the_floor(lab):
    mixture, path, floor, (data, t) = lab
    assert floor.value > 1.0  # "why my loss does not go to zero": for this mixture the floor is most of the loss
    exact = GaussianMixtureMarginals(mixture, path)
    with torch.no_grad():  # the core loss (mean over coordinates, as the trainer reports) of the best possible model
        loss, se = mean_and_se(flow_matching_loss(lambda x, s: exact.velocity(x, s), path, data, t, per_sample=True))
    assert abs(loss - floor.value) < 4 * math.hypot(se, floor.standard_error)


def test_a_trained_models_loss_is_its_excess_plus_the_floor(lab):
    mixture, path, floor, (data, t) = lab
    model = MLPVectorField(2, (32, 32))
    train_flow_matching(model, path, num_iterations=150, batch_size=256, lr=1e-2, seed=0, progress=False)
    excess = flow_matching_excess(model, mixture, path, 40_000, seed=2)   # the same draws as the floor's
    with torch.no_grad():
        loss, se = mean_and_se(flow_matching_loss(model, path, data, t, per_sample=True))
    # floor and excess share their draws (correlated): their SEs add; the fresh loss is independent of both
    tol = 4 * math.hypot(se, floor.standard_error + excess.standard_error)
    assert abs(loss - (floor.value + excess.value)) < tol, (loss, floor, excess)
    assert loss > floor.value + 4 * math.hypot(se, floor.standard_error)  # 150 steps leave a measurable excess ...
    assert excess.value > 10 * excess.standard_error                      # ... which the excess measures directly


def test_label_dropout_drops_the_share_it_says_and_only_to_the_null_label():
    n, null = 200_000, 10
    labels = torch.arange(n) % 10
    for p in (0.1, 0.5):
        dropped = drop_labels(labels, p, null, generator=torch.Generator().manual_seed(0))
        share = float((dropped == null).float().mean())
        assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n), (p, share)   # 5 binomial sigmas
        kept = dropped != null
        assert torch.equal(dropped[kept], labels[kept])  # kept labels unchanged: the mask is not the wrong way round
    assert torch.equal(drop_labels(labels, 0.0, null), labels)
    assert bool((drop_labels(labels, 1.0, null) == null).all())
    # the trainer's two pieces: the mask (True = dropped) and its application
    assert not bool(label_drop_mask(n, 0.0).any()) and bool(label_drop_mask(n, 1.0).all())
    assert torch.equal(apply_label_drop(torch.tensor([3, 7, 1]), torch.tensor([True, False, False]), null),
                       torch.tensor([null, 7, 1]))
    with pytest.raises(ValueError, match="probability"):
        label_drop_mask(4, 1.5)


def test_the_trainers_label_dropout_drops_its_share_of_each_batch_to_the_null_label():
    from imgflow.data import ImageData
    from imgflow.training.batches import BatchSchedule, assemble_micro_batch, draw_global_batch

    n, p, null = 4096, 0.1, 10
    data = ImageData(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n) % 10)
    schedule = BatchSchedule(n, n, seed=0)
    dropped = kept_ok = 0
    steps = 25
    for step in range(steps):
        batch = draw_global_batch(step, seed=0, schedule=schedule, image_shape=(1, 2, 2), label_dropout=p, device="cpu",
                                  draw_times=lambda b, g, d: (torch.rand(b, generator=g, device=d), None))
        micro = assemble_micro_batch(batch, slice(0, n), data, hflip=False, null_label=null)
        true = data.labels[batch.indices]
        is_null = micro.labels == null
        assert torch.equal(is_null, batch.drop_label)  # exactly the drawn mask's rows became null (no label here is 10)
        dropped += int(is_null.sum())
        kept_ok += int(torch.equal(micro.labels[~is_null], true[~is_null]))
    total = steps * n
    assert abs(dropped / total - p) < 5 * math.sqrt(p * (1 - p) / total)  # flow.label_dropout = 0.1 drops 10 % of labels
    assert kept_ok == steps
