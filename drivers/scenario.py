"""Every simulator together, on the transports the config names, driven by a scenario clock and `sim.set`.

The scenario is a small physical model of a bus at a stop: a battery bank charged from shore power through the
inverter/charger and drained by the bus's loads without it, a shore socket read by a meter and a presence
contact, a modem whose signal wanders, and now and then an inverter warning. ``speed`` compresses time so a
demo shows the battery moving. Faults are injected per device (``<device>.fault``), the modem can be unplugged.

``sim.set`` keys (also listed by ``sim.get``):
  shore.connected          plug/unplug the shore cable (meter, inverter AC-in and presence pin together)
  gpio.<role>              ignition, antenna_stowed, door_open, shore_presence (mock pins of the controller)
  inverter.<value>         any value the GX driver reads, by its name (``inverter.soc``, ``inverter.mode``,
                           ``inverter.alarms.low_battery``, ``inverter.monitor_soc``); physics keys (soc,
                           load_w, battery_temp_c) steer the model, others are held until released
  inverter.system_fault    the GX's system service alone (unit 100): null, "silent", "exception", "garbage"
  meter.<value>            any value the meter driver reads (voltage_v, power_w...), held until released
  modem.<state>            rssi, ber, reg_stat, operator, ip, sbdreg, service, antenna_fault
  <device>.fault           inverter / meter / modem: null, "silent", "exception", "garbage" (modem: "cme",
                           "hung": only a power cycle through modem.power_pin cures it)
  modem.plugged            false unplugs the modem (pty gone), true plugs it back
  scenario.paused          stop the clock (tests use this for exact values)
  scenario.speed           simulated seconds per real second
  scenario.release         a held key (e.g. "inverter.ac_in_v") or "all"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import registry
from .modbus import MapSimulator, Register
from .modem_sim import ModemSimulator

log = logging.getLogger("allervers.sim")

BATTERY_AH = 400.0  # 24 V lithium bank typical of a France Services bus
NOMINAL_V = 24.0
CHARGER_MAX_A = 50.0
GPIO_ROLES = ("ignition", "antenna_stowed", "door_open", "shore_presence")


@dataclass
class Physics:
    """The scenario's own variables; the simulators' register values are derived from them every tick."""

    shore: bool = True
    soc: float = 72.0
    load_w: float = 450.0
    battery_temp_c: float = 19.0
    energy_kwh: float = 1532.4
    warning_left_s: float = 0.0


class Simulation:
    """Starts the simulators the config describes and runs the scenario clock.

    Build with ``Simulation.from_config(cfg)``; ``await start()``; ``set_many({...})`` / ``get_all()``;
    ``attach_gpio(io)`` lets ``gpio.*`` and ``shore.connected`` drive the controller's mock pins.
    """

    def __init__(
        self,
        *,
        gx: tuple[str, int, registry.DeviceProfile, Any] | None,
        meter: tuple[str, int, registry.DeviceProfile, Any] | None,
        modem: tuple[str, str] | None,
        modem_sysfs: str | None = None,
        speed: float = 1.0,
        seed: int | None = None,
        tick_s: float = 1.0,
    ):
        self.rng = random.Random(seed)
        self.speed = speed
        self.tick_s = tick_s
        self.paused = False
        self.physics = Physics()
        self.held: dict[str, Any] = {}
        self._unheld: dict[str, Any] = {}  # a held key's value before it was first held, put back on release
        self.io: Any = None
        self._gx_addr, self._meter_addr, self._modem_addr = gx, meter, modem
        # (host, port, profile, simulator): each simulator comes from its configured profile (drivers/registry.py).
        self.gx = gx[3] if gx else None
        self.meter = meter[3] if meter else None
        self._profiles = {"inverter": gx[2] if gx else None, "meter": meter[2] if meter else None}
        self.modem = ModemSimulator(modem[1], csq_delay_s=1.0, urc_rate=0.05, seed=seed) if modem else None
        self.modem_plugged = True
        self._modem_sysfs = modem_sysfs
        self._task: asyncio.Task | None = None
        self._last = time.monotonic()
        self.ticks = 0
        self.last_change: tuple[float, str] | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> Simulation:
        gx = meter = modem = None
        if cfg.inverter is not None:
            if cfg.inverter.transport != "tcp":
                raise ValueError(
                    f"{cfg.source}: inverter.transport: the GX simulator speaks Modbus-TCP, "
                    f"got {cfg.inverter.transport!r}"
                )
            gx = (cfg.inverter.host, cfg.inverter.port, *_simulator("inverter", cfg.inverter, cfg.source))
        m = cfg.shore_power.meter
        if m is not None:
            if m.transport != "rtu-over-tcp":
                raise ValueError(
                    f"{cfg.source}: shore_power.meter.transport: the meter simulator sits behind an "
                    f"RS-485/Ethernet gateway (rtu-over-tcp), got {m.transport!r}"
                )
            meter = (m.host, m.port, *_simulator("meter", m, cfg.source))
        sysfs = None
        if cfg.modem is not None:
            modem = (cfg.modem.port, cfg.modem.profile)
            # A sysfs path of its own (not the kernel's) gets a modelled USB bus: the recovery's re-enumeration
            # step then replugs the simulated modem.
            if cfg.modem.sysfs != "/sys":
                sysfs = cfg.modem.sysfs
        return cls(
            gx=gx,
            meter=meter,
            modem=modem,
            modem_sysfs=sysfs,
            speed=cfg.simulation.speed,
            seed=cfg.simulation.seed,
        )

    # --- lifecycle ---

    async def start(self) -> None:
        self._apply_physics(0.0)
        if self.gx and self._gx_addr:
            await self.gx.start(self._gx_addr[0], self._gx_addr[1])
        if self.meter and self._meter_addr:
            await self.meter.start(self._meter_addr[0], self._meter_addr[1])
        if self.modem and self._modem_addr:
            port = self._modem_addr[0]
            if port.startswith("socket://"):
                host, _, num = port.removeprefix("socket://").rpartition(":")
                self.modem.start_tcp(host or "127.0.0.1", int(num))
            else:
                Path(port).parent.mkdir(parents=True, exist_ok=True)
                self.modem.start_pty(port)
                if self._modem_sysfs:
                    self.modem.start_sysfs(self._modem_sysfs)
        self._last = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="scenario")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.gx:
            await self.gx.stop()
        if self.meter:
            await self.meter.stop()
        if self.modem:
            await asyncio.get_running_loop().run_in_executor(None, self.modem.stop)

    def describe(self) -> list[str]:
        lines = []
        if self.gx and self._gx_addr:
            lines.append(f"inverter: {self._gx_addr[2].title} on {self._gx_addr[0]}:{self.gx.port}")
        if self.meter and self._meter_addr:
            host = self._meter_addr[0]
            lines.append(f"shore meter: {self._meter_addr[2].title} (RTU over TCP) on {host}:{self.meter.port}")
        if self.modem and self._modem_addr:
            lines.append(f"modem: {self.modem.profile} AT modem on {self._modem_addr[0]}")
        return lines

    def attach_gpio(self, io: Any) -> None:
        """Let the scenario drive the controller's mock inputs (embedded mode only)."""
        self.io = io
        if "shore_presence" in io.inputs:
            io.drive("shore_presence", self.physics.shore)
        if self.modem is not None and "modem_power" in io.outputs:
            self.modem.attach_power_pin(io.outputs["modem_power"].pin)  # the controller's power cut reaches it

    # --- the clock ---

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            elapsed, self._last = now - self._last, now
            if not self.paused:
                self.step(elapsed * self.speed)

    def step(self, dt: float) -> None:
        """Advance the model by ``dt`` simulated seconds."""
        p = self.physics
        self.ticks += 1
        p.load_w = max(150.0, min(2500.0, p.load_w + self.rng.gauss(0, 15)))
        if p.shore:
            charge_a = CHARGER_MAX_A * (1.0 if p.soc < 85 else max(0.05, (100 - p.soc) / 15))
            battery_a = charge_a if p.soc < 100 else 0.0
        else:
            battery_a = -p.load_w / self._battery_v(p.soc, 0)
        p.soc = max(0.0, min(100.0, p.soc + battery_a * dt / 3600 / BATTERY_AH * 100))
        p.battery_temp_c += self.rng.gauss(0, 0.02) + (0.01 if abs(battery_a) > 30 else -0.005) * dt / 60
        p.battery_temp_c = max(-5.0, min(45.0, p.battery_temp_c))
        if p.shore:
            p.energy_kwh += (p.load_w + max(0.0, battery_a) * 27) * dt / 3_600_000
        # Now and then (about once per simulated 6 hours) the inverter warns of a high temperature for a while.
        if p.warning_left_s > 0:
            p.warning_left_s = max(0.0, p.warning_left_s - dt)
        elif self.rng.random() < dt / (6 * 3600):
            p.warning_left_s = 600.0
        if self.modem is not None and self.modem_plugged and "modem.rssi" not in self.held:
            self._wander_signal()
        self._apply_physics(battery_a)

    def _wander_signal(self) -> None:
        assert self.modem is not None
        rssi = self.modem.state.rssi
        if self.modem.profile == "iridium":
            new = max(0, min(5, rssi + self.rng.choice((-1, 0, 0, 0, 1))))
        else:
            new = 17 if rssi == 99 else max(5, min(28, rssi + self.rng.choice((-1, 0, 0, 1))))
        if new != rssi:
            self.modem.set(rssi=new)

    @staticmethod
    def _battery_v(soc: float, battery_a: float) -> float:
        return NOMINAL_V + 2.6 * soc / 100 + 0.004 * battery_a

    def _apply_physics(self, battery_a: float) -> None:
        p = self.physics
        noise = self.rng.gauss
        volts_in = 230.0 + noise(0, 0.6) if p.shore else 0.0
        charge_w = max(0.0, battery_a) * self._battery_v(p.soc, battery_a)
        in_w = p.load_w + charge_w if p.shore else 0.0
        if self.gx is not None:
            # The GX serves Victron's paths and raw enumeration numbers (see drivers/victron_gx_registers.csv).
            vebus, system = self.gx.values["vebus"], self.gx.values["system"]
            state = (3 if p.soc < 85 else 4 if p.soc < 99 else 5) if p.shore else 9  # bulk/absorption/float/inv.
            battery_v = self._battery_v(p.soc, battery_a)
            vebus.update(
                {
                    "/Ac/ActiveIn/L1/V": round(volts_in, 1),
                    "/Ac/ActiveIn/L1/I": round(in_w / 230, 1) if p.shore else 0.0,
                    "/Ac/ActiveIn/L1/F": round(50 + noise(0, 0.01), 2) if p.shore else 0.0,
                    "/Ac/ActiveIn/L1/P": round(in_w),
                    "/Ac/Out/L1/V": round(230.0 + noise(0, 0.4), 1),
                    "/Ac/Out/L1/I": round(p.load_w / 230, 1),
                    "/Ac/Out/L1/F": round(50 + noise(0, 0.01), 2),
                    "/Ac/Out/L1/P": round(p.load_w),
                    "/Ac/ActiveIn/ActiveInput": 0 if p.shore else 240,
                    "/Dc/0/Voltage": round(battery_v, 2),
                    "/Dc/0/Current": round(battery_a, 1),
                    "/Dc/0/Temperature": round(p.battery_temp_c, 1),
                    "/Soc": round(p.soc, 1),
                    "/State": state,
                    "/Alarms/LowBattery": 2 if p.soc < 10 else 1 if p.soc < 15 else 0,
                    "/Alarms/HighTemperature": 1 if p.warning_left_s > 0 else 0,
                }
            )
            system.update(
                {
                    "/Ac/ActiveIn/Source": 3 if p.shore else 240,
                    "/Ac/Consumption/L1/Power": round(p.load_w),
                    "/Dc/Battery/Voltage": round(battery_v, 1),
                    "/Dc/Battery/Current": round(battery_a, 1),
                    "/Dc/Battery/Power": round(battery_a * battery_v),
                    "/Dc/Battery/Soc": round(p.soc),
                    "/Dc/Battery/State": 1 if battery_a > 0.5 else 2 if battery_a < -0.5 else 0,
                }
            )
        if self.meter is not None:
            # By the meter driver's names, whatever the brand: each lands on its simulator's register.
            readings = {
                "voltage_v": round(volts_in, 1),
                "current_a": round(in_w / 230, 2) if p.shore else 0.0,
                "power_w": round(in_w, 1),
                "frequency_hz": round(50 + noise(0, 0.01), 2) if p.shore else 0.0,
                "energy_import_kwh": round(p.energy_kwh, 3),
            }
            for name, value in readings.items():
                if (point := self._point("meter", name)) is not None:
                    point.set(value)
        for key, value in self.held.items():
            device, _, name = key.partition(".")
            point = self._point(device, name)
            if point is not None:
                point.set(value)

    def _point(self, device: str, name: str) -> _Point | None:
        """The simulated register a driver value name stands for (None when unknown or not simulated)."""
        return next((p for p in self._points(device) if p.register.name == name), None)

    def _points(self, device: str) -> list[_Point]:
        """Every value the device's driver reads, pointed at its simulator's register."""
        sim, profile = {"inverter": self.gx, "meter": self.meter}.get(device), self._profiles.get(device)
        if sim is None or profile is None:
            return []
        return [_Point(sim, service, r) for service, table in profile.sim_points for r in table.registers]

    # --- sim.set / sim.get ---

    def set_many(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply ``{key: value}`` changes (all validated first, so a bad key changes nothing)."""
        if not changes:
            raise ValueError('give at least one key, e.g. {"gpio.ignition": true}')
        actions = [self._plan(key, value) for key, value in changes.items()]
        for action in actions:
            action()
        self.last_change = (time.time(), ", ".join(f"{k}={json.dumps(v)}" for k, v in changes.items()))
        if any(k.startswith(("inverter.", "meter.", "shore.", "scenario.release")) for k in changes):
            self._apply_physics(self._current_battery_a())
        return {key: value for key, value in changes.items()}

    def _current_battery_a(self) -> float:
        return float(self.gx.values["vebus"].get("/Dc/0/Current") or 0.0) if self.gx is not None else 0.0

    def _plan(self, key: str, value: Any) -> Any:
        device, _, name = key.partition(".")
        if not name:
            raise KeyError(f"{key!r}: expected <device>.<name>, e.g. gpio.ignition")
        if device == "gpio":
            if name not in GPIO_ROLES:
                raise KeyError(f"{key}: unknown GPIO input (known: {', '.join(GPIO_ROLES)})")
            _need_bool(key, value)
            if self.io is None or name not in self.io.inputs:
                raise KeyError(f"{key}: no such GPIO input configured in this controller")
            return lambda: self.io.drive(name, value)
        if device == "shore" and name == "connected":
            _need_bool(key, value)
            return lambda: self._set_shore(value)
        if device == "scenario":
            return self._plan_scenario(key, name, value)
        if device in ("inverter", "meter"):
            sim = self.gx if device == "inverter" else self.meter
            if sim is None:
                raise KeyError(f"{key}: no {device} simulator is running")
            if name == "fault":
                return _fault_setter(key, sim, value, ("silent", "exception", "garbage"))
            if device == "inverter" and name == "system_fault":
                assert self.gx is not None
                _fault_setter(key, sim, value, ("silent", "exception", "garbage"))
                return lambda: self.gx.set_unit_fault(self.gx.system_unit, value)
            if device == "inverter" and name in ("soc", "load_w", "battery_temp_c"):
                _need_number(key, value, 0 if name != "battery_temp_c" else -40, 100 if name == "soc" else 10000)
                return lambda: setattr(self.physics, name, float(value))
            point = self._point(device, name)
            if point is None:
                known = ", ".join(p.register.name for p in self._points(device))
                raise KeyError(f"{key}: unknown {device} value (known: {known})")
            point.check(key, value)
            return lambda: self._hold(key, point, value)
        if device == "modem":
            if self.modem is None:
                raise KeyError(f"{key}: no modem simulator is running")
            if name == "fault":
                return _fault_setter(key, self.modem, value, ("garbage", "silent", "cme", "hung"))
            if name == "plugged":
                _need_bool(key, value)
                return lambda: self._plug_modem(value)
            known = {f for f in self.modem.state.__dataclass_fields__}
            if name not in known:
                raise KeyError(f"{key}: unknown modem value (known: {', '.join(sorted(known))}, plugged, fault)")
            if name == "rssi":
                return lambda: (self.modem.set(rssi=value), self.held.__setitem__("modem.rssi", value))
            return lambda: self.modem.set(**{name: value})
        raise KeyError(f"{key}: unknown device {device!r} (gpio, shore, inverter, meter, modem, scenario)")

    def _plan_scenario(self, key: str, name: str, value: Any) -> Any:
        if name == "paused":
            _need_bool(key, value)
            return lambda: setattr(self, "paused", value)
        if name == "speed":
            _need_number(key, value, 0.1, 3600)
            return lambda: setattr(self, "speed", float(value))
        if name == "release":
            if value == "all":
                return self._release_all
            if not isinstance(value, str) or value not in self.held:
                raise KeyError(
                    f'{key}: {json.dumps(value)} is not a held key (held: {", ".join(self.held) or "none"}; or "all")'
                )
            return lambda: self._release(value)
        raise KeyError(f"{key}: unknown (scenario.paused, scenario.speed, scenario.release)")

    def _hold(self, key: str, point: _Point, value: Any) -> None:
        self._unheld.setdefault(key, point.get())
        self.held[key] = value

    def _release(self, key: str) -> None:
        """Stop holding ``key``: the model's own value comes back (or, for what the model does not drive, such
        as the mode or an overload, the value from before the hold)."""
        self.held.pop(key, None)
        device, _, name = key.partition(".")
        point = self._point(device, name)
        if point is not None and key in self._unheld:
            point.set(self._unheld[key])
        self._unheld.pop(key, None)

    def _release_all(self) -> None:
        for key in list(self.held):
            self._release(key)

    def _release_all(self) -> None:
        for key in list(self.held):
            self._release(key)

    def _set_shore(self, connected: bool) -> None:
        self.physics.shore = connected
        if self.io is not None and "shore_presence" in self.io.inputs:
            self.io.drive("shore_presence", connected)

    def _plug_modem(self, plugged: bool) -> None:
        if plugged and not self.modem_plugged:
            self.modem.replug()
        elif not plugged and self.modem_plugged:
            self.modem.unplug()
        self.modem_plugged = plugged

    def get_all(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scenario.paused": self.paused,
            "scenario.speed": self.speed,
            "shore.connected": self.physics.shore,
            "held": dict(self.held),
        }
        if self.io is not None:
            out.update({f"gpio.{role}": self.io.read(role) for role in self.io.inputs})
        for device, sim in (("inverter", self.gx), ("meter", self.meter)):
            if sim is not None:
                out.update({f"{device}.{p.register.name}": p.get() for p in self._points(device)})
                out[f"{device}.fault"] = sim.fault
        if self.gx is not None:
            out["inverter.system_fault"] = self.gx.unit_faults.get(self.gx.system_unit)
        if self.modem is not None:
            state = self.modem.state
            out.update({f"modem.{k}": getattr(state, k) for k in state.__dataclass_fields__})
            out["modem.fault"] = self.modem.fault
            out["modem.plugged"] = self.modem_plugged
        return out


@dataclass(frozen=True)
class _Point:
    """A driver's value name pointed at the simulator's register for it: the driver's name, the maker's path.

    This is the one place the scenario meets our tables, so ``sim.set inverter.mode=off`` reads as the state
    does; the simulator itself only knows the maker's list.
    """

    sim: MapSimulator
    service: str
    register: Register

    def check(self, key: str, value: Any) -> None:
        try:
            self.register.encode(value)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None

    def set(self, value: Any) -> None:
        raw = self.register.enum_raw(value) if self.register.enum is not None and value is not None else value
        self.sim.values[self.service][self.register.path] = raw

    def get(self) -> Any:
        raw = self.sim.values[self.service].get(self.register.path)
        if self.register.enum is not None and raw is not None:
            return self.register.enum.get(int(raw), f"unknown_{raw}")
        return raw


def _simulator(kind: str, section: Any, source: str) -> tuple[registry.DeviceProfile, Any]:
    """The configured profile and its simulator."""
    profile = registry.get(kind, section.profile)
    if profile.simulator is None:
        raise ValueError(f"{source}: {kind} profile {profile.name!r} has no simulator")
    return profile, profile.simulator(section)


def _need_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{key}: must be true or false, got {value!r}")


def _need_number(key: str, value: Any, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{key}: must be a number {lo}..{hi}, got {value!r}")


def _fault_setter(key: str, sim: Any, value: Any, allowed: tuple[str, ...]) -> Any:
    if value is not None and value not in allowed:
        raise ValueError(f"{key}: must be null or one of {', '.join(allowed)}, got {value!r}")
    return lambda: setattr(sim, "fault", value)
