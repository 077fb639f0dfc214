"""Risk-controlling thresholds for automatic decisions (Learn-then-Test / RCPS style).

Each part gets a defect score s in [0, 1]. A part with s <= t_pass is passed automatically,
s >= t_fail is failed automatically, anything between goes to a person. On n human-labelled
calibration parts we pick

* t_pass: the largest threshold whose escape rate (defective AND auto-passed, over all parts)
  has a one-sided Clopper-Pearson upper bound <= target_escape at confidence 1 - delta;
* t_fail: the smallest threshold whose false-reject rate (good AND auto-failed, over all
  parts) has such a bound <= target_false_reject.

Both risks are monotone in the threshold, so scanning candidate thresholds in order and
stopping at the first one that fails its test is a fixed-sequence test: with probability at
least 1 - delta (over the draw of the calibration set, for exchangeable parts) the chosen
threshold's true risk is at or under the target. With too few calibration parts no threshold
passes, and every part goes to a person: the safe default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta


def risk_upper_bound(failures: int, n: int, delta: float) -> float:
    """One-sided (1 - delta) Clopper-Pearson upper bound of a binomial proportion."""
    if n <= 0:
        return 1.0
    if failures >= n:
        return 1.0
    return float(beta.ppf(1.0 - delta, failures + 1, n - failures))


def parts_needed(target: float, delta: float) -> int:
    """The fewest calibration parts with which any threshold can pass the risk test: with no
    failure among n parts the bound is 1 - delta^(1/n), at or under ``target`` from
    n = ln(delta) / ln(1 - target) (460 for 0.5 % at 90 % confidence). Fewer parts, and every
    part goes to a person."""
    if not 0.0 < target < 1.0 or not 0.0 < delta < 1.0:
        raise ValueError("target and delta must lie strictly between 0 and 1")
    n = max(1, math.ceil(math.log(delta) / math.log1p(-target) - 1e-9))
    while risk_upper_bound(0, n, delta) > target:  # floating point at the boundary
        n += 1
    return n


@dataclass(frozen=True)
class Thresholds:
    t_pass: float  # auto-pass when score <= t_pass (-1.0: never)
    t_fail: float  # auto-fail when score >= t_fail (2.0: never)
    n: int
    escape_rate: float  # empirical, on the calibration set
    false_reject_rate: float
    review_rate: float  # share of calibration parts that would go to people
    # Fitted on the latest parts only: they broke a target under a fit on all (``calibrate_recent``).
    shifted: bool = False


def _upper_bounds(failures: np.ndarray, n: int, delta: float) -> np.ndarray:
    bounds = np.ones_like(failures, dtype=np.float64)
    below = failures < n
    bounds[below] = beta.ppf(1.0 - delta, failures[below] + 1, n - failures[below])
    return bounds


def calibrate(
    scores: np.ndarray, defective: np.ndarray, *, target_escape: float, target_false_reject: float, delta: float
) -> Thresholds:
    """Thresholds controlling both risks on calibration ``scores`` (float, [0, 1]) with
    human truth ``defective`` (bool). Cost: O(n log n), vectorised."""
    scores = np.asarray(scores, dtype=np.float64)
    defective = np.asarray(defective, dtype=bool)
    n = int(scores.size)
    if n == 0:
        return Thresholds(-1.0, 2.0, 0, 0.0, 0.0, 1.0)
    candidates, inverse = np.unique(scores, return_inverse=True)
    defects_at = np.bincount(inverse, weights=defective, minlength=candidates.size)
    goods_at = np.bincount(inverse, weights=~defective, minlength=candidates.size)

    # Escapes if we auto-pass everything <= candidate i; tested in ascending order.
    escapes = np.cumsum(defects_at).astype(np.int64)
    passing = _upper_bounds(escapes, n, delta) <= target_escape
    first_failure = int(np.argmin(passing)) if not passing.all() else candidates.size
    t_pass = float(candidates[first_failure - 1]) if first_failure > 0 else -1.0

    # False rejects if we auto-fail everything >= candidate i; tested in descending order.
    rejects = np.cumsum(goods_at[::-1]).astype(np.int64)[::-1]
    ok = (_upper_bounds(rejects, n, delta) <= target_false_reject) & (candidates > t_pass)
    ok_descending = ok[::-1]
    run = int(np.argmin(ok_descending)) if not ok_descending.all() else candidates.size
    t_fail = float(candidates[candidates.size - run]) if run > 0 else 2.0

    rates = _rates(scores, defective, t_pass, t_fail)
    return Thresholds(t_pass, t_fail, n, rates["escape_rate"], rates["false_reject_rate"], rates["review_rate"])


def risk_lower_bound(failures: int, n: int, delta: float) -> float:
    """One-sided (1 - delta) Clopper-Pearson lower bound of a binomial proportion."""
    if n <= 0 or failures <= 0:
        return 0.0
    return float(beta.ppf(delta, failures, n - failures + 1))


def calibrate_recent(
    scores: np.ndarray,
    defective: np.ndarray,
    *,
    recent: int,
    target_escape: float,
    target_false_reject: float,
    delta: float,
) -> Thresholds:
    """``calibrate`` on every part (oldest first), unless the latest ``recent`` of them show
    that those thresholds break a target now: when the one-sided (1 - delta) *lower* bound of
    the escape (or false-reject) rate of the thresholds on the recent parts is over its target,
    the line has changed under the models (they got worse), and the thresholds are fitted on
    the recent parts alone. A long window keeps the bound tight while the line is steady; the
    check lets a fit follow a change within ``recent`` parts instead of a whole window
    (benchmarks/recalibration.py)."""
    scores = np.asarray(scores, dtype=np.float64)
    defective = np.asarray(defective, dtype=bool)
    chosen = calibrate(
        scores, defective, target_escape=target_escape, target_false_reject=target_false_reject, delta=delta
    )
    if scores.size <= recent:
        return chosen
    latest, latest_defective = scores[-recent:], defective[-recent:]
    escapes = int(np.count_nonzero(latest_defective & (latest <= chosen.t_pass)))
    rejects = int(np.count_nonzero(~latest_defective & (latest >= chosen.t_fail)))
    if (
        risk_lower_bound(escapes, recent, delta) <= target_escape
        and risk_lower_bound(rejects, recent, delta) <= target_false_reject
    ):
        return chosen
    refit = calibrate(
        latest, latest_defective, target_escape=target_escape, target_false_reject=target_false_reject, delta=delta
    )
    return dataclasses.replace(refit, shifted=True)


def _rates(scores: np.ndarray, defective: np.ndarray, t_pass: float, t_fail: float) -> dict[str, float]:
    n = max(int(scores.size), 1)
    auto_pass = scores <= t_pass
    auto_fail = scores >= t_fail
    return {
        "escape_rate": float(np.count_nonzero(defective & auto_pass)) / n,
        "false_reject_rate": float(np.count_nonzero(~defective & auto_fail)) / n,
        "review_rate": float(np.count_nonzero(~auto_pass & ~auto_fail)) / n,
    }


@dataclass(frozen=True)
class CurvePoint:
    target_escape: float
    t_pass: float
    t_fail: float
    review_rate: float  # expected share of parts sent to people
    escape_rate: float


def workload_curve(
    scores: np.ndarray,
    defective: np.ndarray,
    *,
    targets: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05),
    target_false_reject: float,
    delta: float,
) -> list[CurvePoint]:
    """The manager's trade-off: for each escape-rate target, the share of parts people review."""
    points = []
    for target in targets:
        chosen = calibrate(
            scores, defective, target_escape=target, target_false_reject=target_false_reject, delta=delta
        )
        points.append(CurvePoint(target, chosen.t_pass, chosen.t_fail, chosen.review_rate, chosen.escape_rate))
    return points


BETTER, WORSE, SAME, TOO_FEW = "better", "worse", "same", "too_few_parts"
# Review shares closer than this (on the same parts) count as the same workload.
SAME_WORKLOAD = 0.005


@dataclass(frozen=True)
class Comparison:
    """A candidate model set against the one serving, fitted to the same targets on the same
    human-decided parts (paired: each part scored by both)."""

    serving: Thresholds
    candidate: Thresholds
    verdict: str  # BETTER / WORSE / SAME: the candidate's share of parts to people; TOO_FEW
    # 90 % interval of (candidate - serving) share to people over paired resamples of the parts.
    difference: tuple[float, float] = (0.0, 0.0)


def compare(
    serving_scores: np.ndarray,
    candidate_scores: np.ndarray,
    defective: np.ndarray,
    *,
    target_escape: float,
    target_false_reject: float,
    delta: float,
    draws: int = 200,
    seed: int = 0,
) -> Comparison:
    """Which of two model sets costs people less at the same escape and false-reject bounds.
    Both fits hold the bounds, so the figure of merit is the share of parts each sends to
    people. The parts are resampled (paired, ``draws`` times) and both fits redone on each: a
    candidate is better only when it sends fewer parts to people in 95 % of the resamples and
    by more than ``SAME_WORKLOAD`` on the parts themselves, worse the other way round, else the
    same (a difference the parts cannot tell from chance). With parts too few for either fit to
    decide any, there is nothing to tell them apart by."""
    targets = {"target_escape": target_escape, "target_false_reject": target_false_reject, "delta": delta}
    serving = calibrate(serving_scores, defective, **targets)
    candidate = calibrate(candidate_scores, defective, **targets)
    if serving.review_rate >= 1.0 and candidate.review_rate >= 1.0:
        return Comparison(serving, candidate, TOO_FEW)
    rng = np.random.default_rng(seed)
    n = len(defective)
    differences = np.empty(draws)
    for index in range(draws):
        chosen = rng.integers(0, n, n)
        mine = calibrate(candidate_scores[chosen], defective[chosen], **targets).review_rate
        theirs = calibrate(serving_scores[chosen], defective[chosen], **targets).review_rate
        differences[index] = mine - theirs
    low, high = (float(value) for value in np.quantile(differences, [0.05, 0.95]))
    point = candidate.review_rate - serving.review_rate
    if high < 0 and point < -SAME_WORKLOAD:
        verdict = BETTER
    elif low > 0 and point > SAME_WORKLOAD:
        verdict = WORSE
    else:
        verdict = SAME
    return Comparison(serving, candidate, verdict, (low, high))
