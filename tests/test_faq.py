"""The answers of docs/faq.md as numbers: the flow-matching loss's irreducible part, and label dropout's share."""

from __future__ import annotations

import math

import torch

from imgflow.core import GaussianPath, LinearSchedule, flow_matching_loss
from imgflow.nn.embeddings import drop_labels
from toy import GaussianMixture, GaussianMixtureMarginals, MLPVectorField, irreducible_flow_matching_loss, train_flow_matching


def gaussian_floor(s: float) -> float:
    """Closed form for data N(mu, s^2 I) on the linear path: per coordinate, with a = z - eps and b = x_t,
    Var(a | b) = Var a - Cov(a, b)^2 / Var b = (s^2 + 1) - (t s^2 - (1 - t))^2 / (t^2 s^2 + (1 - t)^2), averaged over t ~ U[0, 1]
    (Simpson's rule on 2,001 points: the integrand is smooth, the rule's error is far below the Monte Carlo one)."""
    n = 2000
    total = 0.0
    for i in range(n + 1):
        t = i / n
        value = (s * s + 1) - (t * s * s - (1 - t)) ** 2 / (t * t * s * s + (1 - t) ** 2)
        total += value * (1 if i in (0, n) else 4 if i % 2 else 2)
    return total / (3 * n)


def test_irreducible_loss_matches_the_closed_form_of_a_gaussian():
    for s in (0.5, 2.0):
        data = GaussianMixture(torch.tensor([[1.0, -2.0]]), torch.eye(2)[None] * s * s)
        est = irreducible_flow_matching_loss(data, GaussianPath(LinearSchedule()), 100_000, seed=1)
        exact = gaussian_floor(s)
        assert abs(est.value - exact) < 4 * est.standard_error, (s, est, exact)
        assert est.standard_error < 0.01 * exact  # the estimate is tight enough to mean something


def test_the_exact_field_scores_the_floor_and_a_trained_model_stays_above_it():
    mixture = GaussianMixture.symmetric_2D(nmodes=5, std=0.5, scale=5.0)   # the lab's mixture
    path = GaussianPath(LinearSchedule(), p_data=mixture)
    floor = irreducible_flow_matching_loss(mixture, path, 40_000, seed=2)
    assert floor.value > 1.0  # "why my loss does not go to zero": most of the loss is this floor
    # the core loss of the exact marginal field is the floor (the same units: mean over coordinates)
    exact = GaussianMixtureMarginals(mixture, path)
    torch.manual_seed(3)
    data = mixture.sample(40_000)
    with torch.no_grad():
        per_sample = flow_matching_loss(lambda x, t: exact.velocity(x, t), path, data, torch.rand(40_000), per_sample=True)
    se = math.hypot(float(per_sample.std()) / math.sqrt(per_sample.numel()), floor.standard_error)
    assert abs(float(per_sample.mean()) - floor.value) < 4 * se
    # a briefly trained MLP: its loss on fresh draws lies above the floor (the excess is what training can still remove)
    model = MLPVectorField(2, (32, 32))
    train_flow_matching(model, path, num_iterations=150, batch_size=256, lr=1e-2, seed=0, progress=False)
    with torch.no_grad():
        trained = flow_matching_loss(model, path, data, torch.rand(40_000), per_sample=True)
    se = math.hypot(float(trained.std()) / math.sqrt(trained.numel()), floor.standard_error)
    assert float(trained.mean()) > floor.value + 4 * se


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
        dropped += int(is_null.sum())
        kept_ok += int(torch.equal(micro.labels[~is_null], true[~is_null]))
    total = steps * n
    assert abs(dropped / total - p) < 5 * math.sqrt(p * (1 - p) / total)  # flow.label_dropout = 0.1 drops 10 % of labels
    assert kept_ok == steps
