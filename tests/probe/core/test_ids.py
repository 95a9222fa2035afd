import time
import uuid

from probe.core.ids import time_ordered_id


def test_a_uuid7_carrying_its_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    made = time_ordered_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after
    assert uuid.UUID(str(made)) == made


def test_ids_sort_in_the_order_they_were_made() -> None:
    """Made in different milliseconds, ids sort as their times do, as text too
    (the collector's index compares the text)."""
    start = 1_700_000_000_000_000_000
    made = [time_ordered_id(start + n * 1_000_000) for n in range(1000)]
    assert sorted(made, key=str) == made
    assert len({time_ordered_id(start) for _ in range(10_000)}) == 10_000
