"""Requests generated from the collector's OpenAPI with schemathesis (issue 13):
>= 10,000 (BENCH_OPENAPI_REQUESTS) against a real collector in a network
namespace of its own (root, unshare). Prints requests, status classes, server
errors and partial writes (both must be 0), and requests/s."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.openapi_fuzz import in_namespace

REQUESTS = int(os.environ.get("BENCH_OPENAPI_REQUESTS", "10000"))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vw-openapi-") as workdir:
        result = in_namespace(Path(workdir), REQUESTS, timeout=7200)
    print(f"schemathesis against the collector's OpenAPI: {result['requests']:,} requests "
          f"over {result['operations']} operations in {result['seconds']} s "
          f"({result['requests'] / result['seconds']:.0f}/s)")
    print(f"  status classes: {result['statuses']}")
    print(f"  server errors: {result['server_errors']}; partial writes: "
          f"{result['partial_writes']} (stored {result['stored']}, accepted {result['accepted']});"
          f" tracebacks in the log: {result['log_tracebacks']}")
    for error in result["errors"]:
        print(f"  {error}")
    ok = result["server_errors"] == 0 and result["partial_writes"] == 0 \
        and result["requests"] >= REQUESTS * 0.9
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
