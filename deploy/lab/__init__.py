"""The censorship lab: network namespaces with a censoring router between probe
hosts (one per link type) and an "internet" with reference services, scenario
files of blocking primitives, an accuracy harness and the Morocco 2016 replay.

Modules: `addresses` (the address plan and the lab's names), `shell` (ip, nft,
tc and processes in namespaces), `topology` (build and tear down), `pki` (the
lab's certificate authority), `dns` (authoritative server and lying resolver),
`tlsserver` (reference TCP/TLS servers, UDP echo), `relays` (coturn and
Kamailio through deploy/services), `services` (the supervisor that keeps the
reference services running), `lab` (a lab: topology, working directory,
probes), `mirror` (a real catalogue mirrored inside the lab), `scenario`
(scenario YAML), `censor` (scenario primitives to nftables and tc),
`accuracy` (expected vs observed), `demo` (Morocco 2016), `__main__` (CLI).
See docs/lab.md.
"""

DEFAULT_PREFIX = "vwlab"
