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
    "road.errors": ("Planning : {n} ligne(s) ignorée(s)", "Schedule: {n} row(s) left out"),
    "road.contact": ("Contact mairie : {contact}", "Town hall contact: {contact}"),
    # unscheduled stop
    "stop.title": ("Arrêt hors planning", "Unscheduled stop"),
    "stop.commune": ("Commune", "Municipality"),
    "stop.insee": ("Code INSEE (facultatif)", "INSEE code (optional)"),
    "stop.place": ("Lieu (facultatif)", "Place (optional)"),
    "stop.ok": ("Confirmer l'arrêt", "Confirm the stop"),
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
        "La borne publique n'a pas pu s'ouvrir : {error}",
        "The public terminal did not open: {error}",
    ),
    "open.kiosk_retry": ("Rouvrir la borne", "Reopen the terminal"),
    "open.until": ("Départ prévu à {time}", "Planned departure at {time}"),
    "open.close": ("Fermer et préparer le départ", "Close and get ready to leave"),
    # results
    "done.arrival": ("Arrivée terminée : ouvert au public.", "Arrival done: open to the public."),
    "done.departure": ("Départ validé : bonne route !", "Departure done: drive safely!"),
    "done.kiosk_none": ("Pas de borne publique configurée.", "No public terminal configured."),
    "error": ("Erreur : {error}", "Error: {error}"),
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

# Alarm ids the driver may see, in plain words; others show the controller's own message.
ALARMS: dict[str, tuple[str, str]] = {
    "interlock.antenna_up": (
        "Le contact est mis alors que l'antenne satellite est levée : rangez l'antenne avant de rouler.",
        "The ignition is on while the satellite dish is raised: stow the dish before driving.",
    ),
    "interlock.shore_connected": (
        "Le contact est mis alors que le câble secteur est branché : débranchez le câble avant de rouler.",
        "The ignition is on while the shore cable is plugged in: unplug it before driving.",
    ),
    "power.low_soc": ("Batterie faible sans secteur.", "Battery low without shore power."),
    "shore.lost": ("Courant secteur perdu à l'arrêt.", "Shore power lost while parked."),
    "shore.sources_disagree": ("Les capteurs du secteur ne sont pas d'accord.", "The shore power sensors disagree."),
    "inverter.partial": (
        "Une partie des mesures de l'onduleur ne répond pas ; les autres restent à jour.",
        "Some of the inverter's readings are not answering; the others stay up to date.",
    ),
}


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

    def alarm(self, alarm: dict[str, Any]) -> str:
        pair = ALARMS.get(alarm.get("id", ""))
        if pair is None:
            return str(alarm.get("message", alarm.get("id", "")))
        return pair[0] if self.language == "fr" else pair[1]

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
