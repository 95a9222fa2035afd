"""probe.toml (probe/store/state.py): a malformed pinned collector key is refused
when the config is read, by every command, and a config that cannot be written
is a sentence naming it, never a traceback."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from probe.core.errors import UserError
from probe.store.state import ProbeConfig, check_key_file, load_config, save_config
from tests.conftest import in_ci, probe_command
from tests.support.tcp_servers import closed_port

KEY = base64.b64encode(bytes(range(32))).decode()


def cli(*args: str, home: Path | None = None,
        user: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if home is not None:
        env["VOIPWATCH_HOME"] = str(home)
    drop = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] \
        if user is not None else []
    return subprocess.run([*drop, *probe_command(), *args], capture_output=True, text=True,
                          timeout=120, env=env)


def user_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["!!!", "AAAA", "", base64.b64encode(b"x" * 31).decode(),
                                   KEY[:-1] + "!", KEY + "AAAA"])
def test_a_malformed_collector_key_is_refused_on_load(voipwatch_home: Path, value: str) -> None:
    voipwatch_home.mkdir(parents=True)
    url = f"http://127.0.0.1:{closed_port()}"
    (voipwatch_home / "probe.toml").write_text(f'collector = "{url}"\n'
                                               f'collector_key = "{value}"\n')
    with pytest.raises(UserError, match="collector_key is not a base64 Ed25519 public key"):
        load_config()
    # every command that reads the config, before it does anything else
    for command in (["status"], ["upload"], ["audit"], ["keygen"],
                    ["register", "--collector", url], ["setup", "--no-input", "--collector", url],
                    ["run", "--catalogue", "/dev/null", "--no-upload"]):
        user_error(cli(*command), "probe.toml: collector_key is not a base64 Ed25519 public "
                                  "key")
    assert not (voipwatch_home / "probe.key").exists()


def test_a_well_formed_collector_key_loads(voipwatch_home: Path) -> None:
    voipwatch_home.mkdir(parents=True)
    (voipwatch_home / "probe.toml").write_text(f'collector_key = "{KEY}"\n')
    assert load_config().collector_key == KEY


def test_an_unwritable_config_is_a_user_error(voipwatch_home: Path) -> None:
    voipwatch_home.mkdir(parents=True)
    (voipwatch_home / "probe.toml.tmp").mkdir()  # where the new config would be written
    with pytest.raises(UserError, match=r"cannot write the probe config .*probe\.toml: "):
        save_config(ProbeConfig(collector="http://127.0.0.1:1"))
    assert not (voipwatch_home / "probe.toml").exists()
    # setup writes the config before it sends anything
    user_error(cli("setup", "--no-input", "--collector", f"http://127.0.0.1:{closed_port()}"),
               f"cannot write the probe config {voipwatch_home / 'probe.toml'}: Is a directory")


def test_a_read_only_state_directory_as_an_ordinary_user(voipwatch_home: Path) -> None:
    """The state directory of another user (or read-only): as `nobody`, chmod 555."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        message = "root ignores file modes, and setpriv (util-linux) is not here to drop it"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    home = Path(tempfile.mkdtemp(prefix="vw-ro-"))
    try:
        home.chmod(0o755)
        assert cli("keygen", home=home).returncode == 0
        user = 65534 if os.geteuid() == 0 else None
        if user is not None:
            for path in (home, *home.iterdir()):
                os.chown(path, user, user)
        home.chmod(0o555)
        url = f"http://127.0.0.1:{closed_port()}"
        user_error(cli("setup", "--no-input", "--collector", url, home=home, user=user),
                   f"cannot write the probe config {home / 'probe.toml'}: Permission denied")
        assert sorted(p.name for p in home.iterdir()) == ["probe.key"]  # nothing left over
    finally:
        home.chmod(0o755)
        shutil.rmtree(home)


def test_a_configured_key_file_must_exist(voipwatch_home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "k"
    with pytest.raises(UserError, match=f"key_file {missing} does not exist"):
        check_key_file(ProbeConfig(key_file=missing))
    check_key_file(ProbeConfig())  # the default one is created on first use
    voipwatch_home.mkdir(parents=True)
    (voipwatch_home / "probe.toml").write_text(f'key_file = "{missing}"\n')
    loopback = tmp_path / "loopback.yaml"  # never the default catalogue here
    loopback.write_text("version: 1\nservices:\n  - id: loop\n    name: Loop\n    endpoints:\n"
                        "      - check: tcp\n        host: 127.0.0.1\n        port: 9\n"
                        "        role: call\n")
    for command in (("register", "--collector", "http://127.0.0.1:9"),
                    ("run", "--no-upload", "--catalogue", str(loopback))):
        refused = cli(*command)  # neither makes a new identity where the key should be
        assert refused.returncode == 2, refused.stderr
        assert f"key_file {missing} does not exist" in refused.stderr
        assert not missing.parent.exists()
    # keygen is how it is made, where probe.toml says
    made = cli("keygen")
    assert made.returncode == 0, made.stderr
    assert missing.exists()
