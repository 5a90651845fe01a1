"""The controller process: one asyncio loop that polls the devices into the state model, logs, alarms, serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any

from drivers import registry
from drivers.base import DeviceError, PolledDevice, WriteNotAllowed
from drivers.gpio import InputPin, VehicleIO

from . import alarms as alarm_rules
from .alarms import AlarmManager
from .api import ApiError, Connection, Registry, SocketServer
from .config import Config
from .features import FEATURES
from .state import FIELDS, StateModel
from .store import Store

if TYPE_CHECKING:
    from kiosk.session import KioskManager

    from .checklist import Checklist
    from .mqtt.link import MqttLink

log = logging.getLogger("allervers")

TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"
SHORE_VOLTAGE_MIN = 180.0  # V: below this an AC input is not a usable shore supply

# Which state changes are worth an event in the log (transitions, not readings): "<component>.<field>".
TRANSITIONS: dict[tuple[str, str], str] = {(f.component, f.name): f"{f.component}.{f.name}" for f in FIELDS if f.logged}
# Numeric values folded into per-minute aggregates (history for supervision).
SAMPLED: dict[str, tuple[str, ...]] = {}
for _field in FIELDS:
    if _field.sampled:
        SAMPLED[_field.component] = (*SAMPLED.get(_field.component, ()), _field.name)
SHORE_METER_FIELDS = ("voltage_v", "current_a", "power_w", "frequency_hz", "energy_import_kwh")
VEHICLE_ROLES = {"ignition_pin": "ignition", "antenna_stowed_pin": "antenna_stowed", "door_pin": "door_open"}


def version() -> str:
    try:
        return metadata.version("allervers")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def clock_synced(flag: str = TIMESYNC_FLAG) -> bool:
    return os.path.exists(flag)


class DevicePoller:
    """Polls one device at its period; marks its component stale on failure and reopens with a capped backoff.

    One implementation for every polled device, so staleness and recovery behave the same everywhere.
    """

    def __init__(
        self,
        device: PolledDevice,
        component: str,
        poll_s: float,
        on_values: Callable[[dict[str, Any]], None],
        on_stale: Callable[[str], None],
        *,
        backoff_max_s: float = 8.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.device = device
        self.component = component
        self.poll_s = poll_s
        self.on_values = on_values
        self.on_stale = on_stale
        self.backoff_max_s = backoff_max_s
        self.monotonic = monotonic
        self.timeout_s = float(getattr(device, "poll_timeout_s", 0) or max(5.0, 3 * poll_s))
        self.is_open = False
        self.polls = 0
        self.failures = 0
        self.last_latency_s: float | None = None
        self.last_error: str | None = None
        self.answered = asyncio.Event()

    async def run(self) -> None:
        backoff = min(1.0, self.poll_s)
        while True:
            if not self.is_open:
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races a result,
                    # which would leave this loop running after stop().
                    async with asyncio.timeout(self.timeout_s):
                        await self.device.open()
                    self.is_open = True
                    backoff = min(1.0, self.poll_s)
                except (DeviceError, OSError, TimeoutError) as exc:
                    self._fail(exc)
                    await self._close()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
            started = self.monotonic()
            try:
                async with asyncio.timeout(self.timeout_s):
                    values = await self.device.poll()
            except (DeviceError, OSError, TimeoutError) as exc:
                self._fail(exc)
                await self._close()
                await asyncio.sleep(min(backoff, self.poll_s))
                continue
            self.last_latency_s = self.monotonic() - started
            self.polls += 1
            self.last_error = None
            self.on_values(values)
            self.answered.set()
            await asyncio.sleep(max(0.0, self.poll_s - self.last_latency_s))

    def _fail(self, exc: BaseException) -> None:
        self.failures += 1
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) and not isinstance(exc, DeviceError):
            reason = f"{self.device.name}: no answer within {self.timeout_s:.0f} s"
        if reason != self.last_error:
            log.warning("%s", reason)
        self.last_error = reason
        self.on_stale(reason)

    async def _close(self) -> None:
        self.is_open = False
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.device.close()


class Controller:
    """Builds everything from the config and runs it; ``stop()`` shuts down cleanly.

    Lifecycle hooks (Klipper-style) let features join without a fixed start-up order: ``on_ready`` runs once
    the first complete state is known, ``on_stop`` before the store closes.
    """

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time, timesync_flag: str = TIMESYNC_FLAG):
        self.config = config
        self.clock = clock
        self.timesync_flag = timesync_flag
        self.started_mono = time.monotonic()
        self.state = StateModel(clock)
        self.registry = Registry()
        self.store: Store | None = None
        self.alarms: AlarmManager | None = None
        self.io: VehicleIO | None = None
        self.pollers: dict[str, DevicePoller] = {}
        self.devices: dict[str, PolledDevice] = {}
        self.servers: list[SocketServer] = []
        self.simulation: Any = None
        self.features: dict[str, Any] = {}  # attached feature objects by name (firmware_host/features.py)
        self.tasks: list[asyncio.Task] = []
        self.ready = asyncio.Event()
        self.first_complete_s: float | None = None
        self.on_ready: list[Callable[[], Any]] = []
        self.on_stop: list[Callable[[], Awaitable[None] | None]] = []
        self._alarm_timer: asyncio.TimerHandle | None = None
        self._meter_values: dict[str, Any] = {}
        self._gpio_shore: bool | None = None
        self._stopping = False
        self._register_commands()

    # --- start-up ---

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.store = Store(
            cfg.storage.path,
            clock=self.clock,
            clock_synced=self.clock_synced,
            flush_s=cfg.storage.aggregate_flush_s,
            retention_days=cfg.storage.retention_days,
        )
        self.store.attach(loop)
        self.alarms = AlarmManager(self.state, self._emit, clock=self.clock)
        self.alarms.add_rules(
            alarm_rules.core_rules(
                inverter=cfg.inverter is not None,
                meter=cfg.shore_power.meter is not None,
                pin=cfg.shore_power.presence_pin is not None,
                low_soc=cfg.alarms.low_soc,
                disagree_after_s=cfg.alarms.disagree_after_s,
                devices=self._polled_device_names(),
            )
        )
        self.alarms.add_rules(self._brand_alarm_rules())
        self.alarms.on_change.append(self._alarms_changed)
        for component, section in (("power", cfg.inverter), ("modem", cfg.modem)):
            if section is None:
                self.state.mark_stale(component, "not configured")
        self.state.subscribe(self._state_changed)

        if cfg.simulation.embedded:
            from drivers.scenario import Simulation

            self.simulation = Simulation.from_config(cfg)
            await self.simulation.start()

        self._start_gpio(loop)
        self._build_devices()
        self.state.update("devices", {name: _health(answering=False) for name in self.pollers})
        self.state.update("controller", self._controller_values())
        self._update_shore()
        for name, poller in self.pollers.items():
            self.tasks.append(loop.create_task(poller.run(), name=f"poll-{name}"))
        self.tasks.append(loop.create_task(self._housekeeping(), name="housekeeping"))
        self.tasks.append(loop.create_task(self._wait_first_complete(), name="first-complete"))
        from .sdnotify import ServiceNotifier  # under systemd: READY=1, STATUS=, WATCHDOG=1 from this loop, STOPPING=1

        ServiceNotifier.attach_if_systemd(self)
        for feature in FEATURES:  # checklist, kiosk, mqtt (firmware_host/features.py)
            if getattr(cfg, feature.SECTION) is None or not hasattr(feature, "attach"):
                continue
            if (attached := await feature.attach(self)) is not None:
                self.features[feature.SECTION] = attached
        for name, path in (("control", cfg.api.control_socket), ("kiosk", cfg.api.kiosk_socket)):
            server = SocketServer(name, path, self.registry, max_line=cfg.api.max_line_bytes, mode=0o660)
            await server.start()
            self.servers.append(server)
        await self._emit(
            "controller.started",
            version=version(),
            vehicle=cfg.vehicle.id,
            simulated=bool(cfg.simulation.embedded),
        )

    def lookup(self, name: str) -> Any:
        """The attached feature ``name`` (checklist, kiosk, mqtt), or None when this bus does not run it."""
        return self.features.get(name)

    @property
    def checklist(self) -> Checklist | None:
        return self.features.get("checklist")

    @property
    def kiosk(self) -> KioskManager | None:
        return self.features.get("kiosk")

    @property
    def mqtt(self) -> MqttLink | None:
        return self.features.get("mqtt")

    def _brand_alarm_rules(self) -> list[alarm_rules.AlarmRule]:
        """The alarm rules each configured device's profile brings (e.g. the GX's VE.Bus alarms and error)."""
        cfg = self.config
        rules: list[alarm_rules.AlarmRule] = []
        for kind, name, section in (
            ("inverter", "inverter", cfg.inverter),
            ("meter", "shore_meter", cfg.shore_power.meter),
            ("modem", "modem", cfg.modem),
        ):
            if section is not None and (make := registry.get(kind, section.profile).alarm_rules) is not None:
                rules += make(name)
        return rules

    def _polled_device_names(self) -> list[str]:
        cfg = self.config
        present = (("inverter", cfg.inverter), ("shore_meter", cfg.shore_power.meter), ("modem", cfg.modem))
        return [name for name, section in present if section is not None]

    def _start_gpio(self, loop: asyncio.AbstractEventLoop) -> None:
        g = self.config.gpio
        inputs = {role: InputPin(g.get(key)) for key, role in VEHICLE_ROLES.items() if g.get(key) is not None}
        sp = self.config.shore_power
        if sp.presence_pin is not None:
            inputs["shore_presence"] = InputPin(sp.presence_pin, pull_up=False, active_high=sp.active_high)
        outputs = {}
        if self.config.modem is not None and self.config.modem.power_pin is not None:
            outputs["modem_power"] = self.config.modem.power_pin
        factory = g.pin_factory
        if self.simulation is not None and factory is None:
            factory = "mock"
        if not inputs and not outputs and g.buzzer_pin is None and g.status_led_pin is None:
            self.state.update("vehicle", {})
            return
        self.io = VehicleIO(
            factory=factory,
            inputs=inputs,
            buzzer_pin=g.buzzer_pin,
            status_led_pin=g.status_led_pin,
            outputs=outputs,
            debounce_s=g.debounce_s,
            debounce_overrides={"shore_presence": sp.debounce_s},
        )
        self.io.on_change = self._gpio_changed
        if self.simulation is not None:
            self.simulation.attach_gpio(self.io)  # before start(): the first reading already sees the sim's levels
        self.io.start(loop)
        self.state.update("vehicle", {})

    def _build_devices(self) -> None:
        # Every device comes from its registered profile (drivers/registry.py): no brand is named here.
        cfg = self.config
        if cfg.inverter is not None:
            device = registry.get("inverter", cfg.inverter.profile).build(cfg.inverter, "inverter")
            self._add_poller("inverter", device, "power", cfg.inverter.poll_s, self._inverter_values)
        meter_cfg = cfg.shore_power.meter
        if meter_cfg is not None:
            device = registry.get("meter", meter_cfg.profile).build(meter_cfg, "shore_meter")
            self._add_poller("shore_meter", device, "shore", meter_cfg.poll_s, self._meter_reading)
        if cfg.modem is not None:
            device = registry.get("modem", cfg.modem.profile).build(cfg.modem, "modem")
            device.on_change = lambda values: self.state.update("modem", values)
            if device.recovery is not None:
                # Hang recovery (drivers/modem_recovery.py): its steps are events; the power cut needs the pin.
                device.recovery.on_event = self._emit
                if self.io is not None:
                    device.recovery.power = self.io.outputs.get("modem_power")
            self._add_poller(
                "modem", device, "modem", cfg.modem.poll_s, lambda values: self.state.update("modem", values)
            )

    def _add_poller(
        self,
        name: str,
        device: PolledDevice,
        component: str,
        poll_s: float,
        on_values: Callable[[dict[str, Any]], None],
    ) -> None:
        self.devices[name] = device
        sampled = SAMPLED.get(component, ())

        def on_reading(values: dict[str, Any], component: str = component, name: str = name) -> None:
            if (self.state.value("devices", name) or {}).get("error") is not None and self.store is not None:
                self.store.append_event("device.fresh", device=name)
            # Every reading feeds the minute aggregates (memory only), changed or not.
            if self.store is not None:
                for key in sampled:
                    if values.get(key) is not None:
                        self.store.add_sample(f"{component}.{key}", values[key])
            failing = dict(getattr(device, "failing", None) or {})
            self.state.update("devices", {name: _health(answering=True, failing=failing)})
            on_values(values)

        def on_stale(reason: str, component: str = component, name: str = name) -> None:
            # Health is tracked per device, not per component: the shore component stays fresh on its other
            # sources while its meter is silent, and that silence is still an alarm.
            if (self.state.value("devices", name) or {}).get("error") is None and self.store is not None:
                self.store.append_event("device.stale", device=name, reason=reason)
            self.state.update("devices", {name: _health(answering=False, error=reason)})
            if name == "shore_meter":
                self._meter_values = {}
                self._update_shore(stale_reason=reason)
            elif name == "inverter":
                self.state.update(component, {}, fresh=False, stale_groups={})  # the whole of it is stale now
                self.state.mark_stale(component, reason)
                self._update_shore()
            else:
                self.state.mark_stale(component, reason)

        self.pollers[name] = DevicePoller(device, component, poll_s, on_reading, on_stale)

    async def _wait_first_complete(self) -> None:
        await asyncio.gather(*(p.answered.wait() for p in self.pollers.values()))
        self.first_complete_s = time.monotonic() - self.started_mono
        self.ready.set()
        log.info("first complete state after %.2f s", self.first_complete_s)
        for hook in list(self.on_ready):
            result = hook()
            if asyncio.iscoroutine(result):
                await result

    # --- readings into the state model ---

    def _inverter_values(self, values: dict[str, Any]) -> None:
        failing = getattr(self.devices["inverter"], "failing", None) or {}
        self.state.update("power", values, stale_groups=failing)
        self._update_shore()

    def _meter_reading(self, values: dict[str, Any]) -> None:
        self._meter_values = values
        self._update_shore()

    def _gpio_changed(self, role: str, value: bool) -> None:
        if role == "shore_presence":
            self._gpio_shore = value
        else:
            self.state.update("vehicle", {role: value})
        if role in ("shore_presence", "ignition"):
            self._update_shore()

    def _update_shore(self, stale_reason: str | None = None) -> None:
        """Derive ``shore`` from every configured source into the state (see ``derive_shore``)."""
        cfg = self.config
        power = self.state.get("power")
        values, reason = derive_shore(
            pin_configured=cfg.shore_power.presence_pin is not None,
            meter_configured=cfg.shore_power.meter is not None,
            inverter_configured=cfg.inverter is not None,
            pin=self._gpio_shore,
            meter=self._meter_values,
            inverter=None if power["stale"] else power,
            ignition=self.state.value("vehicle", "ignition"),
            leaving="checklist" in self.state.components and self.state.value("checklist", "phase") == "departure",
            previous=self.state.get("shore"),
        )
        self.state.update("shore", values, fresh=reason is None)
        if reason is not None:
            self.state.mark_stale("shore", stale_reason or reason)

    # --- reactions ---

    def _state_changed(self, component: str, changed: dict[str, Any], full: dict[str, Any]) -> None:
        store = self.store
        if store is None:
            return
        if component == "checklist" and "phase" in changed and self.state.value("shore", "lost_while_parked"):
            self._update_shore()  # a departure starting forgets the plug, as the ignition does
        for key, value in changed.items():
            etype = TRANSITIONS.get((component, key))
            if etype is not None and not (value is None and full.get("stale")):
                store.append_event(etype, value=value)
        if component != "controller" and self.alarms is not None:
            self.alarms.evaluate()
            self._arm_alarm_timer()

    def _arm_alarm_timer(self) -> None:
        assert self.alarms is not None
        deadline = self.alarms.next_deadline()
        if self._alarm_timer is not None:
            self._alarm_timer.cancel()
            self._alarm_timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._alarm_timer = loop.call_later(deadline + 0.01, self._alarm_tick)

    def _alarm_tick(self) -> None:
        self._alarm_timer = None
        assert self.alarms is not None
        self.alarms.evaluate()
        self._arm_alarm_timer()

    def _alarms_changed(self) -> None:
        assert self.alarms is not None
        self.state.update("controller", {"alarms": self.alarms.as_list()})
        if self.io is not None:
            self.io.set_buzzer(self.alarms.buzzer_wanted)
            severities = {a.severity for a in self.alarms.active.values()}
            self.io.set_status_led("alarm" if severities & {"alarm", "critical"} else "warning" if severities else "ok")

    def _emit(self, etype: str, **data: Any) -> asyncio.Future:
        assert self.store is not None
        return self.store.append_event(etype, **data)

    def clock_synced(self) -> bool:
        return clock_synced(self.timesync_flag)

    def _controller_values(self) -> dict[str, Any]:
        return {
            "version": version(),
            "uptime_s": round(time.monotonic() - self.started_mono),
            "clock_synced": self.clock_synced(),
            "alarms": self.alarms.as_list() if self.alarms else [],
        }

    async def _housekeeping(self) -> None:
        was_synced = self.clock_synced()
        while True:
            await asyncio.sleep(60)
            synced = self.clock_synced()
            if synced != was_synced:
                await self._emit("clock.synced" if synced else "clock.unsynced", ts_after=self.clock())
                was_synced = synced
            self.state.update("controller", self._controller_values())

    # --- API ---

    def snapshot(self) -> dict[str, Any]:
        snap = self.state.snapshot()
        snap["controller"]["uptime_s"] = round(time.monotonic() - self.started_mono)
        return snap

    def _register_commands(self) -> None:
        r = self.registry
        r.add(
            "ping",
            lambda a, c: {"pong": True, "vehicle": self.config.vehicle.id},
            ("control", "kiosk"),
            "check the controller answers",
        )
        r.add("status", self._cmd_status, ("control",), "the whole state model")
        r.add("subscribe", self._cmd_subscribe, ("control",), "stream state changes and events")
        r.add("alarms", lambda a, c: self.alarms.as_list() if self.alarms else [], ("control",), "active alarms")
        r.add("alarms.ack", self._cmd_ack, ("control",), "acknowledge alarms (silences the buzzer)")
        r.add("events", self._cmd_events, ("control",), "events after a seq")
        r.add("inverter.mode", self._cmd_inverter_mode, ("control",), "set the inverter mode (allow_writes)")
        r.add("sim.set", self._cmd_sim_set, ("control",), "drive simulated inputs (embedded simulation only)")
        r.add("sim.get", self._cmd_sim_get, ("control",), "read simulated inputs")
        r.add("stats", self._cmd_stats, ("control",), "poll counters and latencies, start-up time, writes")
        r.add(
            "help",
            lambda a, c: {n: cmd.help for n, cmd in sorted(r.commands.items()) if c.socket_name in cmd.sockets},
            ("control", "kiosk"),
            "list commands",
        )

    def _cmd_stats(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        devices = {}
        for name, poller in self.pollers.items():
            device = poller.device
            devices[name] = {
                "polls": poller.polls,
                "failures": poller.failures,
                "last_latency_s": poller.last_latency_s,
                "last_error": poller.last_error,
                "requests_last_poll": getattr(device, "requests_last_poll", None),
                "requests_total": getattr(device, "requests_total", None),
            }
        store = self.store
        return {
            "first_complete_s": self.first_complete_s,
            "devices": devices,
            "events_written": store.events_written if store else 0,
            "last_seq": store.last_seq if store else 0,
            "pid": os.getpid(),
        }

    def _cmd_status(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        snap = self.snapshot()
        wanted = args.get("components")
        if wanted is None:
            return snap
        if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
            raise ApiError("components must be a list of component names")
        unknown = [w for w in wanted if w not in snap]
        if unknown:
            raise ApiError(f"unknown component(s): {', '.join(unknown)}")
        return {w: snap[w] for w in wanted}

    def _cmd_subscribe(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        components = args.get("components")
        if components is not None and (
            not isinstance(components, list) or not all(c in self.state.components for c in components)
        ):
            raise ApiError(f"components must be a list among {', '.join(self.state.components)}")
        want_events = args.get("events", True)
        if not isinstance(want_events, bool):
            raise ApiError("events must be true or false")

        def on_state(component: str, changed: dict[str, Any], full: dict[str, Any]) -> None:
            if components is None or component in components:
                conn.send({"type": "state", "component": component, "changed": changed, "values": full})

        conn.cleanups.append(self.state.subscribe(on_state))
        if want_events:
            assert self.store is not None
            conn.cleanups.append(self.store.subscribe(lambda e: conn.send({"type": "event", "event": e})))
        return self._cmd_status({"components": components} if components else {}, conn)

    def _cmd_ack(self, args: dict[str, Any], conn: Connection) -> list[str]:
        assert self.alarms is not None
        alarm_id = args.get("id")
        if alarm_id is not None and not isinstance(alarm_id, str):
            raise ApiError("id must be an alarm id string")
        try:
            return self.alarms.acknowledge(alarm_id)
        except KeyError:
            raise ApiError(f"no active alarm {alarm_id!r}") from None

    async def _cmd_events(self, args: dict[str, Any], conn: Connection) -> list[dict[str, Any]]:
        after, limit = args.get("after", 0), args.get("limit", 100)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ApiError("after must be a non-negative integer seq")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise ApiError("limit must be 1..1000")
        assert self.store is not None
        return await self.store.events_after(after, limit)

    async def _cmd_inverter_mode(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        return await self.set_inverter_mode(args.get("mode"))

    async def set_inverter_mode(self, mode: object) -> dict[str, Any]:
        """Write the inverter's mode (``[inverter] allow_writes``); ApiError naming why it was not written."""
        device = self.devices.get("inverter")
        if device is None:
            raise ApiError("no inverter configured")
        try:
            await device.set_mode(mode)  # type: ignore[attr-defined]
        except WriteNotAllowed as exc:
            raise ApiError(f"{exc} (set inverter.allow_writes = true)") from None
        except (DeviceError, ValueError) as exc:
            raise ApiError(str(exc)) from None
        await self._emit("inverter.mode_set", mode=mode, by="control socket")
        return {"mode": mode}

    def _cmd_sim_set(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        if self.simulation is None:
            raise ApiError("simulation is not running in this controller ([simulation] embedded = false)")
        try:
            return self.simulation.set_many(args)
        except (KeyError, ValueError, TypeError) as exc:
            raise ApiError(str(exc).strip("'\"")) from None

    def _cmd_sim_get(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        if self.simulation is None:
            raise ApiError("simulation is not running in this controller ([simulation] embedded = false)")
        return self.simulation.get_all()

    # --- shutdown ---

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for hook in reversed(self.on_stop):
            with contextlib.suppress(Exception):
                result = hook()
                if asyncio.iscoroutine(result):
                    await result
        for server in self.servers:
            await server.stop()
        await cancel_and_wait(self.tasks)
        for poller in self.pollers.values():
            await poller._close()
        if self._alarm_timer is not None:
            self._alarm_timer.cancel()
        if self.io is not None:
            self.io.close()
        if self.simulation is not None:
            await self.simulation.stop()
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self._emit("controller.stopped", uptime_s=round(time.monotonic() - self.started_mono))
            await self.store.close()


def derive_shore(
    *,
    pin_configured: bool,
    meter_configured: bool,
    inverter_configured: bool,
    pin: bool | None,
    meter: dict[str, Any],
    inverter: dict[str, Any] | None,
    ignition: bool | None,
    previous: dict[str, Any],
    leaving: bool = False,
) -> tuple[dict[str, Any], str | None]:
    """The ``shore`` component from its sources: (values, None) or (values, why it is stale). No side effect.

    ``meter`` is the meter's last reading ({} while it is silent), ``inverter`` the power component while it is
    fresh, ``previous`` the shore component as it was. Any source saying "plugged in" counts: the drive-away
    interlock must err on the side of the cable. ``lost_while_parked`` remembers, in the state itself, that the
    cable was in while parked and is now out; the ignition and ``leaving`` (the departure checklist running, which
    asks for the unplugging) forget it: unplugging to drive away is normal.
    """
    sources: dict[str, bool | None] = {"pin": None, "meter": None, "inverter": None}
    if pin_configured:
        sources["pin"] = pin
    if meter_configured and meter.get("voltage_v") is not None:
        sources["meter"] = meter["voltage_v"] > SHORE_VOLTAGE_MIN
    if inverter_configured and inverter is not None and inverter.get("active_input") is not None:
        volts = inverter.get("ac_in_v")
        sources["inverter"] = inverter["active_input"] != "disconnected" and (
            volts is None or volts > SHORE_VOLTAGE_MIN
        )
    known = [v for v in sources.values() if v is not None]
    connected = any(known) if known else None
    lost = bool(previous.get("lost_while_parked"))
    if connected or ignition or leaving:
        lost = False
    elif connected is False:
        lost = lost or previous.get("connected") is True
    values = {
        "connected": connected,
        "sources": sources,
        "lost_while_parked": lost,
        **{k: meter.get(k) for k in SHORE_METER_FIELDS},
    }
    if known:
        return values, None
    configured = [
        k for k, on in (("pin", pin_configured), ("meter", meter_configured), ("inverter", inverter_configured)) if on
    ]
    return values, "not configured" if not configured else f"no reading yet from {', '.join(configured)}"


def _health(*, answering: bool, error: str | None = None, failing: dict[str, str] | None = None) -> dict[str, Any]:
    """A device's entry in the ``devices`` component."""
    return {"answering": answering, "error": error, "failing": failing or {}}


async def cancel_and_wait(tasks: list[asyncio.Task], rounds: int = 20) -> None:
    """Cancel tasks and wait until they are done, cancelling again any that swallowed the first cancel."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.5)
    for task in pending:
        log.error("task %s did not stop when cancelled", task.get_name())


async def run(config: Config, *, stop_event: asyncio.Event | None = None) -> Controller:
    """Run the controller until ``stop_event`` is set or SIGTERM/SIGINT arrives."""
    import signal

    controller = Controller(config)
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await controller.start()
        await stop.wait()
    finally:
        await controller.stop()
    return controller
