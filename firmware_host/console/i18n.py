"""The console's words, French first and English, plus the French/English formatting of state values."""

from __future__ import annotations

from typing import Any

# key: (français, English). Plain words: the driver reads them at a glance, often in a hurry.
TEXTS: dict[str, tuple[str, str]] = {
    "app.title": ("Console du conducteur", "Driver's console"),
    "lang.switch": ("English", "Français"),
    "key.language": ("English", "Français"),
    "key.refresh": ("Actualiser", "Refresh"),
    "key.lock": ("Verrouiller", "Lock"),
    "key.quit": ("Quitter", "Quit"),
    # login
    "login.title": ("Console du conducteur", "Driver's console"),
    "login.name": ("Votre prénom", "Your first name"),
    "login.pin": ("Code", "PIN"),
    "login.go": ("Commencer", "Start"),
    "login.need_name": (
        "Indiquez votre prénom : il signe les étapes cochées.",
        "Give your first name: it signs the ticked steps.",
    ),
    "login.bad_pin": ("Code incorrect.", "Wrong PIN."),
    "login.wait": ("Trop d'essais : réessayez dans {seconds} s.", "Too many tries: try again in {seconds} s."),
    "login.locked": ("Console verrouillée", "Console locked"),
    # link
    "link.down": (
        "Contrôleur injoignable : {reason}. Nouvelle tentative...",
        "Controller unreachable: {reason}. Retrying...",
    ),
    "link.unreachable": ("il ne répond pas (arrêté ou en redémarrage)", "it does not answer (stopped or restarting)"),
    "link.closed": ("il a coupé la liaison (redémarrage ?)", "it closed the link (restarting?)"),
    "link.timeout": ("il met trop de temps à répondre", "it takes too long to answer"),
    "link.garbled": ("sa réponse est illisible", "its answer is garbled"),
    "link.connecting": ("Connexion au contrôleur...", "Connecting to the controller..."),
    # header
    "hdr.shore": ("Secteur", "Shore"),
    "hdr.battery": ("Batterie", "Battery"),
    "hdr.inverter": ("Onduleur", "Inverter"),
    "hdr.link": ("Internet", "Internet"),
    "hdr.ignition": ("Contact", "Ignition"),
    "hdr.antenna": ("Antenne", "Dish"),
    "hdr.kiosk": ("Borne", "Kiosk"),
    "hdr.alarms": ("Alarmes", "Alarms"),
    "hdr.no_alarm": ("aucune", "none"),
    "hdr.silent": ("muet", "silent"),
    "hdr.not_configured": ("non équipé", "not fitted"),
    "hdr.plugged": ("branché", "plugged in"),
    "hdr.unplugged": ("débranché", "unplugged"),
    "hdr.on": ("mis", "on"),
    "hdr.off": ("coupé", "off"),
    "hdr.stowed": ("rangée", "stowed"),
    "hdr.raised": ("levée", "raised"),
    "hdr.up": ("connecté", "up"),
    "hdr.down": ("coupé", "down"),
    "hdr.bars": ("{bars}/5 barres", "{bars}/5 bars"),
    "hdr.open": ("ouverte", "open"),
    "hdr.closed": ("fermée", "closed"),
    "hdr.sessions": ("{n} visite(s) aujourd'hui", "{n} visit(s) today"),
    "hdr.clock": ("horloge non synchronisée", "clock not synced"),
    "hdr.acked": ("acquittée", "acknowledged"),
    "hdr.alarms_key": ("(F4)", "(F4)"),
    "hdr.more_alarms": ("+ {n} autre(s)", "+ {n} more"),
    "hdr.stale": (
        "VALEURS ANCIENNES (il y a {age}) : le contrôleur ne répond plus",
        "OLD VALUES ({age} ago): the controller is not answering",
    ),
    "age.s": ("{n} s", "{n} s"),
    "age.min": ("{n} min", "{n} min"),
    # keys (the bar at the bottom)
    "keys.main": (
        "F2 English   F4 Alarmes   F5 Actualiser   F9 Verrouiller   Ctrl+Q Quitter",
        "F2 Français   F4 Alarms   F5 Refresh   F9 Lock   Ctrl+Q Quit",
    ),
    "keys.login": ("F2 English   Entrée Valider   Ctrl+Q Quitter", "F2 Français   Enter Confirm   Ctrl+Q Quit"),
    "quit.help": ("Pour quitter la console : Ctrl+Q.", "To quit the console: Ctrl+Q."),
    # lock
    "lock.done": (
        "Console verrouillée : le prochain conducteur se présente.",
        "Console locked: the next driver signs in.",
    ),
    "lock.no_pin": (
        "Pas de verrouillage : aucun code n'est configuré sur ce bus ([console] pin_file).",
        "No lock: no PIN is configured on this bus ([console] pin_file).",
    ),
    "lock.interlock": (
        "Pas de verrouillage pendant une alerte de départ : réglez-la d'abord.",
        "No lock during a drive-away warning: deal with it first.",
    ),
    # alarms screen
    "alarms.title": ("Alarmes en cours", "Active alarms"),
    "alarms.none": ("Aucune alarme en cours.", "No active alarm."),
    "alarms.since": ("depuis {time}", "since {time}"),
    "alarms.ack_one": ("Entrée : acquitter", "Enter: acknowledge"),
    "alarms.ack_all": ("Tout acquitter", "Acknowledge all"),
    "alarms.details": ("Détails techniques", "Technical details"),
    "alarms.hide_details": ("Masquer les détails", "Hide the details"),
    "alarms.acked": (
        "Alarme acquittée : elle reste affichée tant que la cause est là.",
        "Acknowledged: it stays shown while its cause is there.",
    ),
    "alarms.tech": ("Pour le support (texte technique, en anglais) :", "For the support (technical text):"),
    "alarms.errors": ("Dernières erreurs :", "Last errors:"),
    "severity.critical": ("critique", "critical"),
    "severity.alarm": ("alarme", "alarm"),
    "severity.warning": ("avertissement", "warning"),
    "severity.info": ("information", "information"),
    # inverter mode from a checklist step
    "mode.title": ("Mode de l'onduleur", "Inverter mode"),
    "mode.text": (
        "Choisissez le mode ; l'étape se coche dès que l'onduleur le confirme.",
        "Pick the mode; the step ticks itself once the inverter confirms it.",
    ),
    "mode.set": ("Mettre en « {mode} »", 'Set to "{mode}"'),
    "mode.sent": ("Onduleur : « {mode} » demandé.", 'Inverter: "{mode}" requested.'),
    "mode.not_allowed": (
        "La console n'a pas le droit de commander l'onduleur sur ce bus (inverter.allow_writes) : "
        "réglez le mode sur l'onduleur lui-même.",
        "The console may not command the inverter on this bus (inverter.allow_writes): "
        "set the mode on the inverter itself.",
    ),
    # commands that failed (the technical reason goes to the technical details)
    "fail.checklist.arrive": ("L'arrêt n'a pas pu être confirmé.", "The stop could not be confirmed."),
    "fail.checklist.tick": ("L'étape n'a pas pu être cochée.", "The step could not be ticked."),
    "fail.checklist.finish": ("La liste n'a pas pu être terminée.", "The checklist could not be finished."),
    "fail.checklist.depart": ("Le départ n'a pas pu commencer.", "The departure could not start."),
    "fail.checklist.cancel": ("La liste n'a pas pu être annulée.", "The checklist could not be cancelled."),
    "fail.checklist.tour": ("Le planning n'a pas pu être lu.", "The schedule could not be read."),
    "fail.alarms.ack": ("L'alarme n'a pas pu être acquittée.", "The alarm could not be acknowledged."),
    "fail.inverter.mode": (
        "L'onduleur n'a pas accepté le changement de mode.",
        "The inverter did not take the new mode.",
    ),
    "fail.kiosk.open": ("La borne publique n'a pas pu s'ouvrir.", "The public terminal did not open."),
    "fail.kiosk.close": ("La borne publique n'a pas pu se fermer.", "The public terminal did not close."),
    "fail.other": ("La demande n'a pas abouti.", "The request failed."),
    "fail.away": (
        "Le contrôleur ne répond pas : réessayez dans un instant.",
        "The controller is not answering: try again shortly.",
    ),
    "fail.details": ("(détail : F4, Détails techniques)", "(detail: F4, Technical details)"),
    # phases
    "phase.on_the_road": ("Sur la route", "On the road"),
    "phase.arrival": ("Arrivée", "Arrival"),
    "phase.open": ("Ouvert au public", "Open to the public"),
    "phase.departure": ("Départ", "Departure"),
    # road: choosing the stop
    "road.title": ("Sur la route : confirmez l'arrêt à l'arrivée", "On the road: confirm the stop on arrival"),
    "road.today": ("Arrêts du {date}", "Stops of {date}"),
    "road.none": ("Aucun arrêt prévu ce jour dans le planning.", "No stop planned for this day in the schedule."),
    "road.no_schedule": (
        "Pas de planning configuré ([checklist] schedule).",
        "No schedule configured ([checklist] schedule).",
    ),
    "road.suggested": ("prochain", "next"),
    "road.visited": ("fait", "done"),
    "road.confirm": ("Arrivé ici", "Arrived here"),
    "road.other": ("Arrêt hors planning", "Unscheduled stop"),
    "road.prev_day": ("Jour précédent", "Previous day"),
    "road.next_day": ("Jour suivant", "Next day"),
    "road.clock": (
        "Attention : horloge non synchronisée, la date peut être fausse.",
        "Warning: clock not synced, the date may be wrong.",
    ),
    "road.errors": (
        "Planning : {n} ligne(s) ignorée(s) ou fichier illisible (détail : allervers tour)",
        "Schedule: {n} row(s) left out or file unreadable (detail: allervers tour)",
    ),
    "road.contact": ("Contact mairie : {contact}", "Town hall contact: {contact}"),
    # unscheduled stop
    "stop.title": ("Arrêt hors planning", "Unscheduled stop"),
    "stop.commune": ("Commune", "Municipality"),
    "stop.insee": ("Code INSEE (facultatif)", "INSEE code (optional)"),
    "stop.place": ("Lieu (facultatif)", "Place (optional)"),
    "stop.ok": ("Confirmer l'arrêt", "Confirm the stop"),
    "stop.bad.commune": (
        "Indiquez la commune (120 caractères au plus).",
        "Give the municipality (120 characters at most).",
    ),
    "stop.bad.insee": (
        "Code INSEE : 5 caractères (ex. 63223, 2A004), ou laissez vide.",
        "INSEE code: 5 characters (e.g. 63223, 2A004), or leave it empty.",
    ),
    "stop.bad.place": ("Lieu : 120 caractères au plus.", "Place: 120 characters at most."),
    "stop.bad.other": ("Vérifiez ce qui est saisi.", "Check what was typed."),
    "cancel": ("Retour", "Back"),
    # checklists
    "run.arrival": ("Arrivée à {where}", "Arrival at {where}"),
    "run.departure": ("Départ de {where}", "Leaving {where}"),
    "run.finish.arrival": ("Ouvrir au public", "Open to the public"),
    "run.finish.departure": ("Prêt à partir", "Ready to leave"),
    "run.change_stop": ("Changer d'arrêt", "Change the stop"),
    "run.cancel.arrival": ("Annuler l'arrivée", "Cancel the arrival"),
    "run.cancel.departure": ("Annuler le départ", "Cancel the departure"),
    "run.pending": ("Reste à faire : {n} étape(s) obligatoire(s)", "Still to do: {n} required step(s)"),
    "run.ready": ("Tout est prêt.", "All set."),
    "run.required": ("obligatoire", "required"),
    "status.done": ("fait", "done"),
    "status.todo": ("à faire", "to do"),
    "status.no": ("pas encore", "not yet"),
    "status.n/a": ("sans objet", "not applicable"),
    "status.silent": ("capteur muet : confirmez à la main", "sensor silent: confirm by hand"),
    "by.auto": ("vérifié automatiquement", "checked automatically"),
    "by.driver": ("coché par {name}", "ticked by {name}"),
    "by.na": ("cet équipement n'existe pas sur ce bus", "this bus has no such equipment"),
    "tick.sensor_no": (
        "Le capteur dit « pas encore » : réglez-le, ou terminez avec un motif.",
        "The sensor says 'not yet': fix it, or finish with a reason.",
    ),
    "tick.auto": ("Cette étape est vérifiée par les capteurs.", "This step is checked by the sensors."),
    "tick.na": ("Cette étape ne concerne pas ce bus.", "This step does not apply to this bus."),
    # override
    "override.title": ("Étapes obligatoires non faites", "Required steps not done"),
    "override.text": (
        "Pour continuer quand même, écrivez pourquoi (le motif est enregistré) :",
        "To go on anyway, write why (the reason is logged):",
    ),
    "override.reason": ("Motif", "Reason"),
    "override.ok": ("Continuer malgré tout", "Go on anyway"),
    # open
    "open.title": ("Ouvert au public à {where}", "Open to the public at {where}"),
    "open.kiosk_none": (
        "Pas de borne publique configurée sur ce bus : accueil sans borne.",
        "No public terminal configured on this bus: welcome without one.",
    ),
    "open.kiosk_error": (
        "La borne publique n'a pas pu s'ouvrir (détail : F4, Détails techniques).",
        "The public terminal did not open (detail: F4, Technical details).",
    ),
    "open.kiosk_retry": ("Rouvrir la borne", "Reopen the terminal"),
    "open.until": ("Départ prévu à {time}", "Planned departure at {time}"),
    "open.close": ("Fermer et préparer le départ", "Close and get ready to leave"),
    # results
    "done.arrival": ("Arrivée terminée : ouvert au public.", "Arrival done: open to the public."),
    "done.departure": ("Départ validé : bonne route !", "Departure done: drive safely!"),
    "done.kiosk_none": ("Pas de borne publique configurée.", "No public terminal configured."),
    "yes": ("oui", "yes"),
    "no": ("non", "no"),
    "no_checklist": (
        "La liste de contrôle n'est pas configurée sur ce bus ([checklist] absent).",
        "The checklist is not configured on this bus ([checklist] missing).",
    ),
    # interlocks
    "interlock.title": ("NE ROULEZ PAS", "DO NOT DRIVE"),
    "interlock.ack": ("Couper le buzzer", "Silence the buzzer"),
    "interlock.acked": (
        "Buzzer coupé. L'alerte reste tant que le problème n'est pas réglé.",
        "Buzzer silenced. The warning stays until the problem is fixed.",
    ),
}

# Every alarm the rules can raise, in plain words, by id (a test raises each one and reads the French screen).
# The controller's own message is English, for the log and the support: it is never shown in place of these.
ALARMS: dict[str, tuple[str, str]] = {
    "interlock.antenna_up": (
        "Le contact est mis alors que l'antenne satellite est levée : rangez l'antenne avant de rouler.",
        "The ignition is on while the satellite dish is raised: stow the dish before driving.",
    ),
    "interlock.shore_connected": (
        "Le contact est mis alors que le câble secteur est branché : débranchez le câble avant de rouler.",
        "The ignition is on while the shore cable is plugged in: unplug it before driving.",
    ),
    "power.low_soc": ("Batterie faible ({soc} %) sans secteur.", "Battery low ({soc} %) without shore power."),
    "shore.lost": ("Courant secteur perdu à l'arrêt.", "Shore power lost while parked."),
    "shore.sources_disagree": (
        "Les capteurs du secteur ne sont pas d'accord ({sources}).",
        "The shore power sensors disagree ({sources}).",
    ),
    "inverter.vebus_error": (
        "L'onduleur signale l'erreur VE.Bus n° {code} : voir sa notice.",
        "The inverter reports VE.Bus error {code}: see its manual.",
    ),
    "modem.antenna_fault": (
        "Le modem satellite signale un défaut d'antenne : vérifiez le câble et la prise de l'antenne.",
        "The satellite modem reports an antenna fault: check the antenna cable and connector.",
    ),
    # inverter.<name> and inverter.<name>.warning, one per alarm the inverter reports (drivers/victron_gx.py)
    "inverter.alarm": ("Alarme de l'onduleur : {what}.", "Inverter alarm: {what}."),
    "inverter.warning": ("Avertissement de l'onduleur : {what}.", "Inverter warning: {what}."),
    # <device>.stale, one per polled device
    "device.stale": (
        "{device} ne répond plus : les valeurs affichées peuvent être anciennes.",
        "{device} is not answering: the values shown may be old.",
    ),
    "device.partial": (
        "{device} : une partie des mesures ne répond pas ; les autres restent à jour.",
        "{device}: some of the readings are not answering; the others stay up to date.",
    ),
    "kiosk.wipe_failed": (
        "L'effacement de la borne publique n'a pas pu être vérifié : elle reste fermée. Prévenez le support.",
        "The public terminal's wipe could not be verified: it stays closed. Tell the support.",
    ),
    "kiosk.unavailable": (
        "La borne publique ne peut pas démarrer : elle reste fermée. Prévenez le support.",
        "The public terminal cannot start: it stays closed. Tell the support.",
    ),
    "unknown": ("Alarme « {id} » (voir le détail technique).", 'Alarm "{id}" (see the technical detail).'),
}
# ALARMS keys that stand for a family of ids, never an alarm id themselves
PATTERN_KEYS = ("inverter.alarm", "inverter.warning", "device.stale", "device.partial", "unknown")
INVERTER_ALARM_NAMES: dict[str, tuple[str, str]] = {
    "high_temperature": ("température trop haute", "high temperature"),
    "low_battery": ("batterie trop basse", "low battery"),
    "overload": ("surcharge, trop d'appareils branchés", "overload, too many appliances plugged in"),
    "temperature_sensor": ("capteur de température en défaut", "temperature sensor fault"),
    "voltage_sensor": ("capteur de tension en défaut", "voltage sensor fault"),
    "ripple": ("ondulation trop forte sur la batterie", "battery ripple too high"),
    "phase_rotation": ("ordre des phases inversé", "phase rotation"),
}
DEVICE_NAMES: dict[str, tuple[str, str]] = {
    "inverter": ("L'onduleur", "The inverter"),
    "shore_meter": ("Le compteur secteur", "The shore meter"),
    "modem": ("Le modem satellite", "The satellite modem"),
}
SHORE_SOURCE_NAMES: dict[str, tuple[str, str]] = {
    "pin": ("prise", "socket contact"),
    "meter": ("compteur", "meter"),
    "inverter": ("onduleur", "inverter"),
}


def alarm_kind(alarm_id: str) -> tuple[str, dict[str, str]] | None:
    """The ALARMS key for an alarm id and the words the id itself carries; None for an id with no French yet."""
    if alarm_id in ALARMS and alarm_id not in PATTERN_KEYS:
        return alarm_id, {}
    device, _, rest = alarm_id.partition(".")
    if rest in ("stale", "partial") and device in DEVICE_NAMES:
        return f"device.{rest}", {"device": device}
    if device == "inverter":
        name, warning = rest.removesuffix(".warning"), rest.endswith(".warning")
        if name in INVERTER_ALARM_NAMES:
            return ("inverter.warning" if warning else "inverter.alarm"), {"name": name}
    return None


class I18n:
    """``t(key, **values)`` in the current language; ``pick({"fr":..., "en":...})`` for config texts."""

    def __init__(self, language: str = "fr"):
        self.language = language if language in ("fr", "en") else "fr"

    def toggle(self) -> str:
        self.language = "en" if self.language == "fr" else "fr"
        return self.language

    def t(self, key: str, **values: Any) -> str:
        pair = TEXTS.get(key)
        if pair is None:
            return key
        text = pair[0] if self.language == "fr" else pair[1]
        return text.format(**values) if values else text

    def pick(self, texts: dict[str, Any] | None) -> str:
        """A config text (step label, help): English when asked and given, else French."""
        if not texts:
            return ""
        if self.language == "en" and texts.get("en"):
            return str(texts["en"])
        return str(texts.get("fr") or "")

    def _pair(self, pair: tuple[str, str]) -> str:
        return pair[0] if self.language == "fr" else pair[1]

    def alarm(self, alarm: dict[str, Any]) -> str:
        """An alarm in plain words, from its id and parameters (the English message is the technical detail)."""
        alarm_id = str(alarm.get("id", ""))
        kind = alarm_kind(alarm_id)
        if kind is None:
            return self._pair(ALARMS["unknown"]).format(id=alarm_id)
        key, words = kind
        params = alarm.get("params") or {}
        values: dict[str, Any] = {}
        if "device" in words:
            values["device"] = self._pair(DEVICE_NAMES[words["device"]])
        if "name" in words:
            values["what"] = self._pair(INVERTER_ALARM_NAMES[words["name"]])
        if key == "power.low_soc":
            values["soc"] = params.get("soc", "?")
        elif key == "inverter.vebus_error":
            values["code"] = params.get("code", "?")
        elif key == "shore.sources_disagree":
            yes, no = self.t("yes"), self.t("no")
            values["sources"] = ", ".join(
                f"{self._pair(SHORE_SOURCE_NAMES.get(k, (k, k)))} {yes if v else no}"
                for k, v in (params.get("sources") or {}).items()
            )
        return self._pair(ALARMS[key]).format(**values)

    def number(self, value: float, digits: int = 0) -> str:
        text = f"{value:.{digits}f}"
        return text.replace(".", ",") if self.language == "fr" else text

    def date(self, iso: str) -> str:
        import datetime as dt

        day = dt.date.fromisoformat(iso)
        if self.language == "fr":
            names = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
            months = (
                "janvier",
                "février",
                "mars",
                "avril",
                "mai",
                "juin",
                "juillet",
                "août",
                "septembre",
                "octobre",
                "novembre",
                "décembre",
            )
            return f"{names[day.weekday()]} {day.day} {months[day.month - 1]} {day.year}"
        return day.strftime("%A %d %B %Y")
