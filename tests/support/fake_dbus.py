"""A real `dbus-daemon --session` for the tests, and small fake NetworkManager
and ModemManager services on it, answering as their D-Bus API documents:
`org.freedesktop.DBus.Properties.Get/GetAll`, NetworkManager's `GetDevices`,
ModemManager's `org.freedesktop.DBus.ObjectManager.GetManagedObjects`.

Objects are plain data: {path: {interface: {property: (signature, value)}}}.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

from tests.support.voip import require

Objects = dict[str, dict[str, dict[str, tuple[str, Any]]]]

NM = "org.freedesktop.NetworkManager"
MM = "org.freedesktop.ModemManager1"


@contextlib.contextmanager
def session_bus() -> Iterator[str]:
    """A private session bus; its address (a short socket path: the limit is 108 bytes)."""
    require("dbus-daemon")
    directory = tempfile.mkdtemp(prefix="vw-dbus-")
    address = f"unix:path={directory}/bus"
    daemon = subprocess.Popen(["dbus-daemon", "--session", f"--address={address}", "--nofork",
                               "--nopidfile", "--print-address=1"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout is not None
        daemon.stdout.readline()  # printed once it listens
        yield address
    finally:
        daemon.terminate()
        daemon.wait(5)
        shutil.rmtree(directory, ignore_errors=True)


class FakeService:
    """Owns `names` on the bus and answers for `objects` from a thread. `delay`
    holds every answer back that long (a daemon that hangs)."""

    def __init__(self, address: str, names: list[str], objects: Objects,
                 devices: list[str] | None = None, delay: float = 0.0) -> None:
        self.address, self.names, self.objects = address, names, objects
        self.devices = devices or []
        self.delay = delay
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.calls: list[str] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self) -> FakeService:
        self.thread.start()
        assert self.ready.wait(5), "the fake service did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def serve(self) -> None:
        with open_dbus_connection(bus=self.address) as connection:
            for name in self.names:
                connection.send_and_get_reply(message_bus.RequestName(name), timeout=5)
            self.ready.set()
            while not self.stop.is_set():
                try:
                    message = connection.receive(timeout=0.05)
                except TimeoutError:
                    continue
                if message.header.message_type != MessageType.method_call:
                    continue
                if self.delay:
                    time.sleep(self.delay)
                connection.send(self.answer(message))

    def answer(self, message: Any) -> Any:
        fields = message.header.fields
        path, member = fields[HeaderFields.path], fields[HeaderFields.member]
        interface = fields.get(HeaderFields.interface)
        self.calls.append(f"{path} {interface}.{member}")
        known = self.objects.get(path, {})
        if interface == "org.freedesktop.DBus.Properties" and member == "Get":
            owner, prop = message.body
            if prop in known.get(owner, {}):
                return new_method_return(message, "v", (known[owner][prop],))
            return new_error(message, "org.freedesktop.DBus.Error.InvalidArgs", "s",
                             (f"no property {prop}",))
        if interface == "org.freedesktop.DBus.Properties" and member == "GetAll":
            return new_method_return(message, "a{sv}", (known.get(message.body[0], {}),))
        if member == "GetManagedObjects":
            managed = {p: i for p, i in self.objects.items() if p.startswith(path + "/")}
            return new_method_return(message, "a{oa{sa{sv}}}", (managed,))
        if member == "GetDevices":
            return new_method_return(message, "ao", (self.devices,))
        return new_error(message, "org.freedesktop.DBus.Error.UnknownMethod", "s",
                         (f"no method {member}",))
