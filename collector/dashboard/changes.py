"""When blocking started and ended: change points per series (service, path,
operator, link type), with a confidence.

The model is a two-state hidden Markov chain over the days that have data:
the path is either open or interfered with (blocked or throttled). Each
probe's day (a unit, collector/dashboard/rollup.py) is one observation that
agrees with the true state except with probability `noise` (a flaky endpoint,
a probe on a bad link, a liar). The state may switch between two observed
days with a probability that grows with the gap between them: after a month
without data a change is plausible, between two consecutive days it needs
evidence. So one odd day among daily measurements is ignored, while a sparse
series (a replay, a probe that runs weekly) can still change state on a
single well-supported observation, and several probes agreeing on one day
settle it at once.

The states are decoded with Viterbi; each switch is reported with the
posterior probability (forward-backward) that the state switched that way
within WINDOW days of it: the change happened between the last day seen in
the old state (`after`) and the first day seen in the new one (`at`). The
noise level is estimated per series, so noisy probes need more evidence.
Inconclusive units carry no information and are left out; days without data
are gaps, never "open".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

OPEN, INTERFERED = 0, 1
NOISE = 0.1  # probability that a unit disagrees with the true state (first guess)
NOISE_FLOOR, NOISE_CEILING = 0.05, 0.35
RATE = 1 / 60  # prior rate of state changes per day
MIN_CONFIDENCE = 0.5  # changes below are not reported
WINDOW = 7  # days around a switch whose switch probabilities add up to its confidence


@dataclass(frozen=True)
class Day:
    day: date
    open: int  # units read open
    interfered: int  # units read blocked or throttled


@dataclass(frozen=True)
class ChangePoint:
    kind: str  # start | end
    at: date  # first day seen in the new state
    after: date  # last day seen in the old state
    confidence: float
    probes: int  # units on `at`


def _switch(gap_days: int, rate: float) -> float:
    """Probability of being in the other state `gap_days` later (a symmetric
    two-state chain switching with probability `rate` per day)."""
    return (1 - (1 - 2 * rate) ** max(gap_days, 1)) / 2


def _log_emission(day: Day, state: int, noise: float) -> float:
    agree, disagree = (day.open, day.interfered) if state == OPEN else \
        (day.interfered, day.open)
    return agree * math.log1p(-noise) + disagree * math.log(noise)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def detect(days: list[Day], noise: float | None = None, rate: float = RATE,
           min_confidence: float = MIN_CONFIDENCE) -> list[ChangePoint]:
    """Change points of one series; `days` in any order, days without any
    conclusive unit ignored. `noise` None: estimated from the series itself
    (how often its units disagree with the decoded states, between NOISE_FLOOR
    and NOISE_CEILING), so a noisy series needs more evidence to change."""
    seen = sorted((d for d in days if d.open + d.interfered), key=lambda d: d.day)
    if len(seen) < 2:
        return []
    if noise is not None:
        return _detect(seen, noise, rate, min_confidence)[0]
    noise = NOISE
    for _ in range(4):
        changes, states = _detect(seen, noise, rate, min_confidence)
        wrong = sum(d.interfered if s == OPEN else d.open for d, s in zip(seen, states,
                                                                          strict=True))
        estimate = min(max(wrong / sum(d.open + d.interfered for d in seen), NOISE_FLOOR),
                       NOISE_CEILING)
        if abs(estimate - noise) < 0.01:
            break
        noise = estimate
    return changes


def _detect(seen: list[Day], noise: float, rate: float, min_confidence: float
            ) -> tuple[list[ChangePoint], list[int]]:
    n = len(seen)
    emit = [[_log_emission(d, s, noise) for s in (OPEN, INTERFERED)] for d in seen]
    trans = []  # trans[i][a][b]: from day i-1 in state a to day i in state b
    for i in range(1, n):
        p = _switch((seen[i].day - seen[i - 1].day).days, rate)
        stay, move = math.log1p(-p), math.log(p)
        trans.append([[stay, move], [move, stay]])
    prior = [math.log(0.5), math.log(0.5)]

    # Viterbi: the most likely sequence of states
    score = [prior[s] + emit[0][s] for s in (0, 1)]
    back: list[list[int]] = []
    for i in range(1, n):
        step, new = [], []
        for b in (0, 1):
            options = [score[a] + trans[i - 1][a][b] for a in (0, 1)]
            best = 0 if options[0] >= options[1] else 1
            step.append(best)
            new.append(options[best] + emit[i][b])
        back.append(step)
        score = new
    states = [0 if score[0] >= score[1] else 1]
    for step in reversed(back):
        states.append(step[states[-1]])
    states.reverse()

    # forward-backward, for the confidence of each switch
    forward = [[prior[s] + emit[0][s] for s in (0, 1)]]
    for i in range(1, n):
        forward.append([_logsumexp([forward[-1][a] + trans[i - 1][a][b] for a in (0, 1)])
                        + emit[i][b] for b in (0, 1)])
    backward = [[0.0, 0.0] for _ in range(n)]
    for i in range(n - 2, -1, -1):
        backward[i] = [_logsumexp([trans[i][a][b] + emit[i + 1][b] + backward[i + 1][b]
                                   for b in (0, 1)]) for a in (0, 1)]
    total = _logsumexp(forward[-1])

    def switched(k: int, a: int, b: int) -> float:
        """Posterior probability of a switch a -> b between observed days k-1 and k."""
        return math.exp(forward[k - 1][a] + trans[k - 1][a][b] + emit[k][b] + backward[k][b]
                        - total)

    changes = []
    for i in range(1, n):
        a, b = states[i - 1], states[i]
        if a == b:
            continue
        # where exactly it switched may be unsure between neighbouring days while the
        # switch itself is not: sum over the gaps within WINDOW days of this one
        near = [k for k in range(1, n) if abs((seen[k].day - seen[i].day).days) <= WINDOW]
        confidence = min(sum(switched(k, a, b) for k in near), 1.0)
        if confidence >= min_confidence:
            changes.append(ChangePoint("start" if b == INTERFERED else "end", seen[i].day,
                                       seen[i - 1].day, round(confidence, 3),
                                       seen[i].open + seen[i].interfered))
    return changes, states
