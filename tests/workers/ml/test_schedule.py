"""The learning-rate schedule warms up, anneals to zero at the end of its plan, and
shortens the plan (never lengthens it) when the time budget will not hold every epoch."""

from __future__ import annotations

import itertools

import pytest
import torch

from workers.ml.trainers.common import BudgetSchedule


def schedule(*, epochs: int = 10, steps_per_epoch: int = 5, max_minutes: float = 8.0) -> BudgetSchedule:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return BudgetSchedule(
        optimizer, max_lr=0.1, steps_per_epoch=steps_per_epoch, epochs=epochs, max_minutes=max_minutes
    )


def rate(plan: BudgetSchedule) -> float:
    return float(plan.optimizer.param_groups[0]["lr"])


def test_rate_warms_up_peaks_then_decays_to_zero_at_the_planned_end() -> None:
    plan = schedule()
    rates = [rate(plan)]
    for _ in range(plan.planned_steps):
        plan.step()
        rates.append(rate(plan))
    peak = rates.index(max(rates))
    rising, falling = rates[: peak + 1], rates[peak:]
    assert rates[0] == pytest.approx(0.1 / 25)
    assert max(rates) == pytest.approx(0.1, rel=1e-2)
    assert all(a <= b for a, b in itertools.pairwise(rising))
    assert all(a >= b for a, b in itertools.pairwise(falling))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_plan_shrinks_to_the_epochs_that_fit_the_budget_and_anneals_by_then() -> None:
    plan = schedule(epochs=25, max_minutes=8.0)
    # One epoch took a minute (of the 8): only 7 more fit, so the plan becomes 8 epochs.
    assert not plan.end_epoch(epochs_done=1, minutes_elapsed=1.0, minutes_per_epoch=1.0)
    assert plan.planned_epochs == 8
    for _ in range(8 * plan.steps_per_epoch):
        plan.step()
    assert rate(plan) == pytest.approx(0.0, abs=1e-12)
    assert plan.end_epoch(epochs_done=8, minutes_elapsed=8.0, minutes_per_epoch=1.0)


def test_plan_never_grows_and_a_fast_machine_keeps_the_configured_epochs() -> None:
    plan = schedule(epochs=10, max_minutes=8.0)
    assert not plan.end_epoch(epochs_done=1, minutes_elapsed=0.1, minutes_per_epoch=0.1)
    assert plan.planned_epochs == 10
    plan.end_epoch(epochs_done=2, minutes_elapsed=4.0, minutes_per_epoch=3.9)  # a slow epoch: 1 more fits
    assert plan.planned_epochs == 3
    plan.end_epoch(epochs_done=3, minutes_elapsed=4.1, minutes_per_epoch=0.1)  # fast again: no growth
    assert plan.planned_epochs == 3


def test_an_overrun_budget_ends_training_after_the_current_epoch() -> None:
    plan = schedule(epochs=10, max_minutes=1.0)
    assert plan.end_epoch(epochs_done=1, minutes_elapsed=2.0, minutes_per_epoch=2.0)
    assert plan.planned_epochs == 1
