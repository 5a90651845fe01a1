"""A real Mosquitto broker for the tests: started on a free loopback port, stoppable, restartable, killable."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SHIPPED_CONF = Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "allervers.conf"
FLOW_OPTIONS = ("max_inflight_messages", "max_queued_messages")


def fleet_flow_control() -> str:
    """The flow-control lines of the shipped fleet broker config (in-flight limit, that is the Receive Maximum the
    buses get, and the per-client queue): every test broker runs with them, so that drains and catch-ups are
    tested as they run at the office."""
    lines = [line for line in SHIPPED_CONF.read_text().splitlines() if line.split(" ")[0] in FLOW_OPTIONS]
    assert len(lines) == len(FLOW_OPTIONS), f"{SHIPPED_CONF} no longer sets {', '.join(FLOW_OPTIONS)}"
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One ``mosquitto`` process on 127.0.0.1:``port`` with the fleet's flow control; ``extra`` lines go into its
    config after those (ACL, TLS, another in-flight limit...).

    The port is kept across ``stop()``/``start()`` so clients can reconnect to "the same broker after a restart".
    """

    def __init__(
        self,
        workdir: Path,
        *,
        extra: str = "",
        anonymous: bool = True,
        port: int | None = None,
        conf: str | None = None,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.anonymous = anonymous
        if conf is not None and os.geteuid() == 0:
            # Started as root, mosquitto becomes user "mosquitto" and could not read the test's private files.
            conf += "\nuser root\n"
        self.conf = conf  # a whole config file instead of the test default (it must listen on self.port)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"mosquitto-{self.port}.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / f"mosquitto-{self.port}.conf"

    def start(self, timeout: float = 10.0) -> Broker:
        # Started as root, mosquitto becomes user "mosquitto" and could not read the test's private files.
        self.config_path.write_text(
            self.conf
            if self.conf is not None
            else f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            "persistence false\n"
            f"{fleet_flow_control()}"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            f"{self.extra}\n" + ("user root\n" if os.geteuid() == 0 and "\nuser " not in f"\n{self.extra}" else "")
        )
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}{log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- certificates for TLS brokers (a throwaway CA per test) --------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> Path:
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    return d / f"{name}.crt"


def sign(d: Path, name: str, ca: str, extensions: str) -> Path:
    """``name``.csr signed by ``ca`` (``ca``.crt and ``ca``.key in ``d``) with ``extensions``: ``name``.crt."""
    (d / f"{name}.ext").write_text(extensions)
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
        cwd=d,
    )  # fmt: skip
    return d / f"{name}.crt"


def make_server_cert(d: Path, ca: str, name: str, san: str) -> tuple[Path, Path]:
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=d,
    )  # fmt: skip
    return sign(d, name, ca, f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n"), d / f"{name}.key"


def make_chain(d: Path, san: str) -> tuple[Path, Path, Path]:
    """A certificate chain as a public CA issues it (RSA 2048: root, intermediate, server): (root certificate,
    server certificate followed by the intermediate, server key). What a bus pays for a full TLS handshake."""
    rsa = ("-newkey", "rsa:2048", "-nodes")
    openssl(
        "req", "-x509", *rsa, "-keyout", "root.key", "-out", "root.crt", "-subj", "/CN=Fleet Root", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    openssl("req", *rsa, "-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=Fleet Issuing CA 1", cwd=d)
    sign(d, "int", "root", "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")
    openssl("req", *rsa, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=broker", cwd=d)
    sign(d, "leaf", "int", f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    chain = d / "chain.crt"
    chain.write_text((d / "leaf.crt").read_text() + (d / "int.crt").read_text())
    return d / "root.crt", chain, d / "leaf.key"


# --- a client on the office side ---------------------------------------------------------------------------


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    properties: Any = None
    at: float = 0.0  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.payload)


class Watcher:
    """A paho MQTT 5 client that records everything it receives (thread-safe), for assertions."""

    def __init__(
        self,
        port: int,
        filters: tuple[str, ...] | list[str] = ("#",),
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        ca_file: str | None = None,
    ):
        self.port = port
        self.filters = list(filters)
        self.client_id = client_id or f"watcher-{uuid.uuid4().hex[:8]}"
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.messages: list[Received] = []
        self.acks: dict[int, str] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.tls = ca_file is not None
        if ca_file is not None:
            self.client.tls_set(ca_certs=ca_file)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_publish = self._on_publish

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure and self.filters:
            client.subscribe([(f, 1) for f in self.filters])
        elif not self.filters:
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Received(
                    message.topic,
                    message.payload,
                    bool(message.retain),
                    getattr(message, "properties", None),
                    time.monotonic(),
                )
            )

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            self.acks[mid] = str(rc)

    def start(self, timeout: float = 5.0) -> Watcher:
        props = Properties(PacketTypes.CONNECT)
        if self.session_expiry_s:
            props.SessionExpiryInterval = self.session_expiry_s
        host = "localhost" if self.tls else "127.0.0.1"  # the test certificates name localhost
        self.client.connect(host, self.port, 30, clean_start=self.clean_start, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise RuntimeError(f"watcher {self.client_id}: no SUBACK within {timeout} s")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def received(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def events(self, prefix: str = "allervers/bus-test") -> list[dict[str, Any]]:
        return [m.json() for m in self.received(f"{prefix}/events")]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def publish(self, topic: str, payload: bytes | str, *, properties: Any = None, retain: bool = False) -> int:
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        info.wait_for_publish(5)
        return info.mid


def seqs_in_order(events: list[dict[str, Any]]) -> list[int]:
    """The seqs in first-arrival order (a re-sent event after a reconnect is a duplicate, not a new arrival)."""
    seen: set[int] = set()
    out = []
    for e in events:
        if e["seq"] not in seen:
            seen.add(e["seq"])
            out.append(e["seq"])
    return out


# --- a TCP proxy in front of the broker: counts bytes, can freeze the link or add latency ----------------------


PUBLISH, PUBACK = 3, 4


class PacketHeaders:
    """Splits one direction of an MQTT byte stream into packets: ``feed(bytes)`` gives (packet type, QoS) for each
    packet completed so far (fixed header only: the type, the flags, the variable-length remaining length)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        buf = self._buf
        buf += data
        out = []
        start = 0
        while len(buf) - start >= 2:
            length, shift, i = 0, 0, start + 1
            while i < len(buf) and buf[i] & 0x80:
                length |= (buf[i] & 0x7F) << shift
                shift += 7
                i += 1
            if i >= len(buf):
                break  # the remaining length is not all here yet
            length |= buf[i] << shift
            end = i + 1 + length
            if end > len(buf):
                break  # the body is not all here yet
            out.append((buf[start] >> 4, (buf[start] >> 1) & 3))
            start = end
        del buf[:start]
        return out


class Proxy:
    """127.0.0.1:``port`` -> 127.0.0.1:``target``. ``bytes_up``/``bytes_down`` count every byte of every MQTT packet
    (client to broker, broker to client); ``freeze()`` stops forwarding (a link that hangs without closing);
    ``latency_s`` delays every byte by that much one way (a satellite hop), without limiting throughput.
    ``max_in_flight``: the most QoS 1 PUBLISHes from clients that the broker had not acknowledged yet, as seen on
    the wire and summed over the proxy's connections (use one client at a time). A lower bound of what the client
    had outstanding: it can hide a client's excess, never invent one."""

    def __init__(self, target: int, *, latency_s: float = 0.0):
        self.target = target
        self.latency_s = latency_s
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
                self._socks += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, "up"), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, "down"), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        if self.latency_s:
            line: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
            threading.Thread(target=self._deliver, args=(line, src, dst), daemon=True).start()
        packets = PacketHeaders()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                with self._lock:
                    # Counted as it arrives, before it is passed on: the broker cannot acknowledge a PUBLISH
                    # the proxy has not received yet, so the count never goes below zero.
                    if direction == "up":
                        self.bytes_up += len(data)
                        self.in_flight += sum(kind == PUBLISH and qos == 1 for kind, qos in packets.feed(data))
                        self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    else:
                        self.bytes_down += len(data)
                        self.in_flight -= sum(kind == PUBACK for kind, _ in packets.feed(data))
                if self.latency_s:
                    line.put((time.monotonic() + self.latency_s, data))  # a delay line, not a throttle
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            if self.latency_s:
                line.put(None)
            else:
                self._shut(src, dst)

    def _deliver(self, line: queue.Queue, src: socket.socket, dst: socket.socket) -> None:
        try:
            while (item := line.get()) is not None:
                due, data = item
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._shut(src, dst)

    @staticmethod
    def _shut(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    @property
    def total_bytes(self) -> int:
        return self.bytes_up + self.bytes_down

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Drop every open connection (a link that dies)."""
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        self._server.close()
        self.cut()


# --- synthetic buses: one client publishing for many prefixes (the 500-bus tests and benchmark) ----------------


def synthetic_state(i: int, round_no: int) -> dict[str, dict[str, Any]]:
    """Plausible states for bus number ``i``: some buses have problems (alarms, low battery, link down)."""
    now = time.time()
    soc = 20.0 + (i * 7 + round_no) % 80
    alarms = (
        [{"id": "interlock.antenna_up", "severity": "critical", "since": now, "message": "dish up"}]
        if i % 97 == 0
        else []
    )
    return {
        "power": {"soc": soc, "battery_v": 24.0 + soc / 25, "state": "bulk", "ts": now, "stale": False},
        "shore": {"connected": i % 3 == 0, "ts": now, "stale": False},
        "modem": {"link": "down" if i % 50 == 0 else "up", "signal_bars": i % 6, "ts": now, "stale": False},
        "controller": {"version": "0.1.0", "alarms": alarms, "ts": now, "stale": False},
        "kiosk": {
            "open": i % 2 == 0,
            "locked": False,
            "sessions_today": (i + round_no) % 12,
            "ts": now,
            "stale": False,
        },
    }


def publish_fleet(
    port: int,
    buses: int,
    rounds: int = 1,
    *,
    root: str = "allervers",
    offline_every: int = 0,
    rate: float | None = None,
) -> int:
    """Publish status and five states for ``buses`` synthetic buses, ``rounds`` times, as fast as possible or at
    ``rate`` messages per second; returns messages sent. Blocks until the broker acknowledged the last one (run it
    in a thread or another process next to an app under test)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    sent = 0
    info = None
    try:
        for round_no in range(rounds):
            for i in range(buses):
                prefix = f"{root}/bus-{i:03d}"
                offline = offline_every and i % offline_every == 0
                info = client.publish(f"{prefix}/status", b"offline" if offline else b"online", qos=1, retain=True)
                sent += 1
                for component, values in synthetic_state(i, round_no).items():
                    info = client.publish(f"{prefix}/state/{component}", json.dumps(values), qos=1, retain=True)
                    sent += 1
                    if rate:
                        time.sleep(1 / rate)
        if info is not None:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()
    return sent
