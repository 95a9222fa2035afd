"""bench/generate.py makes records the collector accepts: valid
`voipwatch.measurement/1`, signed by keys a seed rebuilds, one key per run of
records, the campaign's mix of networks and verdicts, the same for the same
seed and index whether signed in one process or several."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from bench.generate import bodies, generate, key_index, main, probe_keys
from probe.core.record import Measurement
from probe.core.signing import verify_record


def test_records_are_valid_signed_and_varied() -> None:
    keys = {key.key_id: key for key in probe_keys(8)}
    texts = list(generate(3000, workers=1))
    records = [orjson.loads(text) for text in texts]
    verdicts: Counter[str] = Counter()
    for index, record in enumerate(records):
        Measurement.model_validate(record)
        key = keys[record["probe"]["key_id"]]
        verify_record(record, key.public_raw)
        assert key.key_id == list(keys)[key_index(index)]
        verdicts[record["verdict"]] += 1
    assert len({r["id"] for r in records}) == 3000
    assert {r["network"]["cc"] for r in records} >= {"MA", "AE"}
    assert len({r["service"] for r in records}) >= 8
    assert verdicts["open"] > verdicts["blocked"] > 0 and verdicts["inconclusive"] > 0


def test_the_same_seed_makes_the_same_records(tmp_path: Path) -> None:
    one = list(generate(2500, workers=1, end=1.7e9))
    two = list(generate(2500, workers=2, end=1.7e9))
    assert one == two
    assert [b.count(b'"schema"') for b in bodies(1200, 500, end=1.7e9, workers=1)] == \
        [500, 500, 200]
    out = tmp_path / "records.jsonl"
    assert main(["--count", "1000", "--out", str(out), "--batch", "1", "--workers", "1",
                 "--keys-out", str(tmp_path / "keys.json")]) == 0
    assert len(out.read_bytes().splitlines()) == 1000
    assert len(orjson.loads((tmp_path / "keys.json").read_bytes())) == 8
