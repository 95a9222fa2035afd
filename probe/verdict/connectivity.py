"""What proves that the network works, whatever the pre-check found.

Censors block measurement infrastructure too: a pre-check that could not
reach the collector or the control says nothing about the rest of the
network. An endpoint that worked end to end does: a real server of the
protocol answered from here. Failures prove nothing (a home router answers
with an ICMP error or a RST when its uplink is down), so only successes and
measurable results count.
"""

from __future__ import annotations

from probe.checks.base import Observation, Status


def proves_connectivity(observation: Observation) -> bool:
    return observation.status in (Status.OK, Status.DEGRADED)
