"""The decision rule, on synthetic flows whose treatment is known: the tests
against reference values, the metrics, and a table of situations."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from probe.checks.throttle import stats
from probe.checks.throttle.stats import Finding, Sent

SLICE = 0.1
MEDIA = 3.0


# --- the tests themselves ------------------------------------------------------------


@pytest.mark.parametrize("lam, q", [(0.0, 1.0), (1.36, 0.0494), (1.63, 0.0098), (2.0, 0.00067)])
def test_kolmogorov_distribution_reference_values(lam: float, q: float) -> None:
    # the classic critical values: 1.36 at 5%, 1.63 at 1%
    assert stats.kolmogorov_q(lam) == pytest.approx(q, abs=5e-4)


def test_ks_identical_disjoint_and_shifted() -> None:
    a = [float(i) for i in range(30)]
    assert stats.ks_2samp(a, list(a)) == (0.0, 1.0)
    d, p = stats.ks_2samp(a, [x + 100 for x in a])
    assert d == 1.0 and p < 1e-10
    d, p = stats.ks_2samp(a, [x + 3 for x in a])  # 3 of 30 values apart: D = 0.1
    assert d == pytest.approx(0.1) and p > 0.9
    assert stats.ks_2samp([], a) == (0.0, 1.0)


def test_ks_statistic_is_the_largest_cdf_gap_with_ties() -> None:
    d, _ = stats.ks_2samp([1, 1, 2, 2], [1, 2, 2, 2])
    assert d == pytest.approx(0.25)


def test_fisher_reference_values() -> None:
    # all 3 losses in flow a, none in b: 1 / C(6, 3)
    assert stats.fisher_greater(3, 3, 0, 3) == pytest.approx(1 / 20)
    # Fisher's tea: 3 of 4 right, one-sided p = 17/70
    assert stats.fisher_greater(3, 4, 1, 4) == pytest.approx(17 / 70)
    assert stats.fisher_greater(0, 100, 0, 100) == 1.0
    assert stats.fisher_greater(0, 100, 10, 100) == pytest.approx(1.0)
    assert stats.fisher_greater(25, 250, 0, 250) < 1e-7


# --- synthetic flows -----------------------------------------------------------------


def schedule(media: float = MEDIA) -> list[Sent]:
    """The shape of a real schedule: 3 STUN checks, 20 ms audio of ~110 bytes,
    3 bursts of 900 bytes in the middle of each 100 ms slice."""
    sent = [Sent(i, i * 0.05, 100, "stun") for i in range(3)]
    start = 0.15
    events = [(start + i * 0.02, "audio", 110) for i in range(round(media / 0.02))]
    events += [(start + i * 0.1 + 0.05, "burst", 900) for i in range(round(media / 0.1))
               for _ in range(3)]
    for at, kind, size in sorted(events):
        sent.append(Sent(len(sent), at, size, kind))
    return sent


def arrivals(sent: list[Sent], *, loss: float = 0.0, rng: random.Random | None = None,
             rate_kbit: float | None = None, jitter: float = 0.0002,
             burst_loss: float | None = None, offset: float = 5.0) -> dict[int, float]:
    """What a receiver sees: random loss, a FIFO shaper at `rate_kbit` (delay
    grows when the offered rate is above it), delay noise; `burst_loss`
    drops bursts only (a policer)."""
    rng = rng or random.Random(0)
    out: dict[int, float] = {}
    free_at = 0.0
    for p in sent:
        lost = loss if burst_loss is None or p.kind != "burst" else burst_loss
        if rng.random() < lost:
            continue
        at = p.at + 0.01
        if rate_kbit is not None and p.kind != "stun":
            at = max(at, free_at) + p.size * 8 / (rate_kbit * 1000)
            free_at = at
        out[p.seq] = offset + at + rng.random() * jitter
    return out


def metrics(sent: list[Sent], got: dict[int, float]) -> stats.FlowMetrics:
    media_start = min(p.at for p in sent if p.kind != "stun")
    return stats.flow_metrics(sent, got, media_start, MEDIA, SLICE)


def situation(voip: dict[str, dict[int, float]], control: dict[str, dict[int, float]],
              sent: list[Sent], final: bool = False) -> stats.Decision:
    flows = {d: {"voip": metrics(sent, voip[d]), "control": metrics(sent, control[d])}
             for d in ("up", "rt")}
    return stats.decide(flows, SLICE, offered_kbit=265, final=final)


def both(seed: int = 0, **kwargs: Any) -> dict[str, dict[int, float]]:
    sent = schedule()
    return {"up": arrivals(sent, rng=random.Random(seed), **kwargs),
            "rt": arrivals(sent, rng=random.Random(seed + 1), **kwargs)}


# --- metrics -------------------------------------------------------------------------


def test_flow_metrics_of_a_clean_flow() -> None:
    sent = schedule()
    m = metrics(sent, arrivals(sent))
    assert m.sent == len(sent) and m.delivered == len(sent) and m.loss == 0
    assert len(m.slices) == 30
    per_slice = 5 * 110 + 3 * 900
    assert all(s == pytest.approx(per_slice) for s in m.slices)
    assert m.kbit == pytest.approx(per_slice * 8 / SLICE / 1000)
    assert m.delay_growth_ms == pytest.approx(0, abs=0.5)
    assert m.jitter_ms < 0.2


def test_flow_metrics_of_a_shaped_flow() -> None:
    sent = schedule()
    m = metrics(sent, arrivals(sent, rate_kbit=64))
    assert m.kbit < 70  # what fits through by the end of the media phase
    assert m.delay_growth_ms > 1000  # the queue builds up
    assert m.loss == 0  # late, not lost: the receiver got everything eventually


def test_flow_metrics_loss_by_kind() -> None:
    sent = schedule()
    m = metrics(sent, arrivals(sent, loss=0.0, burst_loss=1.0))
    assert m.loss_burst == 1.0 and m.loss_audio == 0.0
    nothing = metrics(sent, {})
    assert nothing.delivered == 0 and nothing.loss == 1.0 and nothing.kbit == 0


def test_rfc3550_jitter() -> None:
    sent = [Sent(i, i * 0.02, 100, "audio") for i in range(200)]
    steady = {p.seq: p.at + 0.05 for p in sent}
    wobbly = {p.seq: p.at + 0.05 + (0.004 if p.seq % 2 else 0.0) for p in sent}
    assert stats._jitter(sent, steady) == pytest.approx(0.0, abs=1e-9)
    assert stats._jitter(sent, wobbly) == pytest.approx(4.0, rel=0.05)  # |D| = 4 ms each


# --- the decision table --------------------------------------------------------------


def test_clean_path_is_ok() -> None:
    d = situation(both(seed=1), both(seed=3), schedule())
    assert d.finding is Finding.OK and not d.low_rate
    assert d.directions["up"].rate == "no" and d.directions["up"].loss == "no"


def test_equal_random_loss_is_ok() -> None:
    for seed in range(20):
        d = situation(both(loss=0.03, seed=seed), both(loss=0.03, seed=seed + 100), schedule(),
                      final=True)
        assert d.finding in (Finding.OK, Finding.UNMEASURABLE), (seed, d.reason)
        assert d.finding is Finding.OK, (seed, d.evidence())


def test_shaped_voip_is_rate() -> None:
    d = situation(both(rate_kbit=64), both(seed=5), schedule())
    assert d.finding is Finding.RATE
    assert d.directions["up"].deficit > 0.6 and d.directions["up"].ks_p < 1e-6


@pytest.mark.parametrize("share", [0.1, 0.25, 0.5])
def test_detects_throttling_at_a_share_of_the_control_rate(share: float) -> None:
    d = situation(both(rate_kbit=265 * share), both(seed=5), schedule())
    assert d.finding is Finding.RATE, d.evidence()


def test_policer_burst_loss_is_rate() -> None:
    d = situation(both(burst_loss=0.6), both(seed=9), schedule())
    assert d.finding is Finding.RATE
    assert "rate-dependent" in d.reason


def test_random_loss_on_the_voip_flow_only_is_loss() -> None:
    d = situation(both(loss=0.1, seed=2), both(seed=4), schedule())
    assert d.finding is Finding.LOSS, d.evidence()


def test_both_shaped_alike_is_ok_with_a_low_rate() -> None:
    d = situation(both(rate_kbit=100, seed=1), both(rate_kbit=100, seed=7), schedule())
    assert d.finding is Finding.OK and d.low_rate


def test_voip_faster_than_control_is_not_throttling() -> None:
    d = situation(both(seed=1), both(rate_kbit=64), schedule())
    assert d.finding is Finding.OK


def test_blocked_voip_flow() -> None:
    d = situation({"up": {}, "rt": {}}, both(), schedule())
    assert d.finding is Finding.BLOCKED and d.control_ok


def test_lost_control_is_unmeasurable() -> None:
    d = situation(both(), both(loss=0.9), schedule())
    assert d.finding is Finding.UNMEASURABLE and not d.control_ok
    d = situation({"up": {}, "rt": {}}, {"up": {}, "rt": {}}, schedule())
    assert d.finding is Finding.UNMEASURABLE and "nothing got through" in d.reason


def test_a_small_difference_asks_for_a_second_round() -> None:
    sent = schedule()
    # the VoIP flow loses a fifth of its bursts: a 17% goodput deficit, significant
    voip = both(burst_loss=0.2, loss=0.0, seed=11)
    d = situation(voip, both(seed=12), sent)
    assert d.finding in (Finding.CONFIRM, Finding.RATE)
    if d.finding is Finding.CONFIRM:
        final = situation(voip, both(seed=12), sent, final=True)
        assert final.finding in (Finding.OK, Finding.UNMEASURABLE)


def test_a_noisy_comparison_is_unmeasurable_not_ok() -> None:
    sent = schedule()
    rng = random.Random(5)

    def noisy() -> dict[int, float]:
        # whole half-seconds of the flow lost at random: the paired blocks disagree
        dead = {b for b in range(6) if rng.random() < 0.4}
        return {p.seq: 5 + p.at for p in sent
                if math.floor(max(p.at - 0.15, 0) / 0.5) not in dead}

    outcomes = {situation({"up": noisy(), "rt": noisy()}, {"up": noisy(), "rt": noisy()},
                          sent, final=True).finding for _ in range(10)}
    assert Finding.UNMEASURABLE in outcomes


def test_pool_concatenates_rounds() -> None:
    sent = schedule()
    one = metrics(sent, arrivals(sent))
    two = metrics(sent, arrivals(sent, loss=0.5))
    pooled = stats.pool([one, two])
    assert pooled.sent == 2 * len(sent)
    assert pooled.delivered == one.delivered + two.delivered
    assert len(pooled.slices) == 60
    assert pooled.kbit == pytest.approx((one.kbit + two.kbit) / 2)


def test_evidence_is_json_ready() -> None:
    import json

    d = situation(both(rate_kbit=64), both(seed=5), schedule())
    text = json.dumps(d.evidence())
    assert '"outcome": "rate"' in text and '"rule_version"' in text
