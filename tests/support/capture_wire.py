"""Capture the golden wire vectors of tests/data/ (tests/data/README.md):

    .venv/bin/python -m tests.support.capture_wire

SIP: the OPTIONS request the `sip` check sends (fixed branch, tag and Call-ID)
to the Kamailio the tests start (deploy/services/kamailio.py), over UDP and
TCP; its responses are written as received, with the request and the local
address in a JSON file beside them. DNS: messages built with dnspython (a
query and the answers a censor's resolver gives), written in wire form.
Run it again only to refresh the vectors; the golden tests read the files.
"""

from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from deploy.services.kamailio import Kamailio
from probe.wire import sip as sipmsg

DATA = Path(__file__).resolve().parents[1] / "data"
BRANCH, FROM_TAG = "z9hG4bK0123456789abcdef0123", "a1b2c3d4e5f6"


def capture_sip() -> None:
    with tempfile.TemporaryDirectory() as tmp, Kamailio(Path(tmp) / "kamailio") as kamailio:
        for transport, kind in (("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM)):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.settimeout(5)
                sock.connect((kamailio.host, kamailio.port))
                local = sock.getsockname()[:2]
                call_id = f"0123456789abcdef01234567@{local[0]}"
                request = sipmsg.options_request(
                    uri=f"sip:{kamailio.host}:{kamailio.port}" + (
                        "" if transport == "udp" else ";transport=tcp"),
                    transport=transport, local=local, branch=BRANCH, from_tag=FROM_TAG,
                    call_id=call_id)
                sock.sendall(request)
                response = b""
                while sipmsg.frame_length(response) is None or \
                        len(response) < (sipmsg.frame_length(response) or 0):
                    response += sock.recv(65535)
            name = f"kamailio-options-{transport}"
            (DATA / "sip" / f"{name}.request").write_bytes(request)
            (DATA / "sip" / f"{name}.response").write_bytes(response)
            (DATA / "sip" / f"{name}.json").write_text(json.dumps(
                {"transport": transport, "local": list(local), "branch": BRANCH,
                 "from_tag": FROM_TAG, "call_id": call_id}, indent=1) + "\n")


def capture_dns() -> None:
    query = dns.message.make_query("chat.lumen.lab", "A", id=4660)
    (DATA / "dns" / "query-a.bin").write_bytes(query.to_wire())
    answers = {
        "answer-a": ["93.184.216.34", "93.184.216.35"],
        "answer-bogon": ["10.10.34.34"],
        "answer-empty": [],
    }
    for name, addresses in answers.items():
        response = dns.message.make_response(query)
        if addresses:
            response.answer.append(dns.rrset.from_text(
                "chat.lumen.lab.", 300, "IN", "A", *addresses))
        (DATA / "dns" / f"{name}.bin").write_bytes(response.to_wire())
    cname = dns.message.make_response(query)
    cname.answer.append(dns.rrset.from_text("chat.lumen.lab.", 300, "IN", "CNAME",
                                            "edge.cdn.lab."))
    cname.answer.append(dns.rrset.from_text("edge.cdn.lab.", 60, "IN", "A", "198.51.100.7"))
    (DATA / "dns" / "answer-cname.bin").write_bytes(cname.to_wire())
    for name, rcode in (("nxdomain", dns.rcode.NXDOMAIN), ("servfail", dns.rcode.SERVFAIL),
                        ("refused", dns.rcode.REFUSED)):
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        (DATA / "dns" / f"answer-{name}.bin").write_bytes(response.to_wire())
    truncated = dns.message.make_response(query)
    truncated.flags |= dns.flags.TC
    (DATA / "dns" / "answer-truncated.bin").write_bytes(truncated.to_wire())
    other = dns.message.make_query("chat.lumen.lab", "A", id=4661)
    (DATA / "dns" / "answer-other-id.bin").write_bytes(
        dns.message.make_response(other).to_wire())


if __name__ == "__main__":
    capture_sip()
    capture_dns()
