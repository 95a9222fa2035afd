"""The collector's container image for tests/deploy/test_container.py, built
with podman from deploy/container/Containerfile on a Debian bookworm root made
with debootstrap (no image registry is reachable here).

Building takes minutes of downloads and unpacking and little CPU, so when a
session is going to run the container tests it starts the build in the
background as soon as the tests are collected (tests/conftest.py), and the
tests wait for it: the same build, overlapped with the tests before them.
With pytest-xdist the controller builds (it lives as long as the session; a
worker may finish early) and writes the outcome to a status file that the
worker running the tests waits for."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BASE_IMAGE = "localhost/voipwatch-test-base:bookworm"
IMAGE = "localhost/voipwatch-collector:test"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""
TEST_MODULE = "tests/deploy/test_container.py"  # every test in it runs the image
STATUS_KEY = "voipwatch_image_status"  # the status file's path, in an xdist worker's input


def needed(nodeids: Iterable[str]) -> bool:
    return any(nodeid.startswith(TEST_MODULE + "::") for nodeid in nodeids)


def status_path() -> Path:
    """Where this process (the xdist controller) writes the build's outcome."""
    return Path(tempfile.gettempdir()) / f"voipwatch-image-{os.getpid()}.json"


class ImageBuildError(Exception):
    """A step of the build failed; the message says which and ends with its output."""


class MissingTool(ImageBuildError):
    """A command the build needs is not installed."""


def missing_tool(command: str, package: str) -> MissingTool:
    return MissingTool(f"{command} is needed (apt-get install {package}; "
                       "deploy/install-system-deps.sh)")


def podman_env(directory: Path) -> dict[str, str]:
    """podman's environment with the test's containers.conf: this sandbox's kernel
    has cgroups in hybrid mode (crun refuses them; runc runs) and no
    CAP_SYS_RESOURCE (podman's default ulimits cannot be applied; lower ones are)."""
    for command, package in (("podman", "podman"), ("runc", "runc")):
        if shutil.which(command) is None:
            raise missing_tool(command, package)
    conf = directory / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def debian_mirror() -> str:
    return os.environ.get("VOIPWATCH_DEBIAN_MIRROR", "http://deb.debian.org/debian")


class _Build:
    """One build at a time, in a daemon thread; `stop` ends the step running."""

    def __init__(self) -> None:
        self.result: Future[str] = Future()
        self._process: subprocess.Popen[str] | None = None
        self.stopped = False
        self._lock = threading.Lock()

    def run(self, *args: str, timeout: float, env: dict[str, str] | None = None,
            stdin: int | None = None) -> str:
        with self._lock:
            if self.stopped:
                raise ImageBuildError("the test session ended before the image was built")
            self._process = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True, env=env)
        try:
            output, _ = self._process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            output, _ = self._process.communicate()
            raise ImageBuildError(f"{args[0]} {args[1]}: no end after {timeout:.0f} s: "
                                  f"{output[-3000:]}") from None
        if self._process.returncode != 0:
            raise ImageBuildError(f"{' '.join(args[:2])} failed: {output[-3000:]}")
        return output

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            if self._process is not None and self._process.poll() is None:
                self._process.kill()

    def build(self) -> str:
        with tempfile.TemporaryDirectory(prefix="vw-image-") as scratch:
            env = podman_env(Path(scratch))
            exists = subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=env,
                                    capture_output=True).returncode == 0
            if not exists:
                self._base(Path(scratch), env)
            ca = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
            self.run("podman", "build", "--build-arg", f"BASE={BASE_IMAGE}",
                     "--build-arg", "PIP_CERT=/etc/host-ca.crt",
                     "--volume", f"{ca}:/etc/host-ca.crt:ro",
                     "-f", str(ROOT / "deploy" / "container" / "Containerfile"), "-t", IMAGE,
                     str(ROOT), timeout=1800, env=env)
        return IMAGE

    def _base(self, scratch: Path, env: dict[str, str]) -> None:
        """Debian bookworm with Python 3.11 and venv, imported once per machine."""
        if shutil.which("debootstrap") is None:
            raise missing_tool("debootstrap", "debootstrap")
        root = scratch / "bookworm"
        self.run("debootstrap", "--variant=minbase",
                 "--include=python3,python3-venv,ca-certificates", "bookworm", str(root),
                 debian_mirror(), timeout=900)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            assert tar.stdout is not None
            self.run("podman", "import", "-", BASE_IMAGE, env=env, stdin=tar.stdout.fileno(),
                     timeout=600)
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait()
        shutil.rmtree(root, ignore_errors=True)


_current: _Build | None = None


def start(status: Path | None = None) -> Future[str]:
    """Start building (once per session); the future holds the image's name. With
    `status`, the outcome is also written there for other processes."""
    global _current
    if _current is None:
        build = _current = _Build()

        def work() -> None:
            try:
                build.result.set_result(build.build())
                outcome: dict[str, object] = {"image": IMAGE}
            except BaseException as exc:  # the tests report it when they ask for the image
                build.result.set_exception(exc)
                outcome = {"error": str(exc), "missing": isinstance(exc, MissingTool)}
            if status is not None and not build.stopped:  # none left behind after the session
                scratch = status.with_suffix(".tmp")
                scratch.write_text(json.dumps(outcome))
                scratch.replace(status)  # whole or absent: a reader never sees half

        threading.Thread(target=work, name="container-image", daemon=True).start()
    return _current.result


def wait_for(status: Path, timeout: float = 3600) -> str:
    """The image another process is building (the xdist controller): its name once
    the status file says it is built."""
    deadline = time.monotonic() + timeout
    while not status.exists():
        if time.monotonic() > deadline:
            raise ImageBuildError(f"no image after {timeout:.0f} s ({status} never written)")
        time.sleep(1)
    outcome = json.loads(status.read_text())
    if "image" in outcome:
        return str(outcome["image"])
    raise (MissingTool if outcome["missing"] else ImageBuildError)(outcome["error"])


def stop() -> None:
    """The session ends: a build still running is ended (its step killed), and the
    status file written for other processes removed."""
    if _current is not None and not _current.result.done():
        _current.stop()
    status_path().unlink(missing_ok=True)
