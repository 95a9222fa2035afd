"""One probe pass: every endpoint of the catalogue checked, classified, signed
and spooled.

Checks run concurrently under a bound; bandwidth-heavy checks (`throttle`) run
alone afterwards so that one measurement never disturbs another. Each record
is in the spool (fsync'd) before it is reported anywhere else. When the spool
cannot take a record (disk full, a file made read-only, a damaged page), the
pass stops there (`SpoolFailed`): what it spooled stays, the records it could
not are saved beside the spool for the next pass to take back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import probe
from probe import checks
from probe.catalogue import Catalogue, endpoint_ref
from probe.checks.base import Budget, Context, ControlState, Observation, Status
from probe.core.checks import EXCLUSIVE, LONG, NOT_REPEATED
from probe.core.errors import UserError
from probe.core.failures import Failure, describe
from probe.core.record import (
    Blocking,
    EndpointRef,
    Measurement,
    NetworkInfo,
    ProbeInfo,
    Verdict,
    rfc3339,
    utcnow,
)
from probe.core.signing import ProbeKey
from probe.run.attribution import Attributor, LocalGeoip
from probe.run.connectivity import Connectivity, ConnectivityWatch, precheck, targets_for
from probe.run.control import CONTROL_WAIT, ControlAnswers, ControlClient, control_state
from probe.run.names import NameTrouble, at_address, tampered, worth_a_look
from probe.run.network import (
    AttributionFacts,
    MeasuredNetwork,
    NetworkChange,
    NetworkWatch,
    link_facts,
    watch_for,
)
from probe.run.pathfinder import locate_block
from probe.store.spool import Spool, SpoolError
from probe.verdict.classify import RESOLVER_HEALTH, Classification, Situation, classify
from probe.verdict.methods import suspected

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    catalogue: Catalogue
    link_type: str = "auto"  # `auto` (detected) or a LinkType the user gave
    resolver: tuple[str, int] | None = None
    timeout: float | None = None  # per check; None: each check's own default
    budget_bytes: int | None = None
    concurrency: int = 16
    control_url: str | None = None
    collector_url: str | None = None
    geoip: LocalGeoip | None = None  # the user's .mmdb files: attribution `local`


@dataclass(frozen=True)
class Task:
    service: str
    endpoint: Any


Progress = Callable[[Task, dict[str, Any]], None]


def tasks_of(catalogue: Catalogue) -> list[Task]:
    return [Task(s.id, e) for s in catalogue.services for e in s.endpoints]


class SpoolFailed(UserError):
    """The spool failed during the pass, which stopped there; `records`: the
    pass's records the spool holds. The message says what became of the others."""

    def __init__(self, message: str, records: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.records = records


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
    control_client = ControlClient(options.control_url, key, resolver=options.resolver) \
        if options.control_url else None
    lookup = ControlAnswers(control_client, [t.endpoint for t in tasks])
    lookup.start()
    attributor = Attributor(options.control_url, key, options.geoip, options.resolver)
    learning = asyncio.ensure_future(attributor.learn())  # while the pre-check runs
    # the link is detected in a thread (D-Bus, platform tools) during the pre-check
    link = asyncio.ensure_future(asyncio.to_thread(link_facts, options.link_type))
    connectivity = await precheck(targets_for(options.control_url, options.collector_url),
                                  options.resolver)
    if on_start:
        on_start(connectivity)
    if "control" in connectivity.unreachable:  # its request would only time out
        lookup.abandon(f"control unreachable: {connectivity.unreachable['control']}")
    budget = Budget(options.budget_bytes)
    network = MeasuredNetwork(await link, await learning)
    regular = [t for t in tasks if t.endpoint.check not in EXCLUSIVE]
    exclusive = [t for t in tasks if t.endpoint.check in EXCLUSIVE]
    watch = ConnectivityWatch(connectivity, lambda: lookup.answered, len(regular))
    shared = RunState(options, key, spool, budget, lookup, watch, on_record,
                      watch_for(network, options.link_type), clock_offset, attributor)
    semaphore = asyncio.Semaphore(options.concurrency)
    resolver = ResolverHealth(sum(t.endpoint.check == "dns" for t in regular))

    async def one(task: Task) -> dict[str, Any]:
        async with semaphore:
            observed = await shared.observe(task)
        watch.counted()
        if observed.observation.status is not Status.OK:
            await watch.known()  # a failure is judged once connectivity is known
        if task.endpoint.check == "dns":
            resolver.report(observed.observation)
        works = True
        if observed.suspected in RESOLVER_HEALTH:
            works = await resolver.works()
        return await shared.finish(observed, resolver_works=works)

    # the longest checks (whole calls) take their slots first: the pass ends sooner
    order = sorted(range(len(regular)), key=lambda i: regular[i].endpoint.check not in LONG)
    try:
        running = [asyncio.ensure_future(one(regular[i])) for i in order]
        try:
            finished = await asyncio.gather(*running)
        except Exception:  # the spool failed (or a bug): nothing goes on measuring
            for future in running:
                future.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        records = [record for _, record in sorted(zip(order, finished, strict=True))]
        for task in exclusive:  # one at a time, after everything else
            records.append(await shared.finish(await shared.observe(task)))
    except SpoolError as exc:
        raise shared.stopped(exc, len(tasks)) from exc
    finally:
        await lookup.close()
        connectivity.close()
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
    lookup: ControlAnswers
    connectivity: ConnectivityWatch
    on_record: Progress | None
    watch: NetworkWatch
    clock_offset: timedelta | None = None  # lab replays only, see lab_clock_offset
    attributor: Attributor | None = None
    relearning: asyncio.Lock = field(default_factory=asyncio.Lock)
    kept: list[dict[str, Any]] = field(default_factory=list)  # spooled, in this order
    unsaved: list[dict[str, Any]] = field(default_factory=list)  # signed, the spool failed

    def stopped(self, error: SpoolError, total: int) -> SpoolFailed:
        """The pass stops on the spool's `error`: the records it could not take are
        saved beside it (else in the temporary directory), and the one sentence
        says where each of the pass's `total` measurements is."""
        said = f"{error}; the pass stopped: {len(self.kept)} of its {total} measurements " \
               "are in the spool"
        if self.unsaved:
            count = len(self.unsaved)
            saved = self.spool.save_unsaved(self.unsaved)
            if saved is None:
                said += f", {count} could not be kept"
            elif saved.parent == self.spool.path.parent:
                said += f", {count} more in {saved} (the next run or upload spools them)"
            else:
                said += f", {count} more in {saved} (move it beside the spool: the next run " \
                        "or upload spools them)"
        missing = total - len(self.kept) - len(self.unsaved)
        if missing:
            said += f", {missing} were not made"
        return SpoolFailed(said, list(self.kept))

    def context(self, module: Any) -> Context:
        timeout = self.options.timeout or module.DEFAULT_TIMEOUT
        return Context(timeout=timeout, resolver=self.options.resolver, budget=self.budget,
                       control=self.lookup, collector=self.options.collector_url,
                       signer=self.key)

    async def observe(self, task: Task) -> Observed:
        started_at = utcnow() + (self.clock_offset or timedelta(0))
        start = time.perf_counter()
        module = checks.get(task.endpoint.check)
        if self.budget.exhausted():
            observation = Observation(status=Status.UNMEASURABLE,
                                      failure=Failure.BUDGET_EXHAUSTED,
                                      evidence={"budget_bytes": self.budget.limit})
        else:
            ctx = self.context(module)
            try:
                # the check bounds itself; this cap only guards against a check that
                # hangs (some checks also wait for the control's answer)
                observation = await asyncio.wait_for(module.run(task.endpoint, ctx),
                                                     ctx.timeout * 3 + CONTROL_WAIT + 5)
            except TimeoutError:
                observation = Observation(status=Status.UNMEASURABLE,
                                          failure=Failure.GENERIC_TIMEOUT,
                                          evidence={"error": "check exceeded its time limit"})
            except Exception as exc:  # a bug in a check must not lose the others
                log.exception("check %s failed internally", module.NAME)
                observation = Observation(status=Status.UNMEASURABLE, failure=Failure.UNKNOWN,
                                          evidence={"error": describe(exc)})
            self.budget.charge(observation.bytes_sent + observation.bytes_received)
            self.connectivity.note(observation)
        name = None
        if worth_a_look(task.endpoint, observation):
            # the name failed to resolve here, or may have been forged: the
            # control's resolution tells (probe.run.names)
            try:
                found = await tampered(task.endpoint, observation,
                                       await self.lookup(task.endpoint), self.context(module))
            except Exception:  # a bug here must not lose the check's own observation
                log.exception("following the name of %s failed internally", module.NAME)
                found = None
            if found is not None:
                observation, name = found
        runtime_ms = int((time.perf_counter() - start) * 1000)
        return Observed(task, observation, suspected(observation), runtime_ms, started_at,
                        module.VERSION, name)

    async def finish(self, observed: Observed, resolver_works: bool = True) -> dict[str, Any]:
        """Classify (with a second look before `blocked`), build, sign and spool the record."""
        task = observed.task
        control_observation = None
        if observed.observation.control is not None:
            control = observed.observation.control
        else:
            control_observation = await self.lookup(task.endpoint)
            control = control_state(control_observation)

        def judge(seen: Observed) -> Classification:
            # a name's lookup is judged against the control's resolution of it
            return classify(Situation(
                status=seen.observation.status, suspected=seen.suspected,
                control=ControlState.OK if seen.name is not None else control,
                connectivity=self.connectivity.ok, resolver_works=resolver_works,
            ))

        result = judge(observed)
        confirmation: dict[str, Any] | None = None
        if result.verdict is Verdict.BLOCKED and task.endpoint.check not in NOT_REPEATED:
            # A `blocked` is said only after a second look: a lossy link can
            # lose every packet of one attempt, it rarely loses two attempts.
            again = await self.observe(task)
            again_result = judge(again)
            if again_result.verdict is Verdict.BLOCKED:
                confirmation = {"outcome": "confirmed", "runtime_ms": again.runtime_ms,
                                "suspected": _text(again.suspected)}
            else:
                first = observed.observation
                confirmation = {"outcome": "not_confirmed", "first": {
                    "failure": _text(first.failure), "suspected": _text(observed.suspected),
                    "runtime_ms": observed.runtime_ms}}
                observed, result = again, again_result
        beyond = None
        if observed.name is not None and result.verdict is Verdict.BLOCKED:
            try:
                beyond = await self.beyond_dns(observed, observed.name, control, resolver_works)
            except Exception as exc:  # the record stands without its second layer
                log.exception("the check beyond DNS failed internally")
                beyond = {"error": describe(exc)}
        located = None
        if result.verdict is Verdict.BLOCKED and result.blocking and observed.name is None:
            # where on the path, and by injected packets? (raw sockets only)
            try:
                located = await locate_block(task.endpoint,
                                             observed.observation.evidence.get("address"),
                                             result.blocking)
            except Exception as exc:  # the record stands without it
                log.exception("tracing a blocked endpoint failed internally")
                located = {"path": {"status": "error", "error": describe(exc)}}
        await self.follow_network()  # a roam during the pass: the record says so
        record = self.record(observed, result, confirmation, _control_evidence(
            control, control_observation, self.lookup.error), beyond, located)
        signed = self.key.sign(record.to_json_dict())
        try:
            self.spool.add(signed)
        except SpoolError:
            self.unsaved.append(signed)  # `stopped` saves it elsewhere
            raise
        self.kept.append(signed)
        if self.on_record:
            self.on_record(task, signed)
        return signed

    async def follow_network(self) -> None:
        """Notice a route change (the watch detects the link again); the attribution
        learnt at the start may then be another network's: forget it, learn it
        again, and say so in `network.changes`."""
        changes = await self.watch.check()
        route = next((c for c in changes if c.kind == "route"), None)
        if route is None or self.attributor is None:
            return
        async with self.relearning:
            network = self.watch.network
            network.attribution = AttributionFacts()  # unknown until learnt again
            network.attribution = await self.attributor.learn()
            network.changes.append(NetworkChange(
                route.at_ms, "attribution", f"learnt again: {network.attribution.source}"))

    async def beyond_dns(self, observed: Observed, name: NameTrouble, control: ControlState,
                         resolver_works: bool) -> dict[str, Any]:
        """The endpoint's own layer at the true address (the control's first
        public one): the check again, classified against the endpoint's control,
        a `blocked` looked at twice as ever (docs/measurement.md, `beyond_dns`)."""
        module = checks.get(observed.task.endpoint.check)
        address = name.addresses[0]
        endpoint = at_address(observed.task.endpoint, address)

        async def once() -> tuple[Observation, Classification]:
            observation = await module.run(endpoint, self.context(module))
            self.budget.charge(observation.bytes_sent + observation.bytes_received)
            result = classify(Situation(
                status=observation.status, suspected=suspected(observation), control=control,
                connectivity=self.connectivity.ok, resolver_works=resolver_works))
            return observation, result

        observation, result = await once()
        looks = 1
        if result.verdict is Verdict.BLOCKED:
            observation, result = await once()
            looks = 2
        return {"address": address, "verdict": str(result.verdict),
                "blocking": _text(result.blocking), "rule": result.rule,
                "status": str(observation.status), "failure": _text(observation.failure),
                "suspected": _text(suspected(observation)), "looks": looks,
                "evidence": observation.evidence,
                "bytes_sent": observation.bytes_sent,
                "bytes_received": observation.bytes_received}

    def record(self, observed: Observed, result: Classification,
               confirmation: dict[str, Any] | None, control: dict[str, Any],
               beyond: dict[str, Any] | None = None,
               located: dict[str, Any] | None = None) -> Measurement:
        """The measurement record (docs/measurement.md), before its signature."""
        observation = observed.observation
        evidence = dict(observation.evidence)
        if confirmation is not None:
            evidence["confirmation"] = confirmation
        if beyond is not None:
            evidence["beyond_dns"] = beyond
        evidence.update(located or {})  # path, injection
        evidence.update(
            status=str(observation.status),
            failure=_text(observation.failure),
            suspected=_text(observed.suspected),
            rule=result.rule,
            check_version=observed.check_version,
            bytes_sent=observation.bytes_sent,
            bytes_received=observation.bytes_received,
            control=control,
            connectivity=self.connectivity.evidence(),
        )
        network = self.watch.network.record_fields()
        extra: dict[str, Any] = {}
        if self.clock_offset is not None:  # a lab replay: marked wherever one looks
            replay = {"clock": rfc3339(observed.started_at),
                      "real_started_at": rfc3339(observed.started_at - self.clock_offset)}
            network["replay"] = True
            extra["lab_clock"] = replay
            evidence["lab_clock"] = replay
        return Measurement(
            started_at=observed.started_at,
            runtime_ms=observed.runtime_ms,
            probe=ProbeInfo(key_id=self.key.key_id, software_version=probe.__version__,
                            public_key=self.key.public_b64),
            network=NetworkInfo(**network),
            service=observed.task.service,
            endpoint=EndpointRef(**endpoint_ref(observed.task.endpoint)),
            verdict=result.verdict,
            blocking=result.blocking,
            evidence=evidence,
            **extra,
        )


@dataclass
class Observed:
    """One run of a check on one endpoint, as the pass keeps it until its record is made."""

    task: Task
    observation: Observation
    suspected: Blocking | None  # the blocking method it suggests (probe.verdict.methods)
    runtime_ms: int
    started_at: datetime
    check_version: str
    name: NameTrouble | None = None  # its host's lookup failed or lied (probe.run.names)


def _text(value: StrEnum | None) -> str | None:
    return None if value is None else str(value)


def _control_evidence(state: ControlState, observation: Observation | None,
                      error: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"state": str(state)}
    if observation is not None:
        out["failure"] = observation.failure and str(observation.failure)
        out["evidence"] = observation.evidence
    elif state is ControlState.ABSENT and error:
        out["reason"] = error
    return out


__all__ = ["Blocking", "RunOptions", "SpoolFailed", "Task", "run_pass", "tasks_of"]
