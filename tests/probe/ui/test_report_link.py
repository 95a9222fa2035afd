"""The line under the results table that says which link was measured, so a
volunteer can correct it with --link-type."""

from __future__ import annotations

from probe.ui.report import link_line


def test_the_link_line_names_both_facts_and_their_sources() -> None:
    network = {"link_type": "cellular", "link_type_source": "driver", "access": "usb",
               "access_source": "driver", "upstream": "cellular", "upstream_source": "driver",
               "upstream_confidence": "medium"}
    assert link_line(network) == (
        "link: cellular (driver); access usb (driver), network behind it cellular (driver, "
        "medium). Not right? --link-type (docs/linktype.md)")
    assert link_line({"link_type": "wifi"}).startswith("link: wifi (?). Not right?")
