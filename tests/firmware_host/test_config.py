"""Config: the shipped files are valid and documented; bad input is refused with file and key named."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_host import config as config_mod
from firmware_host.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "bus.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["simulated.toml", "example-bus.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = config_mod.load(ROOT / "config" / name)
    assert re.fullmatch(r"[a-z0-9-]{1,32}", cfg.vehicle.id)


def test_example_documents_every_key() -> None:
    """config/example-bus.toml is the user documentation: every schema key appears there, with a comment."""
    text = (ROOT / "config" / "example-bus.toml").read_text()
    lines = text.splitlines()
    missing = []
    for path in config_mod.iter_keys():
        key = path.rsplit(".", 1)[-1]
        pattern = re.compile(rf"^\s*#?\s*{re.escape(key)}\s*=.*#", re.M)
        if not any(pattern.match(line) for line in lines):
            missing.append(path)
    assert not missing, f"keys not documented (with a comment) in config/example-bus.toml: {missing}"


def test_out_of_range_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[inverter]\nhost = "10.0.0.2"\nunit = 300\n')
    with pytest.raises(ConfigError) as err:
        config_mod.load(path)
    assert str(err.value) == "bus.toml: inverter.unit: must be 1..247, got 300"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[inverter]\nhost = 1\n", "bus.toml: inverter.host: must be str, got an integer 1"),
        ("[inverter]\nhots = 'x'\n", "bus.toml: inverter.hots: unknown key"),
        ("[inverter]\nport = 502\n", "bus.toml: inverter.host: is required with transport = 'tcp'"),
        ("[inverter]\nhost = 'gx'\ntransport = 'usb'\n", "bus.toml: inverter.transport: must be one of"),
        ("[vehicle]\nid = 'Bus 1'\n", "bus.toml: vehicle.id: must match [a-z0-9-]{1,32}, got 'Bus 1'"),
        ("[modem]\nbaudrate = 115200\n", "bus.toml: modem.port: is required"),
        ("[gpio]\nignition_pin = 17\ndoor_pin = 17\n", "bus.toml: gpio.door_pin: pin 17 is already used by"),
        ("[gpio]\nbuzzer_pin = true\n", "bus.toml: gpio.buzzer_pin: must be int, got a boolean True"),
        ("[mqtt]\nhost = 'broker.example.org'\ntls = false\n", "bus.toml: mqtt.tls: plaintext MQTT to"),
        ("[shore_power.meter]\ntransport = 'rtu'\n", "bus.toml: shore_power.meter.serial_port: is required"),
        ("bogus = 1\n", "bus.toml: bogus: unknown key"),
        ("[inverter\n", "bus.toml: TOML syntax error"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_mod.load(write(tmp_path, text))
    assert str(err.value).startswith(expected), str(err.value)


def test_mqtt_plaintext_allowed_to_loopback(tmp_path: Path) -> None:
    cfg = config_mod.load(write(tmp_path, "[mqtt]\nhost = '127.0.0.1'\ntls = false\n"))
    assert cfg.mqtt.tls is False and cfg.mqtt.deadbands.ac_v == 2.0


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    cfg = config_mod.load(write(tmp_path, "[storage]\npath = 'state/db.sqlite'\n"))
    assert cfg.storage.path == str(tmp_path / "state" / "db.sqlite")


def test_defaults_without_any_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALLERVERS_CONFIG", raising=False)
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", "/nonexistent/allervers.toml")
    cfg = config_mod.load(None)
    assert cfg.inverter is None and cfg.modem is None and cfg.api.control_socket == "/run/allervers/control.sock"


def test_env_variable_selects_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLERVERS_CONFIG", str(write(tmp_path, "[vehicle]\nid = 'bus-42'\n")))
    assert config_mod.load(None).vehicle.id == "bus-42"


def test_cli_check_exit_codes(tmp_path: Path) -> None:
    bad = write(tmp_path, "[inverter]\nhost = 'gx'\nunit = 300\n")
    run = subprocess.run(
        [sys.executable, "-m", "firmware_host.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == "bus.toml: inverter.unit: must be 1..247, got 300"
    good = subprocess.run(
        [sys.executable, "-m", "firmware_host.cli", "config", "check", str(ROOT / "config" / "example-bus.toml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout


def test_run_refuses_a_bad_config_before_starting(tmp_path: Path) -> None:
    bad = write(tmp_path, "[api]\ncontrol_socket = 'a.sock'\nkiosk_socket = 'a.sock'\n")
    run = subprocess.run(
        [sys.executable, "-m", "firmware_host.cli", "run", "-c", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == "bus.toml: api.kiosk_socket: must differ from api.control_socket"
    assert not (tmp_path / "a.sock").exists()


toml_scalars = st.one_of(
    st.integers(-(10**6), 10**6), st.booleans(), st.text(max_size=12), st.floats(allow_nan=False, allow_infinity=False)
)
sections = st.sampled_from(sorted(config_mod.SCHEMA))
keys = st.sampled_from(sorted({p.rsplit(".", 1)[-1] for p in config_mod.iter_keys()} | {"nope"}))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(sections, st.dictionaries(keys, toml_scalars, max_size=4), max_size=4))
def test_any_document_is_accepted_or_refused_clearly(raw: dict) -> None:
    try:
        cfg = config_mod.validate(raw, "fuzz.toml", Path("/tmp"))
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml: ")
        assert exc.key.split(".")[0] in config_mod.SCHEMA or exc.key == ""
    else:
        assert cfg.vehicle.id


def test_example_parses_as_plain_toml() -> None:
    raw = tomllib.loads((ROOT / "config" / "example-bus.toml").read_text())
    assert raw["inverter"]["unit"] == 227
