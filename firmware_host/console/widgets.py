"""The console's widgets: the live status header and the checklist step rows."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static

from .i18n import I18n
from .messages import AlarmChosen, StepChosen

SOURCE_NAMES = {
    "fr": {"pin": "contact", "meter": "compteur", "inverter": "onduleur"},
    "en": {"pin": "contact", "meter": "meter", "inverter": "inverter"},
}
MODE_NAMES = {
    "fr": {"on": "marche", "off": "arrêt", "charger_only": "chargeur seul", "inverter_only": "onduleur seul"},
    "en": {"on": "on", "off": "off", "charger_only": "charger only", "inverter_only": "inverter only"},
}
STATE_NAMES = {
    "fr": {
        "off": "arrêté",
        "low_power": "veille",
        "fault": "en défaut",
        "bulk": "charge",
        "absorption": "absorption",
        "float": "entretien",
        "storage": "stockage",
        "equalize": "égalisation",
        "passthru": "secteur direct",
        "inverting": "sur batterie",
        "power_assist": "assistance",
        "power_supply": "alimentation",
        "bulk_protection": "protection",
    },
    "en": {},
}
LABEL = "dim"
VALUE = "bold"
BAD = "bold red"
WARN = "bold yellow"
GOOD = "bold green"


def _component(snapshot: dict[str, Any], name: str) -> tuple[dict[str, Any], str | None]:
    """The component and, when its values cannot be trusted, why ("silent" or "not fitted")."""
    comp = snapshot.get(name)
    if comp is None:
        return {}, "not_configured"
    if comp.get("stale"):
        return comp, "not_configured" if comp.get("stale_reason") == "not configured" else "silent"
    return comp, None


def age_text(seconds: float, i18n: I18n) -> str:
    return i18n.t("age.s", n=int(seconds)) if seconds < 120 else i18n.t("age.min", n=int(seconds // 60))


def status_lines(snapshot: dict[str, Any], i18n: I18n, stale_s: float | None = None) -> list[Text]:
    """The header lines: shore and inverter; battery, link and vehicle; kiosk and alarms. With ``stale_s`` (the
    controller away that long) every value is dimmed and marked old, under a line saying since when."""
    t = i18n.t
    lang = i18n.language

    def item(line: Text, label: str, value: str, style: str = VALUE) -> None:
        if line.plain:
            line.append("   ")
        line.append(f"{label} : " if lang == "fr" else f"{label}: ", LABEL)
        if stale_s is not None:
            line.append(value + " (?)", "dim strike")  # last known, not current: the driver must not trust it
        else:
            line.append(value, style)

    def unknown(why: str | None) -> tuple[str, str]:
        return (t("hdr.not_configured"), LABEL) if why == "not_configured" else (t("hdr.silent"), WARN)

    first, second, third = Text(), Text(), Text()

    shore, why = _component(snapshot, "shore")
    if why or shore.get("connected") is None:
        item(first, t("hdr.shore"), *unknown(why or "silent"))
    elif shore["connected"]:
        live = [k for k, v in (shore.get("sources") or {}).items() if v]
        names = ", ".join(SOURCE_NAMES[lang].get(k, k) for k in live)
        item(first, t("hdr.shore"), t("hdr.plugged") + (f" ({names})" if names else ""), GOOD)
    else:
        item(first, t("hdr.shore"), t("hdr.unplugged"))

    power, why = _component(snapshot, "power")
    soc, volts = power.get("soc"), power.get("battery_v")
    if why or (soc is None and volts is None):
        item(second, t("hdr.battery"), *unknown(why or "silent"))
    else:
        parts = []
        if soc is not None:
            parts.append(f"{i18n.number(soc)} %")
        if volts is not None:
            parts.append(f"{i18n.number(volts, 1)} V")
        item(second, t("hdr.battery"), "  ".join(parts), BAD if soc is not None and soc < 20 else VALUE)
    if why or power.get("mode") is None:
        item(first, t("hdr.inverter"), *unknown(why or "silent"))
    else:
        mode = MODE_NAMES[lang].get(power["mode"], power["mode"])
        state = power.get("state")
        text = mode + (f", {STATE_NAMES[lang].get(state, state.replace('_', ' '))}" if state else "")
        item(first, t("hdr.inverter"), text, BAD if state == "fault" else VALUE)

    modem, why = _component(snapshot, "modem")
    if why or modem.get("link") is None:
        item(second, t("hdr.link"), *unknown(why or "silent"))
    else:
        up = modem["link"] == "up"
        bars = modem.get("signal_bars")
        text = t("hdr.up") if up else t("hdr.down")
        if bars is not None:
            text += "  " + t("hdr.bars", bars=bars)
        item(second, t("hdr.link"), text, GOOD if up else WARN)

    vehicle, why = _component(snapshot, "vehicle")
    for key, label, on, off, on_style in (
        ("ignition", "hdr.ignition", "hdr.on", "hdr.off", WARN),
        ("antenna_stowed", "hdr.antenna", "hdr.stowed", "hdr.raised", VALUE),
    ):
        value = vehicle.get(key)
        if why or value is None:
            item(second, t(label), *unknown(why or "not_configured"))
        else:
            item(second, t(label), t(on) if value else t(off), on_style if value else VALUE)

    kiosk, why = _component(snapshot, "kiosk")
    if why == "not_configured" or not kiosk:
        item(third, t("hdr.kiosk"), t("hdr.not_configured"), LABEL)
    elif why:
        item(third, t("hdr.kiosk"), t("hdr.silent"), WARN)
    else:
        text = t("hdr.open") if kiosk.get("open") else t("hdr.closed")
        if kiosk.get("sessions_today") is not None:
            text += ", " + t("hdr.sessions", n=kiosk["sessions_today"])
        item(third, t("hdr.kiosk"), text)

    controller = snapshot.get("controller") or {}
    alarms = controller.get("alarms") or []
    if not alarms:
        item(third, t("hdr.alarms"), t("hdr.no_alarm"), GOOD)
    else:
        worst = "critical" if any(a.get("severity") in ("critical", "alarm") for a in alarms) else "warning"
        # The worst first (the controller sorts them); the others are one key away (F4), not a wall of text.
        first_alarm = alarms[0]
        shown = i18n.alarm(first_alarm) + (f" ({t('hdr.acked')})" if first_alarm.get("acknowledged") else "")
        if len(alarms) > 1:
            shown += "  " + t("hdr.more_alarms", n=len(alarms) - 1)
        item(third, f"{t('hdr.alarms')} ({len(alarms)})", shown, BAD if worst == "critical" else WARN)
        third.append("  " + t("hdr.alarms_key"), LABEL)
    if controller.get("clock_synced") is False:
        third.append("   ")
        third.append(t("hdr.clock"), WARN)
    if stale_s is not None:
        return [Text(t("hdr.stale", age=age_text(stale_s, i18n)), "bold reverse yellow"), first, second, third]
    return [first, second, third]


class StatusBar(Static):
    """The live header: shore, battery, inverter, link, ignition, dish, kiosk, alarms."""

    DEFAULT_CSS = """
    StatusBar {
        height: auto;
        min-height: 3;
        padding: 0 1;
        background: $boost;
        border-bottom: solid $primary;
    }
    """

    def show(self, snapshot: dict[str, Any], i18n: I18n, stale_s: float | None = None) -> None:
        self.update(Text("\n").join(status_lines(snapshot, i18n, stale_s)))


class KeyBar(Static):
    """The function keys at the bottom, in the console's language (Textual's footer would mix both)."""

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        padding: 0 1;
        background: $primary 40%;
        text-style: bold;
    }
    """

    def __init__(self, key: str, i18n: I18n):
        super().__init__()
        self.key = key
        self.i18n = i18n

    def on_mount(self) -> None:
        self.relabel()

    def relabel(self) -> None:
        self.update(self.i18n.t(self.key))


class AlarmRow(Static, can_focus=True):
    """One active alarm in plain words; Enter, Space or a click acknowledges it."""

    BINDINGS = [
        Binding("enter,space", "acknowledge", show=False),
        Binding("down", "app.focus_next", show=False),
        Binding("up", "app.focus_previous", show=False),
    ]
    DEFAULT_CSS = """
    AlarmRow {
        height: auto;
        padding: 0 1;
        margin: 0 0 1 0;
    }
    AlarmRow:focus {
        background: $accent 40%;
    }
    """

    def __init__(self, alarm: dict[str, Any], i18n: I18n):
        super().__init__()
        self.alarm = alarm
        self.i18n = i18n
        self.show(alarm)

    def show(self, alarm: dict[str, Any]) -> None:
        import time

        self.alarm = alarm
        t = self.i18n.t
        severity = alarm.get("severity", "warning")
        text = Text()
        text.append("[!] ", BAD if severity in ("critical", "alarm") else WARN)
        text.append(self.i18n.alarm(alarm), "bold")
        since = time.strftime("%H:%M", time.localtime(alarm["since"])) if alarm.get("since") else "?"
        text.append(f"\n    {t('severity.' + severity)} · {t('alarms.since', time=since)} · ", LABEL)
        if alarm.get("acknowledged"):
            text.append(t("hdr.acked"), GOOD)
        else:
            text.append(t("alarms.ack_one"), WARN)
        self.update(text)

    def action_acknowledge(self) -> None:
        if not self.alarm.get("acknowledged"):
            self.post_message(AlarmChosen(self.alarm["id"]))

    def on_click(self) -> None:
        self.action_acknowledge()


MARKS = {"done": ("[x]", GOOD), "todo": ("[ ]", WARN), "no": ("[!]", BAD), "n/a": ("[-]", LABEL)}


def step_text(step: dict[str, Any], i18n: I18n) -> Text:
    """Two lines: the mark and label; then the status, who ticked it, and the help."""
    t = i18n.t
    status = step["status"]
    mark, style = MARKS.get(status, ("[?]", WARN))
    text = Text()
    text.append(mark + " ", style)
    text.append(i18n.pick(step["label"]), "bold" if status != "n/a" else LABEL)
    if step["required"] and not step["done"]:
        text.append(f"  ({t('run.required')})", LABEL)
    text.append("\n    ")
    if status == "todo" and step["kind"] == "auto":
        text.append(t("status.silent"), WARN)
    else:
        text.append(t(f"status.{status}"), style)
    by = step.get("by")
    if by == "auto":
        text.append(" · " + t("by.auto"), LABEL)
    elif by == "n/a":
        text.append(" · " + t("by.na"), LABEL)
    elif by:
        text.append(" · " + t("by.driver", name=by), LABEL)
    help_text = i18n.pick(step.get("help"))
    if help_text and not step["done"]:
        text.append(" · " + help_text, LABEL)
    return text


class StepRow(Static, can_focus=True):
    """One checklist step: Enter, Space or a click ticks or unticks it (the app decides what is allowed)."""

    BINDINGS = [
        Binding("enter,space", "choose", "Cocher", show=False),
        Binding("down", "app.focus_next", show=False),
        Binding("up", "app.focus_previous", show=False),
    ]
    DEFAULT_CSS = """
    StepRow {
        height: 2;
        padding: 0 1;
    }
    StepRow:focus {
        background: $accent 40%;
        text-style: bold;
    }
    StepRow.-done { background: $success 10%; }
    StepRow.-no { background: $error 15%; }
    """

    def __init__(self, step: dict[str, Any], i18n: I18n):
        super().__init__(id=f"step-{step['id']}")
        self.step = step
        self.i18n = i18n
        self.show(step)

    def show(self, step: dict[str, Any]) -> None:
        self.step = step
        self.set_class(step["status"] in ("done", "n/a"), "-done")
        self.set_class(step["status"] == "no", "-no")
        self.update(step_text(step, self.i18n))

    def action_choose(self) -> None:
        self.post_message(StepChosen(self.step["id"]))

    def on_click(self) -> None:
        self.action_choose()
