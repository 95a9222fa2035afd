"""The registry of checks is the one source of check names and properties."""

from __future__ import annotations

import typing

from probe import checks
from probe.catalogue import ENDPOINT_ADAPTER
from probe.core.checks import (
    CHECK_NAMES,
    EXCLUSIVE,
    HELPER_CHECKS,
    NOT_REPEATED,
    REGISTRY,
    CheckName,
)


def test_every_check_name_has_one_row_and_a_module() -> None:
    assert [spec.name for spec in REGISTRY] == list(CheckName)
    for spec in REGISTRY:
        module = checks.get(spec.name)
        assert spec.name == module.NAME and module.VERSION and module.DEFAULT_TIMEOUT > 0
        assert callable(module.run)


def test_the_catalogue_knows_exactly_the_registered_checks() -> None:
    union = typing.get_args(typing.get_args(ENDPOINT_ADAPTER._type)[0])
    tags = [typing.get_args(model.model_fields["check"].annotation)[0] for model in union]
    assert sorted(tags) == sorted(CHECK_NAMES)


def test_derived_sets() -> None:
    assert {"throttle"} == EXCLUSIVE
    assert {"throttle"} == NOT_REPEATED  # its confirmation round; a call runs twice
    assert {"dns", "tcp", "tls", "stun", "turn", "sip"} == HELPER_CHECKS
