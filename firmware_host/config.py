"""Load and validate the bus's TOML config against a declarative schema; every error names file and key."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .features import schema_sections
from .schema import ArrayOf, ConfigError, Key, Table, resolve_path, type_name

__all__ = ["Config", "ConfigError", "Section", "iter_keys", "load", "validate"]

DEFAULT_CONFIG_PATH = "/etc/allervers/allervers.toml"


# --- the view handed to the rest of the program --------------------------------------------------------------


class Section:
    """Read-only attribute view of a validated table: ``cfg.inverter.unit``."""

    def __init__(self, name: str, values: dict[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"config section [{self._name}] has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("config is read-only")

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.as_dict() if isinstance(v, Section) else v) for k, v in self._values.items()}


class Config(Section):
    """The whole validated config; optional sections that are absent read as ``None``."""

    def __init__(self, values: dict[str, Any], source: str, base_dir: Path, source_path: str | None = None):
        super().__init__("", values)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "base_dir", base_dir)
        object.__setattr__(self, "source_path", source_path or source)

    def __getattr__(self, key: str) -> Any:
        if key in SCHEMA:
            return self._values.get(key)
        raise AttributeError(f"config has no section {key!r}")


def _wrap(name: str, value: Any) -> Any:
    if isinstance(value, dict):
        return Section(name, {k: _wrap(f"{name}.{k}", v) for k, v in value.items()})
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [_wrap(name, v) for v in value]
    return value


# --- validation --------------------------------------------------------------------------------------------


def _validate_table(table: Table, raw: Any, path: str, source: str, base_dir: Path) -> dict[str, Any]:
    def where(key: str) -> Callable[[str], ConfigError]:
        return lambda problem: ConfigError(source, key, problem)

    if not isinstance(raw, dict):
        raise ConfigError(source, path, f"must be a table, got {type_name(raw)}")
    keys = table.keys_for(raw, where(_join(path, "profile")), base_dir)
    for key in raw:
        if key not in keys:
            known = ", ".join(sorted(keys))
            raise ConfigError(source, _join(path, key), f"unknown key (known keys: {known})")
    out: dict[str, Any] = {}
    for key, spec in keys.items():
        kpath = _join(path, key)
        if isinstance(spec, Table):
            if key in raw:
                out[key] = _validate_table(spec, raw[key], kpath, source, base_dir)
            elif not spec.optional:
                out[key] = _validate_table(spec, {}, kpath, source, base_dir)
            else:
                out[key] = None
        elif isinstance(spec, ArrayOf):
            items = raw.get(key, spec.default)
            if not isinstance(items, list):
                raise ConfigError(source, kpath, f"must be an array of tables ([[{kpath}]]), got {type_name(items)}")
            out[key] = [
                _validate_table(spec.table, item, f"{kpath}[{i}]", source, base_dir) for i, item in enumerate(items)
            ]
            if spec.unique:
                seen: set = set()
                for i, item in enumerate(out[key]):
                    if item[spec.unique] in seen:
                        raise ConfigError(
                            source, f"{kpath}[{i}].{spec.unique}", f"duplicate value {item[spec.unique]!r}"
                        )
                    seen.add(item[spec.unique])
        elif key in raw:
            out[key] = spec.validate(raw[key], where(kpath), base_dir)
        elif spec.required:
            raise ConfigError(source, kpath, "is required")
        else:
            default = spec.default() if callable(spec.default) else spec.default
            if spec.kind == "path" and isinstance(default, str):
                default = resolve_path(default, base_dir)
            out[key] = default
    if table.check is not None and (problem := table.check(out)):
        key, text = problem
        raise ConfigError(source, _join(path, key), text)
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def validate(
    raw: dict[str, Any],
    source: str = "<config>",
    base_dir: Path | None = None,
    source_path: str | None = None,
) -> Config:
    """Validate an already-parsed TOML document against SCHEMA."""
    base = base_dir or Path.cwd()
    values = _validate_table(Table(SCHEMA), raw, "", source, base)
    _check_cross_section(values, source)
    wrapped = {k: _wrap(k, v) for k, v in values.items()}
    return Config(wrapped, source, base, source_path)


def load(path: str | os.PathLike | None = None) -> Config:
    """Load the config from ``path``, else ``$ALLERVERS_CONFIG``, else the system default, else built-in defaults."""
    chosen = path or os.environ.get("ALLERVERS_CONFIG")
    if not chosen:
        if not Path(DEFAULT_CONFIG_PATH).exists():
            return validate({}, "<built-in defaults>", Path.cwd())
        chosen = DEFAULT_CONFIG_PATH
    p = Path(chosen)
    name = p.name
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "", f"not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"TOML syntax error: {exc}") from None
    return validate(raw, name, p.resolve().parent, str(p))


def iter_keys(table: Table | None = None, prefix: str = "") -> Iterator[str]:
    """Every key path of the schema (used to check that the shipped example documents them all)."""
    table = table or Table(SCHEMA)
    keys = dict(table.keys)
    for variant in (table.variants or {}).values():
        keys.update(variant)
    for key, spec in keys.items():
        path = _join(prefix, key)
        if isinstance(spec, Table):
            yield from iter_keys(spec, path)
        elif isinstance(spec, ArrayOf):
            yield from iter_keys(spec.table, path)
        else:
            yield path


# --- the schema itself -------------------------------------------------------------------------------------


def _modbus_transport_check(t: dict[str, Any]) -> tuple[str, str] | None:
    if t["transport"] in ("tcp", "rtu-over-tcp") and not t["host"]:
        return "host", f"is required with transport = {t['transport']!r}"
    if t["transport"] == "rtu" and not t["serial_port"]:
        return "serial_port", "is required with transport = 'rtu'"
    return None


def _profile_variants(kind: str) -> dict[str, dict[str, Any]]:
    # Each registered profile's own keys (drivers/registry.py), e.g. the GX's system_unit.
    from drivers import registry

    return {
        name: {key: Key(**spec) for key, spec in profile.config_keys.items()}
        for name, profile in registry.profiles(kind).items()
    }


def _profile_key(kind: str) -> Key:
    from drivers import registry

    names = tuple(registry.profiles(kind))
    return Key(str, names[0], choices=names)


def _modbus_keys(
    kind: str,
    default_unit: int,
    default_transport: str,
    default_port: int,
    default_baud: int,
    poll_s: float,
) -> dict[str, Any]:
    return {
        "profile": _profile_key(kind),
        "transport": Key(str, default_transport, choices=("tcp", "rtu", "rtu-over-tcp")),
        "host": Key(str, ""),
        "port": Key(int, default_port, min=1, max=65535),
        "serial_port": Key(str, ""),
        "baudrate": Key(int, default_baud, choices=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)),
        "unit": Key(int, default_unit, min=1, max=247),
        "poll_s": Key(float, poll_s, min=0.2, max=3600),
        "timeout_s": Key(float, 1.0, min=0.1, max=30),
    }


def _pin(default: int | None = None) -> Key:
    # BCM numbers of the 40-pin header; gpiozero also accepts names, but numbers keep configs unambiguous.
    return Key(int, default, min=0, max=27)


def _recovery_order(m: dict[str, Any]) -> tuple[str, str] | None:
    if not m["recovery_at_reset_s"] < m["recovery_usb_reset_s"] < m["recovery_power_cut_s"]:
        return "recovery_usb_reset_s", (
            "the recovery steps must come in order: recovery_at_reset_s < recovery_usb_reset_s < "
            f"recovery_power_cut_s, got {m['recovery_at_reset_s']:g}, {m['recovery_usb_reset_s']:g}, "
            f"{m['recovery_power_cut_s']:g}"
        )
    return None


SCHEMA: dict[str, Any] = {
    "vehicle": Table(
        {
            "id": Key(str, "bus-01", pattern=r"[a-z0-9-]{1,32}"),
            "name": Key(str, "Bus France Services"),
        }
    ),
    "modem": Table(
        {
            "port": Key(str, required=True),
            "baudrate": Key(int, 115200, choices=(9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)),
            "profile": _profile_key("modem"),
            "poll_s": Key(float, 10.0, min=0.2, max=3600),
            "timeout_s": Key(float, 5.0, min=0.1, max=60),
            # Hang recovery (drivers/modem_recovery.py): seconds of silence before each step.
            "recovery_at_reset_s": Key(float, 15.0, min=1, max=3600),
            "recovery_usb_reset_s": Key(float, 40.0, min=1, max=3600),
            "recovery_power_cut_s": Key(float, 75.0, min=1, max=3600),
            "usb_device": Key(str, "auto", pattern=r"auto|[0-9]+-[0-9.]+|"),
            "sysfs": Key("path", "/sys"),
            "power_pin": _pin(),
            "power_off_s": Key(float, 5.0, min=0.1, max=60),
        },
        optional=True,
        check=_recovery_order,
        variants=_profile_variants("modem"),
    ),
    "inverter": Table(
        {
            **_modbus_keys("inverter", 227, "tcp", 502, 115200, 2.0),
            "allow_writes": Key(bool, False),
        },
        optional=True,
        check=_modbus_transport_check,
        variants=_profile_variants("inverter"),
    ),
    "shore_power": Table(
        {
            "presence_pin": _pin(),
            "active_high": Key(bool, True),
            "debounce_s": Key(float, 0.3, min=0, max=10),
            "meter": Table(
                _modbus_keys("meter", 1, "rtu", 502, 9600, 5.0),
                optional=True,
                check=_modbus_transport_check,
                variants=_profile_variants("meter"),
            ),
        }
    ),
    "gpio": Table(
        {
            "pin_factory": Key(str, None, choices=("lgpio", "mock")),
            "ignition_pin": _pin(),
            "antenna_stowed_pin": _pin(),
            "door_pin": _pin(),
            "buzzer_pin": _pin(),
            "status_led_pin": _pin(),
            "debounce_s": Key(float, 0.1, min=0, max=10),
        }
    ),
    "storage": Table(
        {
            "path": Key("path", "/var/lib/allervers/allervers.db"),
            "aggregate_flush_s": Key(float, 300.0, min=10, max=3600),
            "retention_days": Key(int, 31, min=1, max=3650),
        }
    ),
    "api": Table(
        {
            "control_socket": Key("path", "/run/allervers/control.sock"),
            "kiosk_socket": Key("path", "/run/allervers/kiosk.sock"),
            "max_line_bytes": Key(int, 65536, min=1024, max=1048576),
        }
    ),
    "alarms": Table(
        {
            "low_soc": Key(float, 20.0, min=0, max=100),
            "disagree_after_s": Key(float, 15.0, min=0, max=600),
        }
    ),
    "simulation": Table(
        {
            "embedded": Key(bool, False),
            "speed": Key(float, 1.0, min=0.1, max=3600),
            "seed": Key(int, None),
        }
    ),
    **schema_sections(),
}


def _check_cross_section(values: dict[str, Any], source: str) -> None:
    gpio = values["gpio"]
    used: dict[int, str] = {}
    pins = [
        (f"gpio.{k}", gpio[k])
        for k in ("ignition_pin", "antenna_stowed_pin", "door_pin", "buzzer_pin", "status_led_pin")
    ]
    pins.append(("shore_power.presence_pin", values["shore_power"]["presence_pin"]))
    if values["modem"] is not None:
        pins.append(("modem.power_pin", values["modem"]["power_pin"]))
    for key, pin in pins:
        if pin is None:
            continue
        if pin in used:
            raise ConfigError(source, key, f"pin {pin} is already used by {used[pin]}")
        used[pin] = key
    api = values["api"]
    if api["control_socket"] == api["kiosk_socket"]:
        raise ConfigError(source, "api.kiosk_socket", "must differ from api.control_socket")
    for key in ("control_socket", "kiosk_socket"):
        if len(api[key].encode()) > 107:
            raise ConfigError(source, f"api.{key}", f"socket path too long for a Unix socket ({len(api[key])} > 107)")
