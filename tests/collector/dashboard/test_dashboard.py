"""The dashboard over the Morocco 2016 replay, on SQLite and PostgreSQL: the
changes the seed describes, the matrix, timelines, drill-down to a verified
record, the Atom feed, the fleet behind operator tokens, languages, the CSP."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET

import httpx

from tests.collector.dashboard.demo_data import SEED_CHANGES
from tests.collector.harness import Collector

PERIOD = "from=2015-12-01&to=2016-11-30"


def test_changes_recover_the_seeds_dates(demo: Collector) -> None:
    with demo.client() as client:
        items = client.get("/api/v1/changes").json()["items"]
    found: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for item in sorted(items, key=lambda i: i["at"]):
        found.setdefault((item["service"], item["role"], item["link_type"]), []).append(
            (item["kind"], item["at"]))
        assert 0.5 <= item["confidence"] <= 1 and item["url"].startswith(demo.url)
    assert found == SEED_CHANGES  # messaging: no change at all
    with demo.client() as client:
        only = client.get("/api/v1/changes?service=lumen&link_type=adsl&role=call").json()
    assert [(i["kind"], i["at"]) for i in only["items"]] == [("end", "2016-11-04"),
                                                             ("start", "2016-02-22")]


def test_the_matrix_shows_2016_without_being_asked(demo: Collector) -> None:
    with demo.client() as client:
        page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert 'value="2015-12-01"' in html and 'value="2016-11-07"' in html  # the data's range
    assert "lumen" in html and "parla" in html and "unknown network" in html
    assert "operator by upload address" in html  # no signed attribution in the replay
    assert "blocked since" in html or "open again since" in html
    # each cell says how many probes stand behind it; one probe per link here
    assert html.count("one probe only") == 8  # 2 services x 2 paths x 2 links


def test_a_cell_in_the_blocked_period(demo: Collector) -> None:
    with demo.client() as client:
        page = client.get("/cell?service=lumen&role=call&cc=&operator=&link=cellular"
                          "&from=2016-01-07&to=2016-06-30")
        html = page.text
        assert page.status_code == 200
        assert re.search(r'class="summary v-blocked"', html)
        assert "stun.no_response" in html and "webrtc.ice" in html
        # the timeline: server-side SVG with the detected start marked and linked
        svg = html[html.index("<svg xmlns"):html.index("</svg>") + 6]
        assert 'class="change-start"' in svg and "from=2015-12-19&amp;to=2016-01-07" in svg
        ET.fromstring(svg)  # well-formed
        # drill-down: the cell's measurements on the change's days, then one record
        listing = client.get("/measurements?service=lumen&role=call&cc=&operator="
                             "&link=cellular&from=2015-12-19&to=2016-01-07")
        ids = re.findall(r'href="/measurements/([0-9a-f-]{36})"', listing.text)
        assert ids and "blocked" in listing.text
        one = client.get(f"/measurements/{ids[-1]}")
        assert one.status_code == 200 and "Signature verified by this collector" in one.text
        assert "Control result" in one.text and "network.replay" in one.text
        raw = client.get(f"/measurements/{ids[-1]}.json")
        assert raw.json()["id"] == ids[-1] and raw.json()["signature"]["alg"] == "ed25519"


def test_messaging_stays_open(demo: Collector) -> None:
    with demo.client() as client:
        html = client.get(f"/cell?service=parla&role=messaging&cc=&operator=&link=adsl&{PERIOD}"
                          ).text
    assert 'class="summary v-open"' in html and "None detected." in html


def test_service_timeline(demo: Collector) -> None:
    with demo.client() as client:
        page = client.get(f"/timeline?service=lumen&cc=&operator=&{PERIOD}")
    assert page.status_code == 200 and page.text.count("<svg xmlns") == 2
    # calls: starts on cellular and ADSL marked in the calls chart, none for messaging
    assert len(re.findall(r'<a href="[^"]*" class="change-start">', page.text)) == 2


def test_atom_feed(demo: Collector) -> None:
    with demo.client() as client:
        answer = client.get("/changes.atom?service=parla")
        french = client.get("/changes.atom?service=parla&lang=fr")
    assert answer.headers["content-type"].startswith("application/atom+xml")
    ns = {"a": "http://www.w3.org/2005/Atom"}
    feed = ET.fromstring(answer.content)
    entries = feed.findall("a:entry", ns)
    assert len(entries) == 4
    titles = [e.findtext("a:title", namespaces=ns) or "" for e in entries]
    assert any("blocking started 2016-02-22" in t and "adsl" in t for t in titles)
    assert all(e.find("a:link", ns) is not None for e in entries)
    assert "début du blocage" in french.text


def test_periods_and_filters_are_checked(demo: Collector) -> None:
    with demo.client() as client:
        assert client.get("/?from=2016-13-01").status_code == 400
        assert client.get("/?from=2016-05-01&to=2016-01-01").status_code == 400
        assert client.get("/?cc=Morocco").status_code == 400
        empty = client.get("/?from=2020-01-01&to=2020-12-31&cc=MA")
        assert empty.status_code == 200 and "No measurements in this period." in empty.text
        assert client.get("/measurements/not-a-uuid").status_code == 404


def test_languages_rtl_and_localised_numbers(demo: Collector) -> None:
    with demo.client() as client:
        french = client.get(f"/?{PERIOD}", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
        arabic = client.get(f"/?{PERIOD}&lang=ar", headers={"Accept-Language": "fr"})
        english = client.get(f"/?{PERIOD}", headers={"Accept-Language": "de, en;q=0.5"})
    assert '<html lang="fr" dir="ltr">' in french.text and "Où et comment" in french.text
    assert "1 décembre 2015" in french.text and "mesures sur la période" in french.text
    assert '<html lang="ar" dir="rtl">' in arabic.text and "محجوب" in arabic.text
    assert "lang=ar" in arabic.text  # links keep the chosen language
    assert '<html lang="en" dir="ltr">' in english.text
    assert french.headers["content-language"] == "fr"


def test_security_headers_and_no_external_assets(demo: Collector) -> None:
    with demo.client() as client:
        for path in ("/", f"/cell?service=lumen&role=call&link=cellular&{PERIOD}", "/docs",
                     "/login", "/changes"):
            answer = client.get(path)
            csp = answer.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert not re.search(r'(src|href)="(https?:)?//', answer.text), path
            assert "<script>" not in answer.text and " style=" not in answer.text
        docs = client.get("/docs").text
        assert "/static/swagger/swagger-ui-bundle.js" in docs
        for asset in ("/static/swagger/swagger-ui-bundle.js", "/static/swagger/swagger-ui.css",
                      "/static/docs.js", "/static/dashboard.css"):
            assert client.get(asset).status_code == 200
        assert client.get("/static/../settings.py").status_code == 404


def test_fleet_needs_an_operator_token(demo: Collector) -> None:
    token = subprocess.run([demo.program, "operator", "create", *demo.db_args], check=True,
                           capture_output=True, text=True).stdout.strip()
    with demo.client() as client:
        assert client.get("/fleet").status_code == 303
        assert client.get("/fleet", headers={"Authorization": "Bearer vwo_wrong"}
                          ).status_code == 303
        denied = client.post("/login", data={"token": "vwo_wrong"})
        assert denied.status_code == 401
        page = client.get("/fleet", headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200
        html = page.text
        for key in demo.keys.values():  # type: ignore[attr-defined]
            assert key.key_id[:16] in html
        assert "0.1.0" in html and "gap" in html  # 2016's probes are not live today
        logged = client.post("/login", data={"token": token}, follow_redirects=False)
        assert logged.status_code == 303
        cookie = logged.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert client.get("/fleet").status_code == 200  # the cookie
        assert client.get("/api/v1/subscriptions").status_code == 200
    with httpx.Client(base_url=demo.url) as anonymous:
        assert anonymous.get("/api/v1/subscriptions").status_code == 401
