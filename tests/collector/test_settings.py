"""Where settings come from: flags over environment over the TOML file over
defaults; a bad value is one sentence naming its source."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from collector.settings import DEFAULT_PORT, load_settings
from probe.core.errors import UserError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("VOIPWATCH_COLLECTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VOIPWATCH_COLLECTOR_HOME", str(tmp_path / "home"))


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.data_dir == tmp_path / "home"
    assert settings.port == DEFAULT_PORT and settings.host == "127.0.0.1"
    assert settings.database_url == f"sqlite:///{tmp_path / 'home' / 'collector.sqlite3'}"
    assert (settings.keep_ip, settings.token_required, settings.control_allow_private) == (
        False, False, False)  # on loopback no token is needed by default
    assert load_settings({"host": "0.0.0.0"}).token_required is True
    assert load_settings({"host": "::", "require_token": False}).token_required is False
    assert (settings.max_record_age_days, settings.max_clock_skew_seconds) == (400, 600)
    assert (settings.late_after_hours, settings.transparency_log) == (24, True)
    # two API processes per core the collector may run on, at most 8 (docs/scale.md)
    assert settings.workers == max(1, min(2 * len(os.sched_getaffinity(0)), 8))


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "collector.toml"
    config.write_text('port = 9001\nmax_record_age_days = 7\nkeep_ip = true\n'
                      'resolver = "10.0.0.53:5353"\n')
    monkeypatch.setenv("VOIPWATCH_COLLECTOR_MAX_RECORD_AGE_DAYS", "0")
    settings = load_settings({"port": 9002, "db": None}, config)
    assert settings.port == 9002  # flag beats file
    assert settings.max_record_age_days == 0  # environment beats file (0: no limit)
    assert settings.keep_ip is True  # file beats default
    assert settings.resolver_address == ("10.0.0.53", 5353)


def test_config_file_found_in_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "collector.toml").write_text("require_token = true\n")
    assert load_settings({"data_dir": data}).require_token is True


@pytest.mark.parametrize(("toml", "flags", "env", "message"), [
    ("port = 70000\n", {}, {}, "collector.toml: port: Input should be less than or equal"),
    ("colour = 1\n", {}, {}, "collector.toml: colour: unknown setting"),
    ("port = [\n", {}, {}, "collector.toml: not valid TOML"),
    ("", {"resolver": "dns.google"}, {}, "--resolver 'dns.google': Value error, expected IP"),
    ("", {}, {"VOIPWATCH_COLLECTOR_MAX_BATCH": "lots"},
     "VOIPWATCH_COLLECTOR_MAX_BATCH in the environment: Input should be a valid integer"),
])
def test_bad_values_name_their_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      toml: str, flags: dict[str, Any], env: dict[str, str],
                                      message: str) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(toml)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_settings(flags, config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_settings({}, tmp_path / "absent.toml")
