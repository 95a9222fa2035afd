"""The decision rule of the throttle check: pure functions, no I/O.

Inputs are, for each flow (VoIP-like, bit-inverted control) and each direction
(`up`: arrivals at the reflector; `rt`: echoes back at the probe), which
packets were sent when and which arrived when. From them:

- goodput per time slice (bytes arriving in each `slice` of the media phase,
  times shifted by the flow's smallest delay so slices line up with sends);
- loss (overall, and of audio and burst packets apart), delay growth, jitter
  (RFC 3550 §6.4.1 estimator);
- the comparison of the two flows: the VoIP flow's relative goodput deficit,
  a two-sample Kolmogorov-Smirnov test on the slices (as Wehe does), a
  one-sided Fisher exact test on the loss counts, and the noise of the
  comparison (robust spread of the per-block deficit: blocks of half a
  second, paired in time, since the flows are interleaved).

The rule (`decide`, thresholds below, justified in docs/throttle.md):

1. The control must get through (at least MIN_CONTROL_DELIVERY of its
   packets in time, both ways), else `unmeasurable`. If the VoIP flow got
   nothing through while its control did, that is blocking (the check waits
   a little longer first, so a deep queue is not taken for a drop).
2. Rate differentiation in a direction: deficit >= REL_DEFICIT, KS p < ALPHA
   and deficit >= NOISE_FACTOR x noise. Loss differentiation: VoIP loss
   exceeds the control's by LOSS_DIFF and LOSS_RATIO times, Fisher p < LOSS_ALPHA.
3. Either one in either direction: `degraded`. The method is `throttle.rate`
   when the VoIP flow's treatment depends on rate (its delay grew, or its
   bursts lost significantly more than its audio: a shaper's queue or a
   policer's bucket), or when only the goodput differs; else `throttle.loss`.
4. Half the thresholds met (with p < 0.05) and nothing decided: `confirm`, one
   more round, and the rounds are pooled. Still nothing: `unmeasurable` if the
   comparison is noisier than MAX_NOISE, else `ok`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

# Thresholds (docs/throttle.md, "Choosing the thresholds", has the lab data).
REL_DEFICIT = 0.25
ALPHA = 0.01
LOSS_DIFF = 0.05
LOSS_RATIO = 2.0
LOSS_ALPHA = 0.001
MAYBE_P = 0.05
NOISE_FACTOR = 2.0
MAX_NOISE = 0.3
MIN_CONTROL_DELIVERY = 0.2
BLOCKED_DELIVERY = 0.02
DELAY_GROWTH_MS = 30.0  # queueing the control did not see: a shaper's queue
BLOCK_SECONDS = 0.5
LOW_RATE_FRACTION = 0.75  # the control got less than this share of what was offered
RULE_VERSION = "2"


class Finding(StrEnum):
    OK = "ok"
    RATE = "rate"
    LOSS = "loss"
    BLOCKED = "blocked"
    CONFIRM = "confirm"
    UNMEASURABLE = "unmeasurable"


# --- the statistical tests ---------------------------------------------------------


def kolmogorov_q(lam: float) -> float:
    """Q_KS(lambda) = 2 sum_{j>=1} (-1)^(j-1) exp(-2 j^2 lambda^2), the limiting
    distribution of the scaled two-sample KS statistic."""
    if lam < 0.2:
        return 1.0
    total, sign = 0.0, 1.0
    for j in range(1, 101):
        term = sign * math.exp(-2.0 * j * j * lam * lam)
        total += term
        if abs(term) < 1e-12:
            break
        sign = -sign
    return max(0.0, min(1.0, 2.0 * total))


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test, two-sided: (D, p). p uses the
    asymptotic distribution with Stephens' small-sample correction
    (lambda = (sqrt(ne) + 0.12 + 0.11/sqrt(ne)) D, ne = nm/(n+m)); with ties it is
    conservative (too large), which errs toward "not throttled"."""
    if not a or not b:
        return 0.0, 1.0
    xs, ys = sorted(a), sorted(b)
    n, m = len(xs), len(ys)
    i = j = 0
    d = 0.0
    while i < n and j < m:
        value = min(xs[i], ys[j])
        while i < n and xs[i] <= value:
            i += 1
        while j < m and ys[j] <= value:
            j += 1
        d = max(d, abs(i / n - j / m))
    root = math.sqrt(n * m / (n + m))
    return d, kolmogorov_q((root + 0.12 + 0.11 / root) * d)


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_greater(lost_a: int, n_a: int, lost_b: int, n_b: int) -> float:
    """One-sided Fisher exact test: the probability, with the margins fixed, of
    flow a losing at least `lost_a` of its `n_a` packets if both flows lost
    packets alike (hypergeometric upper tail)."""
    lost = lost_a + lost_b
    total = n_a + n_b
    if n_a <= 0 or n_b <= 0 or lost == 0:
        return 1.0
    denominator = _log_choose(total, lost)
    upper = min(lost, n_a)
    terms = [_log_choose(n_a, k) + _log_choose(n_b, lost - k) - denominator
             for k in range(lost_a, upper + 1) if lost - k <= n_b]
    return min(1.0, sum(math.exp(t) for t in terms))


# --- one flow in one direction -----------------------------------------------------


@dataclass(frozen=True)
class Sent:
    seq: int
    at: float  # seconds, sender's clock
    size: int  # bytes (UDP payload)
    kind: str  # "stun" | "audio" | "burst"


@dataclass
class FlowMetrics:
    sent: int
    delivered: int
    audio_sent: int
    audio_lost: int
    burst_sent: int
    burst_lost: int
    slices: list[float]  # bytes per slice
    kbit: float  # mean goodput over the media phase
    delay_ms: float  # median delay above the smallest one
    delay_growth_ms: float  # last fifth minus first fifth (median delays)
    jitter_ms: float

    @property
    def loss(self) -> float:
        return 1 - self.delivered / self.sent if self.sent else 0.0

    @property
    def loss_audio(self) -> float:
        return self.audio_lost / self.audio_sent if self.audio_sent else 0.0

    @property
    def loss_burst(self) -> float:
        return self.burst_lost / self.burst_sent if self.burst_sent else 0.0

    def evidence(self, slice_seconds: float) -> dict[str, Any]:
        out: dict[str, Any] = {"sent": self.sent, "delivered": self.delivered}
        for name in ("loss", "loss_audio", "loss_burst", "kbit", "delay_ms",
                     "delay_growth_ms", "jitter_ms"):
            out[name] = round(getattr(self, name), 4)
        out["slices_kbit"] = [round(s * 8 / slice_seconds / 1000, 1) for s in self.slices]
        return out


def flow_metrics(sent: Sequence[Sent], arrivals: dict[int, float], media_start: float,
                 media_seconds: float, slice_seconds: float) -> FlowMetrics:
    """Metrics of one flow; `arrivals` maps seq -> arrival time (receiver's clock;
    an unknown offset to the sender's clock is fine, only differences are used)."""
    arrived = [(p, arrivals[p.seq]) for p in sent if p.seq in arrivals]
    count = round(media_seconds / slice_seconds)
    slices = [0.0] * count
    kinds = {kind: [p for p in sent if p.kind == kind] for kind in ("audio", "burst")}
    lost = {kind: sum(p.seq not in arrivals for p in chosen) for kind, chosen in kinds.items()}
    counts = dict(audio_sent=len(kinds["audio"]), audio_lost=lost["audio"],
                  burst_sent=len(kinds["burst"]), burst_lost=lost["burst"])
    if not arrived:
        return FlowMetrics(len(sent), 0, **counts, slices=slices, kbit=0.0, delay_ms=0.0,
                           delay_growth_ms=0.0, jitter_ms=0.0)
    base = min(t - p.at for p, t in arrived)  # the smallest one-way (or round-trip) time
    delays = []
    for p, t in sorted(arrived, key=lambda item: item[0].at):
        delays.append((t - p.at - base) * 1000)
        index = math.floor((t - base - media_start) / slice_seconds + 1e-9)
        if 0 <= index < count:
            slices[index] += p.size
    fifth = max(1, len(delays) // 5)
    growth = statistics.median(delays[-fifth:]) - statistics.median(delays[:fifth])
    return FlowMetrics(
        sent=len(sent), delivered=len(arrived), **counts, slices=slices,
        kbit=sum(slices) * 8 / media_seconds / 1000, delay_ms=statistics.median(delays),
        delay_growth_ms=growth, jitter_ms=_jitter(sent, arrivals))


def _jitter(sent: Sequence[Sent], arrivals: dict[int, float]) -> float:
    """RFC 3550 §6.4.1 interarrival jitter over consecutive audio packets, in ms."""
    jitter, previous = 0.0, None
    for p in sent:
        if p.kind != "audio" or p.seq not in arrivals:
            continue
        if previous is not None:
            d = (arrivals[p.seq] - arrivals[previous.seq]) - (p.at - previous.at)
            jitter += (abs(d) - jitter) / 16
        previous = p
    return jitter * 1000


# --- comparing the two flows ------------------------------------------------------


@dataclass
class Comparison:
    deficit: float  # 1 - voip goodput / control goodput
    ks_d: float
    ks_p: float
    loss_voip: float
    loss_control: float
    loss_p: float
    noise: float  # spread of the per-block deficit
    delay_growth_ms: float  # VoIP's delay growth beyond the control's
    voip_loss_audio: float
    voip_loss_burst: float
    burst_p: float  # Fisher: the VoIP flow's bursts lost more than its audio
    rate: str = "no"  # yes | maybe | no
    loss: str = "no"

    def evidence(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in
                asdict(self).items()}


def compare(voip: FlowMetrics, control: FlowMetrics, slice_seconds: float) -> Comparison:
    deficit = 1 - voip.kbit / control.kbit if control.kbit > 0 else 0.0
    d, p = ks_2samp(voip.slices, control.slices)
    lost_v = voip.sent - voip.delivered
    lost_c = control.sent - control.delivered
    comparison = Comparison(
        deficit=deficit, ks_d=d, ks_p=p, loss_voip=voip.loss, loss_control=control.loss,
        loss_p=fisher_greater(lost_v, voip.sent, lost_c, control.sent),
        noise=block_noise(voip.slices, control.slices, slice_seconds),
        delay_growth_ms=voip.delay_growth_ms - control.delay_growth_ms,
        voip_loss_audio=voip.loss_audio, voip_loss_burst=voip.loss_burst,
        burst_p=fisher_greater(voip.burst_lost, voip.burst_sent, voip.audio_lost,
                               voip.audio_sent))
    comparison.rate = _rate_verdict(comparison)
    comparison.loss = _loss_verdict(comparison)
    return comparison


def block_noise(voip: Sequence[float], control: Sequence[float], slice_seconds: float) -> float:
    """How much the VoIP flow's deficit varies over blocks of BLOCK_SECONDS,
    paired in time: what the comparison varies by when nothing changes. A
    robust spread (1.4826 x the median absolute deviation, the standard
    deviation for normal data), so the onset of a throttle, a block or two
    before a policer's bucket is empty, does not pass for noise."""
    size = max(1, round(BLOCK_SECONDS / slice_seconds))
    deficits = []
    for start in range(0, len(control) - size + 1, size):
        c, v = sum(control[start:start + size]), sum(voip[start:start + size])
        if max(c, v) > 0:  # relative to the larger: bounded, whichever flow is slower
            deficits.append((c - v) / max(c, v))
    if len(deficits) < 3:
        return 0.0
    middle = statistics.median(deficits)
    return 1.4826 * statistics.median(abs(d - middle) for d in deficits)


def _rate_verdict(c: Comparison) -> str:
    if c.deficit >= REL_DEFICIT and c.ks_p < ALPHA and c.deficit >= NOISE_FACTOR * c.noise:
        return "yes"
    if c.deficit >= REL_DEFICIT / 2 and c.ks_p < MAYBE_P:
        return "maybe"
    return "no"


def _loss_verdict(c: Comparison) -> str:
    diff = c.loss_voip - c.loss_control
    if diff >= LOSS_DIFF and c.loss_voip >= LOSS_RATIO * c.loss_control \
            and c.loss_p < LOSS_ALPHA:
        return "yes"
    if diff >= LOSS_DIFF / 2 and c.loss_p < MAYBE_P:
        return "maybe"
    return "no"


# --- the decision -----------------------------------------------------------------


@dataclass
class Decision:
    finding: Finding
    reason: str
    directions: dict[str, Comparison] = field(default_factory=dict)
    low_rate: bool = False
    control_ok: bool = True

    def evidence(self) -> dict[str, Any]:
        return {"outcome": str(self.finding), "reason": self.reason, "low_rate": self.low_rate,
                "rule_version": RULE_VERSION,
                "directions": {k: v.evidence() for k, v in self.directions.items()}}


def decide(flows: dict[str, dict[str, FlowMetrics]], slice_seconds: float,
           offered_kbit: float, final: bool = False) -> Decision:
    """`flows[direction][flow]`, direction in (up, rt), flow in (voip, control).
    `final`: after the confirmation round, never `confirm`."""
    up, rt = flows["up"], flows["rt"]
    low_rate = any(d["control"].kbit < LOW_RATE_FRACTION * offered_kbit for d in (up, rt))
    control_ok = all(d["control"].delivered >= MIN_CONTROL_DELIVERY * d["control"].sent
                     and d["control"].sent > 0 for d in (up, rt))
    if not control_ok:
        if all(d[f].delivered == 0 for d in (up, rt) for f in d):
            return Decision(Finding.UNMEASURABLE, "nothing got through, on either flow",
                            low_rate=low_rate, control_ok=False)
        return Decision(Finding.UNMEASURABLE, "the control flow lost too much to compare "
                        "against", low_rate=low_rate, control_ok=False)
    if up["voip"].delivered <= BLOCKED_DELIVERY * up["voip"].sent:
        return Decision(Finding.BLOCKED, "the VoIP flow got (almost) nothing through while "
                        "its control did", low_rate=low_rate)
    directions = {name: compare(d["voip"], d["control"], slice_seconds)
                  for name, d in (("up", up), ("rt", rt))}
    verdicts = [(c.rate, c.loss) for c in directions.values()]
    rate = any(r == "yes" for r, _ in verdicts)
    loss = any(lo == "yes" for _, lo in verdicts)
    if rate or loss:
        rate_dependent = any(rate_dependent_treatment(c) for c in directions.values())
        if rate_dependent or not loss:
            return Decision(Finding.RATE, "the VoIP flow got less goodput than its control"
                            + (", with queueing or rate-dependent loss" if rate_dependent
                               else ""), directions, low_rate)
        return Decision(Finding.LOSS, "the VoIP flow lost more packets than its control, "
                        "independently of its rate", directions, low_rate)
    noisy = max(c.noise for c in directions.values()) > MAX_NOISE
    maybe = any("maybe" in pair for pair in verdicts)
    if maybe and not final:
        return Decision(Finding.CONFIRM, "a difference below the thresholds: one more round",
                        directions, low_rate)
    if noisy:
        return Decision(Finding.UNMEASURABLE, "the comparison is too noisy to tell",
                        directions, low_rate)
    return Decision(Finding.OK, "both flows were treated alike", directions, low_rate)


def rate_dependent_treatment(c: Comparison) -> bool:
    """The VoIP flow queued where the control did not (a shaper), or lost its
    bursts more than its audio (a policer's bucket): treatment that depends on rate."""
    skew = c.voip_loss_burst - c.voip_loss_audio
    return c.delay_growth_ms >= DELAY_GROWTH_MS or (skew >= LOSS_DIFF
                                                    and c.burst_p < LOSS_ALPHA)


def pool(rounds: Sequence[FlowMetrics]) -> FlowMetrics:
    """Several rounds of one flow and direction as one sample."""

    def total(name: str) -> int:
        return sum(getattr(r, name) for r in rounds)

    def mean(name: str) -> float:
        return float(sum(getattr(r, name) for r in rounds)) / max(len(rounds), 1)

    return FlowMetrics(
        sent=total("sent"), delivered=total("delivered"), audio_sent=total("audio_sent"),
        audio_lost=total("audio_lost"), burst_sent=total("burst_sent"),
        burst_lost=total("burst_lost"), slices=[s for r in rounds for s in r.slices],
        kbit=mean("kbit"), delay_ms=mean("delay_ms"),
        delay_growth_ms=max(r.delay_growth_ms for r in rounds), jitter_ms=mean("jitter_ms"))
