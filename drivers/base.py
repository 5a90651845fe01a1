"""What every device driver shares: the error hierarchy and the poll contract the controller relies on."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class DeviceError(IOError):
    """A device did not answer, answered an error, or answered something we cannot decode.

    The message always names the device and the thing that failed (register, command, reply), e.g.
    ``inverter: register 31 (/State): exception 2 (illegal data address)``.
    """

    def __init__(self, device: str, detail: str):
        super().__init__(f"{device}: {detail}")
        self.device = device
        self.detail = detail


class DeviceTimeout(DeviceError, TimeoutError):
    """The device did not answer in time (silent, unplugged, or a slow command past its timeout)."""


class DeviceGone(DeviceError):
    """The transport itself went away (serial device unplugged, TCP connection refused or reset)."""


class WriteNotAllowed(DeviceError, PermissionError):
    """A write was asked for while the configuration does not allow writes to this device."""


@runtime_checkable
class PolledDevice(Protocol):
    """The contract between a driver and the controller's generic poller.

    The controller calls ``open()``, then ``poll()`` every ``poll_s``; a ``DeviceError`` from either marks the
    component stale, and the poller closes the device and reopens it later with a capped backoff. ``poll()``
    returns the component's values in state-model names (see README, "State model"), already scaled to
    V, A, Hz, W, %, °C; ``None`` for unknown.
    """

    name: str

    async def open(self) -> None: ...

    async def poll(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...
