"""One probe pass: every endpoint of the catalogue checked, classified, signed
and spooled.

Checks run concurrently under a bound; bandwidth-heavy checks (`throttle`) run
alone afterwards so that one measurement never disturbs another. Each record
is in the spool (fsync'd) before it is reported anywhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import probe
from probe import checks
from probe.catalogue import Catalogue, endpoint_ref
from probe.checks.base import Budget, Context, ControlState, Observation, Status
from probe.core.checks import EXCLUSIVE, NOT_REPEATED
from probe.core.errors import UserError
from probe.core.failures import Failure, describe
from probe.core.record import SCHEMA, Blocking, LinkType, Verdict, rfc3339, utcnow
from probe.core.signing import ProbeKey
from probe.run.connectivity import Connectivity, precheck, targets_for
from probe.run.control import CONTROL_WAIT, ControlClient, ControlLookup, control_state
from probe.store.spool import Spool
from probe.verdict.classify import RESOLVER_HEALTH, Classification, Situation, classify

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    catalogue: Catalogue
    link_type: LinkType = LinkType.UNKNOWN
    resolver: tuple[str, int] | None = None
    timeout: float | None = None  # per check; None: each check's own default
    budget_bytes: int | None = None
    concurrency: int = 16
    control_url: str | None = None
    collector_url: str | None = None
    extra_network: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    service: str
    endpoint: Any


Progress = Callable[[Task, dict[str, Any]], None]


def tasks_of(catalogue: Catalogue) -> list[Task]:
    return [Task(s.id, e) for s in catalogue.services for e in s.endpoints]


LAB_CLOCK = "VOIPWATCH_LAB_CLOCK"


def lab_clock_offset() -> timedelta | None:
    """Censorship-lab replays only (docs/lab.md): `VOIPWATCH_LAB_CLOCK=2016-01-15T10:00:00Z`
    makes this run's records start at that time. Each such record says so
    (`network.replay`, `lab_clock`), so it can never pass for a real measurement."""
    text = os.environ.get(LAB_CLOCK)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise UserError(f"{LAB_CLOCK}={text!r}: expected an RFC 3339 time with a zone, "
                        "e.g. 2016-01-15T10:00:00Z")
    return moment - utcnow()


async def run_pass(options: RunOptions, key: ProbeKey, spool: Spool,
                   on_record: Progress | None = None,
                   on_start: Callable[[Connectivity], None] | None = None) -> list[dict[str, Any]]:
    tasks = tasks_of(options.catalogue)
    clock_offset = lab_clock_offset()  # read once, before any traffic
    control_client = ControlClient(options.control_url, key) if options.control_url else None
    lookup = ControlLookup(control_client, [t.endpoint for t in tasks])
    lookup.start()
    connectivity = await precheck(targets_for(options.control_url, options.collector_url),
                                  options.resolver)
    if on_start:
        on_start(connectivity)
    budget = Budget(options.budget_bytes)
    shared = RunState(options, key, spool, budget, lookup, connectivity, on_record,
                      clock_offset)

    regular = [t for t in tasks if t.endpoint.check not in EXCLUSIVE]
    exclusive = [t for t in tasks if t.endpoint.check in EXCLUSIVE]
    semaphore = asyncio.Semaphore(options.concurrency)
    resolver = ResolverHealth(sum(t.endpoint.check == "dns" for t in regular))

    async def one(task: Task) -> dict[str, Any]:
        async with semaphore:
            observed = await shared.observe(task)
        if task.endpoint.check == "dns":
            resolver.report(observed[1])
        works = True
        if observed[1].blocking in RESOLVER_HEALTH:
            works = await resolver.works()
        return await shared.finish(*observed, resolver_works=works)

    try:
        records = list(await asyncio.gather(*(one(t) for t in regular)))
        for task in exclusive:  # one at a time, after everything else
            records.append(await shared.finish(*await shared.observe(task)))
    finally:
        await lookup.close()
    return records


class ResolverHealth:
    """Whether the run's resolver answered any lookup: a DNS timeout or SERVFAIL
    is evidence of blocking only when the same resolver answered other names."""

    def __init__(self, lookups: int) -> None:
        self.remaining = lookups
        self.answered = False
        self.settled = asyncio.Event()
        if lookups == 0:
            self.settled.set()

    def report(self, observation: Observation) -> None:
        self.remaining -= 1
        if observation.status is Status.OK:
            self.answered = True
        if self.answered or self.remaining <= 0:
            self.settled.set()

    async def works(self) -> bool:
        await self.settled.wait()
        return self.answered


@dataclass
class RunState:
    options: RunOptions
    key: ProbeKey
    spool: Spool
    budget: Budget
    lookup: ControlLookup
    connectivity: Connectivity
    on_record: Progress | None
    clock_offset: timedelta | None = None  # lab replays only, see lab_clock_offset

    def context(self, check: Any) -> Context:
        timeout = self.options.timeout or check.DEFAULT_TIMEOUT
        return Context(timeout=timeout, resolver=self.options.resolver, budget=self.budget,
                       control=self.lookup, collector=self.options.collector_url,
                       signer=self.key)

    async def observe(self, task: Task) -> tuple[Task, Observation, float, Any]:
        started_at = utcnow() + (self.clock_offset or timedelta(0))
        start = time.perf_counter()
        check = checks.get(task.endpoint.check)
        if self.budget.exhausted():
            observation = Observation(status=Status.UNMEASURABLE,
                                      failure=Failure.BUDGET_EXHAUSTED,
                                      evidence={"budget_bytes": self.budget.limit})
        else:
            ctx = self.context(check)
            try:
                # the check bounds itself; this cap only guards against a check that
                # hangs (some checks also wait for the control's answer)
                observation = await asyncio.wait_for(check.run(task.endpoint, ctx),
                                                     ctx.timeout * 3 + CONTROL_WAIT + 5)
            except TimeoutError:
                observation = Observation(status=Status.UNMEASURABLE,
                                          failure=Failure.GENERIC_TIMEOUT,
                                          evidence={"error": "check exceeded its time limit"})
            except Exception as exc:  # a bug in a check must not lose the others
                log.exception("check %s failed internally", check.NAME)
                observation = Observation(status=Status.UNMEASURABLE, failure=Failure.UNKNOWN,
                                          evidence={"error": describe(exc)})
            self.budget.charge(observation.bytes_sent + observation.bytes_received)
        runtime_ms = int((time.perf_counter() - start) * 1000)
        return task, observation, runtime_ms, (started_at, check)

    async def finish(self, task: Task, observation: Observation, runtime_ms: float,
                     meta: Any, resolver_works: bool = True) -> dict[str, Any]:
        started_at, check = meta
        control_observation = None
        if observation.control is not None:
            control = observation.control
        else:
            control_observation = await self.lookup(task.endpoint)
            control = control_state(control_observation)
        def judge(seen: Observation) -> Classification:
            return classify(Situation(
                status=seen.status, blocking=seen.blocking, control=control,
                connectivity=self.connectivity.ok, resolver_works=resolver_works,
            ))

        result = judge(observation)
        confirmation = None
        if result.verdict is Verdict.BLOCKED and check.NAME not in NOT_REPEATED:
            # A `blocked` is said only after a second look: a lossy link can
            # lose every packet of one attempt, it rarely loses two attempts.
            _, again, again_ms, again_meta = await self.observe(task)
            again_result = judge(again)
            if again_result.verdict is Verdict.BLOCKED:
                confirmation = {"outcome": "confirmed", "runtime_ms": int(again_ms),
                                "suspected": again.blocking and str(again.blocking)}
            else:
                confirmation = {"outcome": "not_confirmed", "first": {
                    "failure": observation.failure and str(observation.failure),
                    "suspected": observation.blocking and str(observation.blocking),
                    "runtime_ms": int(runtime_ms)}}
                observation, runtime_ms, meta, result = again, again_ms, again_meta, again_result
                started_at = meta[0]
        evidence = dict(observation.evidence)
        if confirmation is not None:
            evidence["confirmation"] = confirmation
        evidence.update(
            status=str(observation.status),
            failure=observation.failure and str(observation.failure),
            suspected=observation.blocking and str(observation.blocking),
            rule=result.rule,
            check_version=check.VERSION,
            bytes_sent=observation.bytes_sent,
            bytes_received=observation.bytes_received,
            control=_control_evidence(control, control_observation, self.lookup.error),
            connectivity={"ok": self.connectivity.ok, "target": self.connectivity.target},
        )
        record = {
            "schema": SCHEMA,
            "id": str(uuid.uuid4()),
            "started_at": rfc3339(started_at),
            "runtime_ms": int(runtime_ms),
            "probe": {"key_id": self.key.key_id, "software_version": probe.__version__,
                      "public_key": self.key.public_b64},
            "network": {"link_type": str(self.options.link_type), **self.options.extra_network},
            "service": task.service,
            "endpoint": endpoint_ref(task.endpoint),
            "verdict": str(result.verdict),
            "blocking": result.blocking and str(result.blocking),
            "evidence": evidence,
        }
        if self.clock_offset is not None:  # a lab replay: marked wherever one looks
            replay = {"clock": rfc3339(started_at),
                      "real_started_at": rfc3339(started_at - self.clock_offset)}
            record["network"]["replay"] = True
            record["lab_clock"] = replay
            evidence["lab_clock"] = replay
        signed = self.key.sign(record)
        self.spool.add(signed)
        if self.on_record:
            self.on_record(task, signed)
        return signed


def _control_evidence(state: ControlState, observation: Observation | None,
                      error: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"state": str(state)}
    if observation is not None:
        out["failure"] = observation.failure and str(observation.failure)
        out["evidence"] = observation.evidence
    elif state is ControlState.ABSENT and error:
        out["reason"] = error
    return out


__all__ = ["Blocking", "RunOptions", "Task", "run_pass", "tasks_of"]
