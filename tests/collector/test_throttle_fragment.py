"""The measurement page's fragment for a throttle record (Wehe-style)."""

from __future__ import annotations

from collector.throttle_fragment import throttle_comparison_html
from tests.probe.ui.test_throttle_view import throttle_record


def test_the_fragment_is_self_contained_and_escaped() -> None:
    record = throttle_record(254.9, 254.9, 0.0, "no")
    record["service"] = "<script>x</script>"
    html = throttle_comparison_html(record)
    assert html.startswith('<table class="vw-throttle"') and "<script>" not in html
    assert "&lt;script&gt;" in html and "treated alike" in html and "255" in html
    assert throttle_comparison_html({"endpoint": {"check": "tcp"}}) == ""
