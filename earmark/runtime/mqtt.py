"""MQTT sink (paho-mqtt): per-label retained ON/OFF states, event and scene JSON, availability, Home Assistant discovery.

Topics: ``PREFIX/<slug>/state`` (ON/OFF, retained), ``PREFIX/events`` and ``PREFIX/scenes`` (JSON),
``PREFIX/availability`` (online/offline, retained, with a last will). A slug is the label made topic-safe
(lower case, ``[a-z0-9_-]``; labels with ``#``, ``+``, ``/`` or spaces keep their name in the payloads).

Delivery (QoS 1, at least once to the broker):
- States are last-value: every label starts OFF, at most one state message per label is in flight, and on every
  (re)connect the current state of every label is published retained again, so after any outage the broker holds
  the current states. A state is never dropped while the daemon runs.
- Events and scenes published while the broker is away wait in paho's queue (at most ``buffer``; beyond it new
  ones are dropped and counted) and go out, in order, when the connection returns (counted as retried).
- At exit, what the broker has not acknowledged within ``drain_seconds`` is counted as dropped and logged.
The client id is ``PREFIX-HOSTNAME-PID`` (``--mqtt-client-id`` overrides it), so no two daemons take over each other's
connection, even on one host with one prefix; Home Assistant's device is ``PREFIX-HOSTNAME``, the same at every start.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections import deque

from earmark import __version__
from earmark.runtime.sinks import Delivery, to_json

logger = logging.getLogger(__name__)


def topic_slug(label: str) -> str:
    """A label as one topic level and a Home Assistant object id: lower case ``[a-z0-9_-]``."""
    return re.sub(r"[^a-z0-9_-]+", "_", label.lower()).strip("_") or "label"


def label_slugs(labels: tuple[str, ...]) -> dict[str, str]:
    """label -> a unique topic slug (``dog bark`` and ``dog/bark`` become ``dog_bark`` and ``dog_bark_2``)."""
    out: dict[str, str] = {}
    for label in labels:
        slug, n = topic_slug(label), 1
        while (slug if n == 1 else f"{slug}_{n}") in out.values():
            n += 1
        out[label] = slug if n == 1 else f"{slug}_{n}"
    return out


def device_id(prefix: str) -> str:
    """``PREFIX-HOSTNAME`` with characters every broker accepts: the daemon's lasting identity (Home Assistant's device)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{prefix}-{socket.gethostname()}").strip("-")


def default_client_id(prefix: str) -> str:
    """``PREFIX-HOSTNAME-PID``: two daemons on one host never take over each other's connection (sessions are clean,
    so a new id each start loses nothing)."""
    return f"{device_id(prefix)}-{os.getpid()}"


def check_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if not prefix or "#" in prefix or "+" in prefix:
        raise ValueError(f"--mqtt-prefix {prefix!r} must be a topic without wildcards (# or +); write e.g. --mqtt-prefix home/kitchen.")
    return prefix


def tls_context(ca: str | None = None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """Server verification against ``ca`` (default: the system's CAs) and an optional client certificate."""
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise ValueError(f"cannot load the MQTT TLS files ({err}); check --mqtt-tls-ca, --mqtt-cert and --mqtt-key.") from None
    return context


class MqttSink:
    """Publishes to an MQTT broker; see the module docstring for topics and delivery guarantees."""

    name = "mqtt"

    def __init__(self, host: str, port: int, prefix: str, labels: tuple[str, ...], *, username: str | None = None,
                 password: str | None = None, tls: ssl.SSLContext | None = None, client_id: str | None = None,
                 ha_discovery: bool = False, model_name: str = "", buffer: int = 1000, drain_seconds: float = 5.0):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise RuntimeError("--mqtt needs paho-mqtt: pip install 'earmark[mqtt]'.") from None
        self.host, self.port, self.prefix, self.labels = host, port, check_prefix(prefix), labels
        self.slugs = label_slugs(labels)
        self.client_id = client_id or default_client_id(self.prefix)
        self.device_id = client_id or device_id(self.prefix)
        self.ha_discovery, self.model_name, self.buffer, self.drain_seconds = ha_discovery, model_name, buffer, drain_seconds
        self.delivery = Delivery()
        self._tls = tls
        self._lock = threading.Lock()
        self._desired = {label: False for label in labels}  # the current state of every label: starts OFF
        # transitions not yet published, oldest first; its last entry is always _desired, so the last state a label
        # publishes is its current one, and a short ON pulse is never folded away while an earlier state is in flight
        self._transitions: dict[str, deque[bool]] = {label: deque() for label in labels}
        self._state_in_flight: dict[str, int] = {}  # label -> mid of its unacknowledged state message
        # mid -> (kind, label, ON?) until the broker acknowledges; kind: "event", "state" or "control" (availability,
        # discovery: re-sent at every connect, so never counted)
        self._pending: dict[int, tuple[str, str | None, bool | None]] = {}
        self._acked_early: set[int] = set()  # acknowledgements that overtook publish() returning the mid
        self._connected = self._closing = False
        self._connects = 0
        self._failing: str | None = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if username:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set_context(tls)
        self.client.will_set(f"{self.prefix}/availability", "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    # --- callbacks (paho's network thread; never call paho while holding self._lock) ---

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if reason.is_failure:
            self._report(f"MQTT broker {self.host}:{self.port} refused the connection ({reason}); "
                         "check --mqtt-user and the password (--mqtt-password-file or EARMARK_MQTT_PASSWORD)")
            return
        with self._lock:
            self._connected = True
            self._connects += 1
            waiting = self._waiting()
            replay = [label for label in self.labels if label not in self._state_in_flight]
        if self._connects > 1 and waiting:
            self.delivery.add("retried", waiting)
        logger.info(f"MQTT {'re' if self._connects > 1 else ''}connected to {self.host}:{self.port} as {self.client_id}"
                 + (f"; re-sending {waiting} waiting messages" if waiting else ""))
        self._failing = None
        self._publish(f"{self.prefix}/availability", "online", True, "control")
        if self.ha_discovery:
            for label in self.labels:
                self._publish(self._discovery_topic(label), json.dumps(self._discovery(label)), True, "control")
        for label in replay:  # states whose last message was acknowledged: publish again (a broker may lose retained ones)
            self._send_state(label, replay=True)

    def _on_connect_fail(self, client, userdata) -> None:
        self._report(f"MQTT broker {self.host}:{self.port} unreachable ({self._why()}); retrying with back-off, "
                     f"events wait in a buffer of {self.buffer}")

    def _on_disconnect(self, client, userdata, flags, reason, properties=None) -> None:
        with self._lock:
            was, self._connected = self._connected, False
        if was and not self._closing:
            self._report(f"MQTT connection to {self.host}:{self.port} lost ({reason}); reconnecting")

    def _on_publish(self, client, userdata, mid, reason=None, properties=None) -> None:
        with self._lock:
            if mid not in self._pending:
                self._acked_early.add(mid)
                return
            settled = self._settle(mid)
        self._after_ack(*settled)

    def _settle(self, mid: int) -> tuple[bool, str | None]:
        """Forget an acknowledged message: (counted?, its label if that state changed while it was in flight); lock held."""
        kind, label, value = self._pending.pop(mid)
        if kind != "state":
            return kind == "event", None
        self._state_in_flight.pop(label, None)
        return True, (label if self._transitions[label] else None)

    def _after_ack(self, counted: bool, changed: str | None) -> None:
        if counted:
            self.delivery.add("sent")
        if changed is not None:
            self._send_state(changed)

    def _waiting(self, kinds: tuple[str, ...] = ("event", "state")) -> int:
        """Unacknowledged messages of ``kinds`` (lock held)."""
        return sum(kind in kinds for kind, _, _ in self._pending.values())

    def _report(self, message: str) -> None:
        """Log a failure once per outage, not at every retry."""
        if message != self._failing:
            self._failing = message
            logger.warning(message)

    def _why(self) -> str:
        """Why the broker cannot be reached: one plain connection (and TLS handshake) attempt, its error as text."""
        try:
            with socket.create_connection((self.host, self.port), timeout=3) as sock:
                if self._tls:
                    self._tls.wrap_socket(sock, server_hostname=self.host).close()
        except OSError as err:
            return str(err) or type(err).__name__
        return "it answered a direct probe; paho will retry"

    # --- publishing (any thread) ---

    def _publish(self, topic: str, payload: str, retain: bool, kind: str = "event", label: str | None = None,
                 value: bool | None = None) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)  # queued by paho while the broker is away
        with self._lock:
            self._pending[info.mid] = (kind, label, value)
            if label is not None:
                self._state_in_flight[label] = info.mid
            if info.mid not in self._acked_early:
                return
            self._acked_early.discard(info.mid)
            settled = self._settle(info.mid)
        self._after_ack(*settled)

    def _send_state(self, label: str, replay: bool = False) -> None:
        """Publish the label's next transition (or, at a (re)connect, its current state); one state message in flight."""
        with self._lock:
            if label in self._state_in_flight:
                return  # its acknowledgement sends the next transition
            if self._transitions[label]:
                on = self._transitions[label].popleft()
            elif replay:
                on = self._desired[label]
            else:
                return
            self._state_in_flight[label] = -1  # claimed: a concurrent caller does not publish it twice
        self._publish(f"{self.prefix}/{self.slugs[label]}/state", "ON" if on else "OFF", True, "state", label, on)

    def emit(self, record: dict) -> None:
        if record["type"] not in ("event", "scene"):
            return
        with self._lock:
            full = self._waiting(("event",)) >= self.buffer
        if full:
            self.delivery.add("dropped")
            return
        self._publish(f"{self.prefix}/{record['type']}s", to_json(record), False)

    def state(self, label: str, on: bool) -> None:
        with self._lock:
            self._desired[label] = on
            self._transitions[label].append(on)
        self._send_state(label)

    def _discovery_topic(self, label: str) -> str:
        return f"homeassistant/binary_sensor/{topic_slug(self.device_id)}/{self.slugs[label]}/config"

    def _discovery(self, label: str) -> dict:
        """A Home Assistant binary sensor with a device block, so the labels group under one device."""
        return {"name": label, "unique_id": f"{topic_slug(self.device_id)}_{self.slugs[label]}", "device_class": "sound",
                "state_topic": f"{self.prefix}/{self.slugs[label]}/state", "payload_on": "ON", "payload_off": "OFF",
                "availability_topic": f"{self.prefix}/availability",
                "device": {"identifiers": [self.device_id], "name": f"earmark {self.prefix}", "manufacturer": "earmark",
                           "model": self.model_name or "earmark listen", "sw_version": __version__}}

    def close(self) -> None:
        """Wait up to ``drain_seconds`` for acknowledgements; count and log what the broker never got."""
        self._closing = True
        if self._connected:
            self._publish(f"{self.prefix}/availability", "offline", True, "control")
        deadline = time.monotonic() + self.drain_seconds
        while self._pending and self._connected and time.monotonic() < deadline:
            time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            left = self._waiting()
        if left:
            self.delivery.add("dropped", left)
            logger.warning(f"MQTT: {left} messages were never acknowledged by {self.host}:{self.port} and are lost")
