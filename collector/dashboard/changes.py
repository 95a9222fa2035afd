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

import itertools
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


def _log_emissions(seen: list[Day], noise: float) -> list[tuple[float, float]]:
    """Each day's log-likelihood of its units in each state (OPEN, INTERFERED)."""
    agree, disagree = math.log1p(-noise), math.log(noise)
    return [(d.open * agree + d.interfered * disagree, d.interfered * agree + d.open * disagree)
            for d in seen]


def _switches(seen: list[Day], rate: float) -> list[float]:
    """The probability of a switch between each day and the one before (0 first)."""
    memo: dict[int, float] = {}
    out = [0.0]
    for before, day in itertools.pairwise(seen):
        gap = (day.day - before.day).days
        if gap not in memo:
            memo[gap] = _switch(gap, rate)
        out.append(memo[gap])
    return out


def detect(days: list[Day], noise: float | None = None, rate: float = RATE,
           min_confidence: float = MIN_CONFIDENCE) -> list[ChangePoint]:
    """Change points of one series; `days` in any order, days without any
    conclusive unit ignored. `noise` None: estimated from the series itself
    (how often its units disagree with the decoded states, between NOISE_FLOOR
    and NOISE_CEILING), so a noisy series needs more evidence to change."""
    seen = sorted((d for d in days if d.open + d.interfered), key=lambda d: d.day)
    if len(seen) < 2:
        return []
    switches = _switches(seen, rate)
    if noise is None:
        noise = NOISE
        units = sum(d.open + d.interfered for d in seen)
        for _ in range(4):  # the changes are those of the last decoding's noise
            emit = _log_emissions(seen, noise)
            states = _viterbi(emit, switches)
            wrong = sum(d.interfered if s == OPEN else d.open
                        for d, s in zip(seen, states, strict=True))
            estimate = min(max(wrong / units, NOISE_FLOOR), NOISE_CEILING)
            if abs(estimate - noise) < 0.01:
                break
            noise = estimate
    else:
        emit = _log_emissions(seen, noise)
        states = _viterbi(emit, switches)
    return _changes(seen, emit, switches, states, min_confidence)


def _viterbi(emit: list[tuple[float, float]], switches: list[float]) -> list[int]:
    """The most likely sequence of states (both equally likely at first)."""
    half = math.log(0.5)
    logs = {p: (math.log1p(-p), math.log(p)) for p in set(switches[1:])}
    open_, interfered = half + emit[0][0], half + emit[0][1]
    back: list[tuple[int, int]] = []
    for (e_open, e_interfered), p in zip(emit[1:], switches[1:], strict=True):
        stay, move = logs[p]
        from_open, from_interfered = open_ + stay, interfered + move  # into OPEN
        best_open = OPEN if from_open >= from_interfered else INTERFERED
        into_open = max(from_open, from_interfered) + e_open
        from_open, from_interfered = open_ + move, interfered + stay  # into INTERFERED
        best_interfered = OPEN if from_open >= from_interfered else INTERFERED
        interfered = max(from_open, from_interfered) + e_interfered
        open_ = into_open
        back.append((best_open, best_interfered))
    states = [OPEN if open_ >= interfered else INTERFERED]
    for step in reversed(back):
        states.append(step[states[-1]])
    states.reverse()
    return states


def _changes(seen: list[Day], emit: list[tuple[float, float]], switches: list[float],
             states: list[int], min_confidence: float) -> list[ChangePoint]:
    """The decoded switches whose posterior probability (forward-backward, each
    step scaled to sum 1: no logarithms of sums) reaches `min_confidence`."""
    n = len(seen)
    if all(s == states[0] for s in states):
        return []
    # emissions as likelihoods, each day's scaled so the larger is 1 (the scale
    # cancels in every posterior)
    like = []
    for e_open, e_interfered in emit:
        top = max(e_open, e_interfered)
        like.append((math.exp(e_open - top), math.exp(e_interfered - top)))
    forward, scale = [(0.0, 0.0)] * n, [1.0] * n
    a_open, a_interfered = 0.5 * like[0][0], 0.5 * like[0][1]
    scale[0] = a_open + a_interfered
    forward[0] = (a_open / scale[0], a_interfered / scale[0])
    for i in range(1, n):
        p, (f_open, f_interfered) = switches[i], forward[i - 1]
        a_open = (f_open * (1 - p) + f_interfered * p) * like[i][0]
        a_interfered = (f_open * p + f_interfered * (1 - p)) * like[i][1]
        scale[i] = a_open + a_interfered
        forward[i] = (a_open / scale[i], a_interfered / scale[i])
    backward = [(1.0, 1.0)] * n
    for i in range(n - 2, -1, -1):
        p, (b_open, b_interfered) = switches[i + 1], backward[i + 1]
        to_open, to_interfered = like[i + 1][0] * b_open, like[i + 1][1] * b_interfered
        backward[i] = (((1 - p) * to_open + p * to_interfered) / scale[i + 1],
                       (p * to_open + (1 - p) * to_interfered) / scale[i + 1])

    def switched(k: int, a: int, b: int) -> float:
        """Posterior probability of a switch a -> b between observed days k-1 and k."""
        return forward[k - 1][a] * switches[k] * like[k][b] * backward[k][b] / scale[k]

    changes = []
    for i in range(1, n):
        a, b = states[i - 1], states[i]
        if a == b:
            continue
        # where exactly it switched may be unsure between neighbouring days while the
        # switch itself is not: sum over the gaps within WINDOW days of this one
        low, high = i, i + 1
        while low > 1 and (seen[i].day - seen[low - 1].day).days <= WINDOW:
            low -= 1
        while high < n and (seen[high].day - seen[i].day).days <= WINDOW:
            high += 1
        confidence = min(sum(switched(k, a, b) for k in range(low, high)), 1.0)
        if confidence >= min_confidence:
            changes.append(ChangePoint("start" if b == INTERFERED else "end", seen[i].day,
                                       seen[i - 1].day, round(confidence, 3),
                                       seen[i].open + seen[i].interfered))
    return changes
