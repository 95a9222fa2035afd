"""User errors: exit status 2, one sentence naming the problem, no traceback,
and no traffic (everything is validated before the first packet)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from probe.core.signing import ProbeKey
from tests.conftest import probe_command

CATALOGUE = """\
version: 1
services:
  - id: local
    name: Local
    endpoints:
      - check: tcp
        host: 127.0.0.1
        port: 9
        role: messaging
"""


def run_cli(*args: str, home: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ)
    if home is not None:
        env["VOIPWATCH_HOME"] = str(home)
    return subprocess.run([*probe_command(), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    path = tmp_path / "catalogue.yaml"
    path.write_text(CATALOGUE)
    return path


def test_help_and_version() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and "run" in result.stdout and "verify" in result.stdout
    result = run_cli("run", "--help")
    assert result.returncode == 0 and "--budget-mb" in result.stdout
    assert run_cli("--version").stdout.startswith("voipwatch-probe 0.")


def test_missing_catalogue(tmp_path: Path) -> None:
    assert_user_error(run_cli("run", "--catalogue", str(tmp_path / "nope.yaml")),
                      "catalogue not found", "nope.yaml")


def test_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nservices: [\n")
    assert_user_error(run_cli("run", "--catalogue", str(path)), "bad.yaml:3", "not valid YAML")


def test_bad_field_names_file_line_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(CATALOGUE.replace("port: 9", "port: 0"))
    assert_user_error(run_cli("run", "--catalogue", str(path)),
                      "bad.yaml:8: services[0] (local) endpoints[0] (tcp 127.0.0.1) port")


def test_unknown_service(catalogue: Path) -> None:
    assert_user_error(run_cli("run", "--catalogue", str(catalogue), "--services", "skype"),
                      "unknown service 'skype'")


def test_unwritable_output(catalogue: Path, tmp_path: Path) -> None:
    assert_user_error(run_cli("run", "--catalogue", str(catalogue), "--output", str(tmp_path)),
                      "cannot write --output")
    assert_user_error(run_cli("run", "--catalogue", str(catalogue),
                              "--output", str(tmp_path / "no" / "dir" / "x.jsonl")),
                      "cannot write --output")


def test_bad_key_file(catalogue: Path, voipwatch_home: Path) -> None:
    voipwatch_home.mkdir(parents=True)
    (voipwatch_home / "probe.key").write_text("garbage")
    assert_user_error(run_cli("run", "--catalogue", str(catalogue), "--no-upload"),
                      "not a PEM Ed25519 private key")


def test_bad_config(catalogue: Path, voipwatch_home: Path) -> None:
    voipwatch_home.mkdir(parents=True)
    (voipwatch_home / "probe.toml").write_text("collector = [1\n")
    assert_user_error(run_cli("run", "--catalogue", str(catalogue)), "probe.toml", "TOML")
    (voipwatch_home / "probe.toml").write_text('colector = "http://x"\n')
    assert_user_error(run_cli("run", "--catalogue", str(catalogue)), "unknown key 'colector'")


@pytest.mark.parametrize("args,needle", [
    (["--resolver", "dns.example"], "--resolver 'dns.example'"),
    (["--resolver", "10.0.0.1:99999"], "expected IP or IP:PORT"),
    (["--timeout", "-1"], "must be greater than 0"),
    (["--budget-mb", "lots"], "is not a number"),
    (["--link-type", "5g"], "invalid choice"),
    (["--skip", "ping"], "unknown check 'ping' in --skip"),
])
def test_bad_arguments(catalogue: Path, args: list[str], needle: str) -> None:
    assert_user_error(run_cli("run", "--catalogue", str(catalogue), *args), needle)


def test_keygen_never_overwrites(voipwatch_home: Path) -> None:
    first = run_cli("keygen")
    assert first.returncode == 0 and "key id:" in first.stdout
    key_id = first.stdout.split("key id:")[1].split()[0]
    assert_user_error(run_cli("keygen"), "refusing to overwrite")
    assert key_id in run_cli("status").stdout
    forced = run_cli("keygen", "--force")
    assert forced.returncode == 0 and "previous key kept as" in forced.stderr
    assert list(voipwatch_home.glob("probe.key.bak-1"))


def test_upload_without_collector() -> None:
    assert_user_error(run_cli("upload"), "no collector")


def test_verify_names_each_bad_line(tmp_path: Path, probe_key: ProbeKey) -> None:
    from tests.probe.core.test_signing import sample_record

    good = probe_key.sign(sample_record(probe_key))
    bad = json.loads(json.dumps(good))
    bad["verdict"] = "open"
    path = tmp_path / "out.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (good, bad, good)) + "\n{not json\n")
    result = run_cli("verify", str(path))
    assert result.returncode == 3  # a finding about the data, not an internal error
    assert "2 of 4 records failed verification" in result.stderr
    assert "internal error" not in result.stderr
    assert f"{path}:2: bad_signature" in result.stdout
    assert f"{path}:4: not_json" in result.stdout
    assert f"{path}:1:" not in result.stdout and f"{path}:3:" not in result.stdout
    path.write_text(json.dumps(good) + "\n")
    ok = run_cli("verify", str(path))
    assert ok.returncode == 0 and "1 records, all signatures valid" in ok.stdout
    assert_user_error(run_cli("verify", str(tmp_path / "missing.jsonl")), "no such file")
