"""`throttle`: is a service's call traffic slowed down, compared with the same
bytes inverted (docs/throttle.md)?

Against a reflector on the collector, on the service's own port, the check
replays a call-like flow (the endpoint's `profile`: ICE checks, RTP audio,
rate-probing bursts) and, interleaved packet by packet from another socket,
the same packets with every bit inverted, a flow no classifier recognises.
The reflector accounts for what arrives and echoes it; the probe times the
echoes. Goodput per time slice, loss, delay growth and jitter of both flows,
both ways, go through the decision rule of `probe.throttle.stats`; when it is
unsure, a second round is run and pooled with the first.

Status: `degraded` with `throttle.rate` or `throttle.loss` (and the control
flow fine, so `observation.control` is OK); `ok`; `failed` when the VoIP flow
got nothing through while its control did (blocking); `unmeasurable` when
the reflector could not be used, the budget is spent, or the control flow
itself was too lossy or the comparison too noisy. A low absolute rate is
recorded either way (`evidence.low_rate`).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any
from urllib.parse import urlsplit

from probe.checks.base import Context, ControlState, Observation, Status
from probe.checks.collector_url import substitute
from probe.checks.common import tcp_blocking
from probe.failures import Failure, classify_error, describe
from probe.record import Blocking, Transport
from probe.throttle import profiles, stats
from probe.throttle.client import HTTP_OVERHEAD, ReflectorClient, ReflectorUnavailable, Session
from probe.throttle.profiles import Kind, Profile, Schedule
from probe.throttle.replay import OVERHEAD, FlowLog, replay_tcp, replay_udp

NAME = "throttle"
VERSION = "1"
DEFAULT_TIMEOUT = 5.0  # per HTTP request to the reflector; the replay has its own length

MIN_MEDIA_SECONDS = 1.5  # below this a round says too little: the check does not run
SESSION_SLACK = 15.0  # seconds a session outlives its round (set-up, drain, report)
ROUNDS = 2  # the first, and one confirmation round when the rule is unsure
BLOCK_WAIT = 3.0  # seconds to wait for a VoIP flow of which nothing came back
def reflector_url(endpoint: Any, ctx: Context) -> tuple[str | None, bool]:
    """(URL, substituted): a placeholder host (the default catalogue ships
    `https://collector.example.org`) stands for the run's own collector."""
    url = substitute(endpoint.url, ctx.collector, keep_path=False)
    return url, url is not None and url != endpoint.url


def round_bytes(profile: Profile, media_seconds: float) -> int:
    """Bytes one round sends and receives: both flows, both ways, headers included."""
    schedule = profiles.build(profile, media_seconds, random.Random(0))
    per_flow = schedule.payload_bytes() + OVERHEAD[4] * len(schedule.packets)
    report = 2 * 20 * len(schedule.packets) + 2_000  # ~20 bytes of JSON per arrival
    return 4 * per_flow + 4 * HTTP_OVERHEAD + report


def affordable_media(profile: Profile, budget: int) -> float:
    """The longest round (0.1 s steps, at most MEDIA_SECONDS) whose estimated
    bytes fit in 95% of `budget` (0 if none does)."""
    media = profiles.MEDIA_SECONDS
    while media >= MIN_MEDIA_SECONDS and round_bytes(profile, media) > 0.95 * budget:
        media = round(media - 0.1, 1)
    return media if media >= MIN_MEDIA_SECONDS else 0.0


def _unmeasurable(failure: Failure, **evidence: Any) -> Observation:
    return Observation(status=Status.UNMEASURABLE, failure=failure, evidence=evidence)


async def run(endpoint: Any, ctx: Context) -> Observation:
    start = time.monotonic()
    try:
        profile = profiles.get(endpoint.profile)
    except LookupError as exc:
        return _unmeasurable(Failure.NOT_RUN, error=str(exc))
    if endpoint.transport is Transport.TLS:
        return _unmeasurable(Failure.NOT_RUN, error="the reflector replays over udp or tcp, "
                             "not tls")
    url, substituted = reflector_url(endpoint, ctx)
    if url is None:
        return _unmeasurable(Failure.NOT_RUN, error=f"the catalogue's reflector URL "
                             f"{endpoint.url} is a placeholder and this run has no collector "
                             "(--collector URL)")
    if ctx.signer is None:
        return _unmeasurable(Failure.NOT_RUN, error="the reflector serves registered probes "
                             "only, and this run has no probe key")
    media = profiles.MEDIA_SECONDS
    remaining = ctx.budget.remaining
    if remaining is not None:
        media = affordable_media(profile, remaining)
        if media < MIN_MEDIA_SECONDS:
            return _unmeasurable(Failure.BUDGET_EXHAUSTED, budget_remaining=remaining,
                                 needed=round_bytes(profile, MIN_MEDIA_SECONDS))
    client = ReflectorClient(url, ctx.signer, ctx.timeout, ctx.resolver)
    rng = random.Random(int.from_bytes(os.urandom(8), "big"))
    rounds: list[dict[str, dict[str, stats.FlowMetrics]]] = []
    logs_seen: list[dict[str, FlowLog]] = []
    round_evidence: list[dict[str, Any]] = []
    decision: stats.Decision | None = None
    observation: Observation | None = None
    for number in range(ROUNDS):
        if number and remaining is not None and (
                remaining - _used(client, logs_seen) < round_bytes(profile, media)):
            break  # no budget for a confirmation: decide with what we have
        try:
            schedule, logs, report = await _round(endpoint, client, profile, media, rng,
                                                  logs_seen)
        except ReflectorUnavailable as exc:
            if not rounds:
                return _finish(_unmeasurable(exc.failure, error=exc.detail), client, logs_seen,
                               start, profile, substituted, url, media)
            break
        observation = _connect_failure(endpoint, logs)
        if observation is not None:
            break
        metrics = measure(schedule, logs, report)
        rounds.append(metrics)
        round_evidence.append(_round_evidence(schedule, logs, report, metrics))
        pooled = {d: {f: stats.pool([r[d][f] for r in rounds]) for f in ("voip", "control")}
                  for d in ("up", "rt")}
        decision = stats.decide(pooled, schedule.slice_seconds, profile.offered_kbit,
                                final=number == ROUNDS - 1)
        if decision.outcome is not stats.Outcome.CONFIRM:
            break
    if decision is not None and decision.outcome is stats.Outcome.CONFIRM:
        pooled = {d: {f: stats.pool([r[d][f] for r in rounds]) for f in ("voip", "control")}
                  for d in ("up", "rt")}
        decision = stats.decide(pooled, profiles.build(profile, media).slice_seconds,
                                profile.offered_kbit, final=True)
    if observation is None:
        assert decision is not None
        observation = _observe(decision, profile, logs_seen[-1])
    observation.evidence.update(rounds=round_evidence)
    if decision is not None:
        observation.evidence.update(decision=decision.evidence(), low_rate=decision.low_rate,
                                kbit=_kbit(rounds))
    return _finish(observation, client, logs_seen, start, profile, substituted, url, media)


async def _round(endpoint: Any, client: ReflectorClient, profile: Profile, media: float,
                 rng: random.Random, logs_seen: list[dict[str, FlowLog]]
                 ) -> tuple[Schedule, dict[str, FlowLog], dict[str, Any]]:
    """One session: open, replay, close (the report). The round's logs go to
    `logs_seen` as soon as they exist, so their bytes are counted whatever happens."""
    session = await client.open(endpoint.port, str(endpoint.transport), media + SESSION_SLACK)
    schedule = profiles.build(profile, media, rng)
    replay = replay_tcp if endpoint.transport is Transport.TCP else replay_udp
    try:
        logs = await replay(session.address, session.port, session.key, schedule, 0, rng)
    except OSError as exc:  # the socket could not even be opened (no route, ...)
        await client.close(session)
        raise ReflectorUnavailable(classify_error(exc), f"cannot send: {describe(exc)}") \
            from exc
    logs_seen.append(logs)
    if not logs["voip"].echoes and logs["control"].echoes:
        await _wait_for_voip(client, session)
    report = await client.close(session)
    return schedule, logs, report


async def _wait_for_voip(client: ReflectorClient, session: Session) -> None:
    """Nothing of the VoIP flow came back: dropped, or held in a deep queue?
    Give the reflector BLOCK_WAIT more seconds to see any of it."""
    deadline = time.monotonic() + BLOCK_WAIT
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        report = await client.report(session)
        if ((report.get("flows") or {}).get("0") or {}).get("packets"):
            return


def _arrivals(report: dict[str, Any], flow: int) -> dict[int, float]:
    entry = (report.get("flows") or {}).get(str(flow)) or {}
    try:
        return {int(seq): float(ms) / 1000 for seq, ms in entry.get("arrivals", [])}
    except (TypeError, ValueError):
        return {}


def measure(schedule: Schedule, logs: dict[str, FlowLog], report: dict[str, Any]
            ) -> dict[str, dict[str, stats.FlowMetrics]]:
    """Per direction (`up`: the reflector's arrivals; `rt`: echoes at the probe)
    and flow, the metrics of one round."""
    out: dict[str, dict[str, stats.FlowMetrics]] = {"up": {}, "rt": {}}
    for number, name in enumerate(("voip", "control")):
        log = logs[name]
        media = [p.at for p in log.sent if p.kind != Kind.STUN]
        media_start = min(media) if media else 0.0
        for direction, arrivals in (("up", _arrivals(report, number)), ("rt", log.echoes)):
            out[direction][name] = stats.flow_metrics(log.sent, arrivals, media_start,
                                                      schedule.media_seconds,
                                                      schedule.slice_seconds)
    return out


def _connect_failure(endpoint: Any, logs: dict[str, FlowLog]) -> Observation | None:
    """TCP: a flow whose connection was never made."""
    voip, control = logs["voip"], logs["control"]
    if voip.connect_failure is None and control.connect_failure is None:
        return None
    if voip.connect_failure and control.connect_failure is None:
        failure = Failure(voip.connect_failure)
        return Observation(status=Status.FAILED, failure=failure,
                           blocking=tcp_blocking(failure), control=ControlState.OK,
                           evidence={"phase": "connect", "error": voip.error})
    failure = Failure(control.connect_failure or voip.connect_failure or Failure.UNKNOWN)
    return Observation(status=Status.UNMEASURABLE, failure=failure, control=ControlState.FAILED,
                       evidence={"phase": "connect", "error": control.error or voip.error})


def _observe(decision: stats.Decision, profile: Profile, logs: dict[str, FlowLog]
             ) -> Observation:
    outcome = decision.outcome
    evidence: dict[str, Any] = {"reason": decision.reason}
    if outcome is stats.Outcome.OK:
        return Observation(status=Status.OK, control=ControlState.OK, evidence=evidence)
    if outcome in (stats.Outcome.RATE, stats.Outcome.LOSS):
        blocking = Blocking.THROTTLE_RATE if outcome is stats.Outcome.RATE \
            else Blocking.THROTTLE_LOSS
        return Observation(status=Status.DEGRADED, blocking=blocking, control=ControlState.OK,
                           evidence=evidence)
    if outcome is stats.Outcome.BLOCKED:
        voip = logs["voip"]
        if voip.icmp is not None:
            return Observation(status=Status.FAILED, failure=voip.icmp.failure,
                               blocking=Blocking.ICMP_UNREACHABLE, control=ControlState.OK,
                               evidence=evidence)
        stun = [p for p in voip.sent if p.kind == Kind.STUN]
        blocking = Blocking.STUN_NO_RESPONSE if stun and not any(
            p.seq in voip.echoes for p in stun) else Blocking.UDP_TIMEOUT
        return Observation(status=Status.FAILED, failure=Failure.GENERIC_TIMEOUT,
                           blocking=blocking, control=ControlState.OK, evidence=evidence)
    return Observation(status=Status.UNMEASURABLE,
                       failure=None if decision.control_ok else Failure.GENERIC_TIMEOUT,
                       control=ControlState.OK if decision.control_ok else ControlState.FAILED,
                       evidence=evidence)


def _round_evidence(schedule: Schedule, logs: dict[str, FlowLog], report: dict[str, Any],
                    metrics: dict[str, dict[str, stats.FlowMetrics]]) -> dict[str, Any]:
    w = schedule.slice_seconds
    reflector = {k: report.get(k) for k in ("over_budget", "echo_refused", "echo_failed")
                 if report.get(k)}
    return {"media_s": schedule.media_seconds, "slice_ms": round(w * 1000),
            "flows": {name: log.evidence() for name, log in logs.items()},
            "up": {f: m.evidence(w) for f, m in metrics["up"].items()},
            "rt": {f: m.evidence(w) for f, m in metrics["rt"].items()},
            **({"reflector": reflector} if reflector else {})}


def _kbit(rounds: list[dict[str, dict[str, stats.FlowMetrics]]]) -> dict[str, Any]:
    if not rounds:
        return {}
    return {d: {f: round(sum(r[d][f].kbit for r in rounds) / len(rounds), 1)
                for f in ("voip", "control")} for d in ("up", "rt")}


def _used(client: ReflectorClient, logs_seen: list[dict[str, FlowLog]]) -> int:
    return client.bytes_sent + client.bytes_received + sum(
        log.bytes_sent + log.bytes_received for logs in logs_seen for log in logs.values())


def _finish(observation: Observation, client: ReflectorClient,
            logs_seen: list[dict[str, FlowLog]], start: float, profile: Profile,
            substituted: bool, url: str | None, media: float) -> Observation:
    observation.bytes_sent = client.bytes_sent + sum(
        log.bytes_sent for logs in logs_seen for log in logs.values())
    observation.bytes_received = client.bytes_received + sum(
        log.bytes_received for logs in logs_seen for log in logs.values())
    observation.evidence.update(
        profile=profile.name, offered_kbit=round(profile.offered_kbit, 1), media_s=media,
        reflector=urlsplit(url or "").hostname, reflector_is_run_collector=substituted,
        seconds=round(time.monotonic() - start, 3))
    return observation
