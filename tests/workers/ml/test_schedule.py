"""The learning-rate schedule warms up, anneals to zero at the end of its plan, and
shortens the plan when the time budget will not hold every epoch, judged by the typical
(median) epoch so that one slow epoch does not cut the run short."""

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


def test_a_fast_machine_keeps_the_configured_epochs() -> None:
    plan = schedule(epochs=10, max_minutes=8.0)
    for done in range(1, 10):
        assert not plan.end_epoch(epochs_done=done, minutes_elapsed=0.1 * done, minutes_per_epoch=0.1)
        assert plan.planned_epochs == 10
    assert plan.end_epoch(epochs_done=10, minutes_elapsed=1.0, minutes_per_epoch=0.1)


def test_one_slow_epoch_does_not_cut_the_plan_to_what_it_alone_would_allow() -> None:
    plan = schedule(epochs=40, max_minutes=9.0)
    plan.end_epoch(epochs_done=1, minutes_elapsed=0.2, minutes_per_epoch=0.2)
    plan.end_epoch(epochs_done=2, minutes_elapsed=0.9, minutes_per_epoch=0.7)  # the machine was busy
    plan.end_epoch(epochs_done=3, minutes_elapsed=1.1, minutes_per_epoch=0.2)
    # Median 0.2 min per epoch: 39 more fit in the 7.9 minutes left; the plan is capped at 40.
    assert plan.planned_epochs == 40
    plan.end_epoch(epochs_done=4, minutes_elapsed=1.6, minutes_per_epoch=0.5)
    plan.end_epoch(epochs_done=5, minutes_elapsed=2.1, minutes_per_epoch=0.5)
    # Now typically 0.5 min: 13 more epochs fit in 6.9 minutes.
    assert plan.planned_epochs == 5 + 13


def test_an_overrun_budget_ends_training_after_the_current_epoch() -> None:
    plan = schedule(epochs=10, max_minutes=1.0)
    assert plan.end_epoch(epochs_done=1, minutes_elapsed=2.0, minutes_per_epoch=2.0)
    assert plan.planned_epochs == 1
