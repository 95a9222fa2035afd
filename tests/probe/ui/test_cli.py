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
    (["--timeout", "nan"], "--timeout: must be a finite number greater than 0, not nan"),
    (["--timeout", "inf"], "--timeout: must be a finite number greater than 0, not inf"),
    (["--timeout", "1e400"], "--timeout: must be a finite number greater than 0, not 1e400"),
    (["--timeout=-inf"], "--timeout: must be a finite number greater than 0, not -inf"),
    (["--timeout", "1e10"], "--timeout: must be at most 86400, not 1e10"),
    (["--budget-mb", "lots"], "is not a number"),
    (["--budget-mb", "nan"], "--budget-mb: must be a finite number greater than 0, not nan"),
    (["--budget-mb", "inf"], "--budget-mb: must be a finite number greater than 0, not inf"),
    (["--budget-mb", "1e303"], "--budget-mb: must be at most 1e+09, not 1e303"),
    (["--budget-mb", "-1"], "--budget-mb: must be greater than 0, not -1"),
    (["--link-type", "5g"], "invalid choice"),
    (["--skip", "ping"], "unknown check 'ping' in --skip"),
])
def test_bad_arguments(catalogue: Path, args: list[str], needle: str) -> None:
    assert_user_error(run_cli("run", "--catalogue", str(catalogue), *args), needle)


@pytest.mark.parametrize("command", ["status", "audit"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e10"])
def test_timeouts_are_finite(command: str, value: str) -> None:
    assert_user_error(run_cli(command, "--timeout", value), "--timeout: must be a")


def test_a_disk_without_room_for_the_pass_is_refused_before_measuring(
        catalogue: Path, voipwatch_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """In this process (the disk's free space stands in for a full one)."""
    import shutil

    from probe.store import spool
    from probe.ui.cli import main

    usage = shutil.disk_usage(voipwatch_home.parent)
    monkeypatch.setattr(spool.shutil, "disk_usage", lambda _: usage._replace(free=20_000))
    assert main(["run", "--catalogue", str(catalogue), "--no-upload"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"voipwatch-probe: error: cannot write the spool {voipwatch_home / 'spool.sqlite3'}: "
        "only 20 kB free on its disk, a pass of 1 check needs about 37 kB (free some, or "
        "measure fewer services: --services)")
    assert not (voipwatch_home / "last-pass.json").exists()  # nothing was measured


def test_a_damaged_spool_is_a_clear_error(catalogue: Path, voipwatch_home: Path,
                                          probe_key: ProbeKey) -> None:
    """A spool with a damaged page: `run` measures nothing, `upload` and `status`
    say so; one sentence each, exit 2, no traceback."""
    from probe.core.signing import write_key
    from probe.store.spool import Spool
    from tests.probe.core.test_signing import sample_record

    voipwatch_home.mkdir(parents=True)
    write_key(probe_key, voipwatch_home / "probe.key")
    path = voipwatch_home / "spool.sqlite3"
    with Spool(path) as spool:
        for i in range(20):
            spool.add(probe_key.sign({**sample_record(probe_key),
                                      "id": f"0b7c5e4e-4a43-4c1f-9d51-{i:012d}"}))
        root = spool.db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records'"
                                ).fetchone()[0]
    with path.open("r+b") as file:
        file.seek((root - 1) * 4096)
        file.write(b"\xab" * 4096)
    for args in (("run", "--catalogue", str(catalogue), "--no-upload"),
                 ("upload", "--collector", "http://127.0.0.1:9"), ("status", "--offline")):
        result = run_cli(*args)
        assert_user_error(result, "cannot ", f" the spool {path}: database disk image is "
                          "malformed (`sqlite3")
        assert "internal error" not in result.stderr
    assert not (voipwatch_home / "last-pass.json").exists()


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
