"""Refitting the routing thresholds while the models decide: on which parts?

    .venv/bin/python benchmarks/recalibration.py                      # generated scores, ~1 min
    .venv/bin/python benchmarks/recalibration.py --data ../shared/data/mtd   # + MTD models, ~6 min

Once a model set is deployed, people see the parts it is unsure of plus a random few of the
rest (the audit sample). Loupe refits the thresholds every 10 minutes from human-decided parts.
Which decided parts it fits on decides whether the escape bound holds:

* ``every decided part`` (Loupe before this benchmark): the doubtful band is crowded (every
  part there is decided) while the parts the thresholds pass are there only at the audit rate,
  so a defect that slips under the auto-pass threshold is under-counted;
* ``fair sample`` (``routing.fair_verdicts``): only parts that came to people whatever their
  scores: every part before a model was deployed, then the random sample (``audit_rate`` of
  all parts, those the models would decide and the doubtful ones alike);
* ``fair sample, latest W``: the same, the latest W parts only (``LOUPE_CALIBRATION_WINDOW``,
  5000 by default), so that a fit follows a line that changes.

The loop is simulated round by round with Loupe's own fit (``workers.routing.calibration``):
3,000 parts decided by people at the cold start, then rounds of ``--round`` parts (20,000,
about one 10-minute recalibration period at 3,000 parts a minute) routed by the thresholds of
the round before; people decide the parts in the band and the drawn ones; the fit is redone.
From round ``--change`` on the models get worse, as a camera going slightly out of focus does
to them without the drift check holding the station (``drift_models_mtd.py``):

* generated: goods' scores Beta(1.2, 9); defects' Beta(4, 3), from the change Beta(2.5, 3);
* MTD (with ``--data``): the classifier and anomaly detector trained on half of MTD as Loupe
  trains them; the other half scored unchanged and then blurred (r 0.7 and r 2), defects drawn
  from its defect scores and goods from its good scores.

5 % of parts are defective, targets as a project's defaults (0.5 % escape, 1 % false reject,
90 % confidence), audit rate 2 %. The true escape and review rates of each round's thresholds
are computed on the whole score distribution. Per policy, over ``--seeds`` runs: the mean
review share before and after the change, the mean true escape after it, the share of rounds
(after the change, from the third on) whose escape is over target, and the worst. Ends with
one JSON line of the headline figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from workers.routing.calibration import Thresholds, calibrate, calibrate_recent  # noqa: E402

TARGET_ESCAPE, TARGET_FALSE_REJECT, CONFIDENCE, AUDIT_RATE, DEFECT_SHARE = 0.005, 0.01, 0.9, 0.02, 0.05
COLD_START = 3000
WINDOWS = (5000, 2000)
LOUPE_WINDOW, LOUPE_RECENT = 5000, 1000  # LOUPE_CALIBRATION_WINDOW, LOUPE_CALIBRATION_RECENT


@dataclass
class Source:
    """A score distribution: goods' and defects' scores, before and after the change."""

    name: str
    key: str  # for the JSON line
    goods: Callable[[np.random.Generator, int, bool], np.ndarray]
    defects: Callable[[np.random.Generator, int, bool], np.ndarray]
    # Exact rates of thresholds (t_pass, t_fail) on the distribution, before/after the change.
    truth: Callable[[float, float, bool], tuple[float, float]]


def generated() -> Source:
    rng = np.random.default_rng(12345)
    big = {
        changed: (rng.beta(1.2, 9, 1_000_000), rng.beta(2.5, 3, 1_000_000) if changed else rng.beta(4, 3, 1_000_000))
        for changed in (False, True)
    }
    return pooled("generated (Beta)", "generated", big)


def pooled(name: str, key: str, pools: dict[bool, tuple[np.ndarray, np.ndarray]]) -> Source:
    """Parts drawn with replacement from pools of good and defect scores."""

    def truth(t_pass: float, t_fail: float, changed: bool) -> tuple[float, float]:
        goods, defects = pools[changed]
        escape = DEFECT_SHARE * float(np.mean(defects <= t_pass))
        review = (1 - DEFECT_SHARE) * float(np.mean((goods > t_pass) & (goods < t_fail))) + DEFECT_SHARE * float(
            np.mean((defects > t_pass) & (defects < t_fail))
        )
        return escape, review

    return Source(
        name,
        key,
        goods=lambda rng, n, changed: rng.choice(pools[changed][0], n),
        defects=lambda rng, n, changed: rng.choice(pools[changed][1], n),
        truth=truth,
    )


def draw(source: Source, rng: np.random.Generator, n: int, changed: bool) -> tuple[np.ndarray, np.ndarray]:
    defective = rng.random(n) < DEFECT_SHARE
    scores = np.empty(n)
    scores[defective] = source.defects(rng, int(defective.sum()), changed)
    scores[~defective] = source.goods(rng, int((~defective).sum()), changed)
    return scores, defective


class Pool:
    """Decided parts, oldest first, and Loupe's fit on them: the latest ``window``; with
    ``recent``, checked on the latest ``recent`` (``calibrate_recent``) and, when those break a
    target, started again from them (``Calibration.sample_since``)."""

    def __init__(self, window: int | None, recent: int | None) -> None:
        self.window, self.recent = window, recent
        self.scores: list[float] = []
        self.defective: list[bool] = []
        self.start = 0

    def add(self, scores: np.ndarray, defective: np.ndarray) -> None:
        self.scores.extend(scores.tolist())
        self.defective.extend(defective.tolist())

    def fit(self) -> Thresholds:
        first = self.start if self.window is None else max(self.start, len(self.scores) - self.window)
        s, d = np.array(self.scores[first:]), np.array(self.defective[first:], dtype=bool)
        targets = {"target_escape": TARGET_ESCAPE, "target_false_reject": TARGET_FALSE_REJECT, "delta": 1 - CONFIDENCE}
        if self.recent is None:
            return calibrate(s, d, **targets)
        chosen = calibrate_recent(s, d, recent=self.recent, **targets)
        if chosen.shifted:
            self.start = len(self.scores) - self.recent
        return chosen


def run(source: Source, policy: str, seed: int, rounds: int, change: int, size: int) -> list[tuple[bool, float, float]]:
    """(changed, true escape, true review share) of each round's thresholds."""
    rng = np.random.default_rng(seed)
    window = int(policy.split("latest ")[1].split(" ")[0].rstrip(",")) if "latest" in policy else None
    recent = int(policy.split("checked on ")[1].split(" ")[0]) if "checked" in policy else None
    pool = Pool(window, recent)
    pool.add(*draw(source, rng, COLD_START, False))
    chosen = pool.fit()
    out = []
    for index in range(1, rounds + 1):
        changed = index >= change
        out.append((changed, *source.truth(chosen.t_pass, chosen.t_fail, changed)))
        scores, defective = draw(source, rng, size, changed)
        drawn = rng.random(size) < AUDIT_RATE
        doubtful = (scores > chosen.t_pass) & (scores < chosen.t_fail)
        decided = (drawn | doubtful) if policy == "every decided part" else drawn
        pool.add(scores[decided], defective[decided])
        chosen = pool.fit()
    return out


def mtd_sources(data: Path, seed: int) -> tuple[list[Source], float]:
    from drift_models_mtd import apply, score
    from drift_mtd import SCENARIOS
    from routing_mtd import collect, split, train_models

    from workers.ml.imaging import read_image

    samples = collect(data)
    train_set, calibration, evaluation = split(samples, seed)
    held_out = calibration + evaluation
    truth = np.array([s.label is not None for s in held_out])
    started = time.time()
    models = train_models(train_set, Path(tempfile.mkdtemp(prefix="loupe-recal-")), seed, {})
    originals = [read_image(s.image_path) for s in held_out]
    rng = np.random.default_rng(seed)
    unchanged = score(models, originals)["defect_score"]
    sources = []
    for name in ("slightly out of focus (blur r=0.7)", "out of focus (blur r=2)"):
        change = SCENARIOS[name]
        assert change is not None
        changed = score(models, [apply(change, image, rng) for image in originals])["defect_score"]
        pools = {False: (unchanged[~truth], unchanged[truth]), True: (changed[~truth], changed[truth])}
        radius = name.split("r=")[1].rstrip(")")
        sources.append(pooled(f"MTD, then blurred (r {radius})", f"mtd_blur_r{radius.replace('.', '')}", pools))
    return sources, (time.time() - started) / 60


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="MTD root: adds sources scored by models trained on it")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--change", type=int, default=5, help="first round after the change")
    parser.add_argument("--round", dest="size", type=int, default=20_000, help="parts per round")
    parser.add_argument(
        "--checked", default="5000/1000", help="window/recent pairs of the checked fit (Loupe: 5000/1000)"
    )
    parser.add_argument("--windows", default=",".join(map(str, WINDOWS)), help="fair-sample windows to compare")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "recalibration-latest.txt")
    args = parser.parse_args(argv)
    lines: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    policies = ["every decided part", "fair sample", *(f"fair sample, latest {w}" for w in args.windows.split(","))]
    policies += [f"fair, latest {w}, checked on {r}" for w, r in (pair.split("/") for pair in args.checked.split(","))]
    loupe = f"fair, latest {LOUPE_WINDOW}, checked on {LOUPE_RECENT}"
    sources = [generated()]
    note = ""
    if args.data:
        mtd, minutes = mtd_sources(args.data, 0)
        sources += mtd
        note = f"; MTD models trained and held-out half scored in {minutes:.1f} min"
    log(
        f"Refitting thresholds while the models decide: {args.seeds} seeds x {args.rounds} rounds of {args.size} "
        f"parts, change from round {args.change}, {DEFECT_SHARE:.0%} defective, targets {TARGET_ESCAPE:.1%} escape / "
        f"{TARGET_FALSE_REJECT:.0%} false reject at {CONFIDENCE:.0%}, audit {AUDIT_RATE:.0%}{note}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    log("")
    width = max(len(policy) for policy in policies)
    header = (
        f"{'scores':<38} | {'fitted on':<{width}} | {'review before':>13} | {'review after':>12} | "
        f"{'escape after':>12} | {'over target':>11} | {'worst escape':>12}"
    )
    log(header)
    log("-" * len(header))
    headline: dict[str, float] = {}
    for source in sources:
        for policy in policies:
            rows = [run(source, policy, seed, args.rounds, args.change, args.size) for seed in range(args.seeds)]
            before = float(np.mean([review for row in rows for changed, _, review in row if not changed]))
            after = [(escape, review) for row in rows for changed, escape, review in row if changed]
            settled = [escape for row in rows for escape in [e for changed, e, _ in row if changed][2:]]
            over = float(np.mean(np.array(settled) > TARGET_ESCAPE))
            escape_after = float(np.mean([e for e, _ in after]))
            review_after = float(np.mean([r for _, r in after]))
            log(
                f"{source.name:<38} | {policy:<{width}} | {before:>13.2%} | {review_after:>12.2%} | "
                f"{escape_after:>12.3%} | {over:>11.0%} | {max(e for e, _ in after):>12.3%}"
            )
            name = {"every decided part": "every_decided", loupe: "loupe"}.get(policy)
            if name:
                key = f"{source.key}_{name}"
                headline.update(
                    {
                        f"{key}_review_before": round(before, 4),
                        f"{key}_review_after": round(review_after, 4),
                        f"{key}_escape_after": round(escape_after, 5),
                        f"{key}_over_target": round(over, 3),
                    }
                )
        log("")
    log(
        "review: share of parts sent to people by the band (the audit sample adds 2 %); escape: defective AND "
        "auto-passed over all parts; over target: share of rounds after the change, from its third, above 0.5 %."
    )
    log(json.dumps(headline))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
