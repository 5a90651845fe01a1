"""The launcher's words: plain French first (no jargon, short sentences), and English."""

from __future__ import annotations

from typing import Any

LANGUAGES = ("fr", "en")

# key: (français, English)
TEXTS: dict[str, tuple[str, str]] = {
    "lang.switch": ("English", "Français"),
    # welcome
    "welcome.title": ("Bienvenue", "Welcome"),
    "welcome.touch": ("Touchez l'écran pour commencer", "Touch the screen to start"),
    "welcome.zoom": ("Agrandir le texte : {percent} %", "Larger text: {percent}%"),
    "welcome.promise": (
        "Ce que vous faites ici reste privé : à la fin, tout est effacé de l'ordinateur.\n"
        "Nous comptons seulement les visites, sans savoir qui vous êtes.",
        "What you do here stays private: at the end, everything is erased from the computer.\n"
        "We only count visits, without knowing who you are.",
    ),
    # services
    "services.title": ("Que voulez-vous faire ?", "What would you like to do?"),
    "services.help": (
        "Touchez un service. Vous pourrez terminer à tout moment.",
        "Touch a service. You can finish at any time.",
    ),
    "services.limit": ("{minutes} minutes", "{minutes} minutes"),
    "back": ("Retour", "Back"),
    "opening": ("Ouverture de « {service} »…", "Opening “{service}”…"),
    "opening.wait": ("Un instant, s'il vous plaît.", "One moment, please."),
    "opening.failed": (
        "Ce service ne peut pas s'ouvrir pour le moment. Essayez un autre service ou demandez au médiateur.",
        "This service cannot open right now. Try another one or ask the mediator.",
    ),
    # session
    "session.on": ("Vous êtes sur : {service}", "You are on: {service}"),
    "session.left": ("Temps restant : {minutes} min", "Time left: {minutes} min"),
    "session.left_short": ("Moins d'une minute", "Less than a minute"),
    "session.warn5": (
        "Il reste 5 minutes. Pensez à imprimer ou à enregistrer vos documents.",
        "5 minutes left. Remember to print or save your documents.",
    ),
    "session.warn1": ("Il reste 1 minute. Tout sera effacé ensuite.", "1 minute left. Everything will then be erased."),
    "session.end": ("Terminer et tout effacer", "Finish and erase everything"),
    "scan.ready": ("Numériser un document", "Scan a document"),
    "scan.none": ("Pas de scanner dans ce bus", "No scanner on this bus"),
    "scan.unreachable": ("Le scanner ne répond pas", "The scanner does not answer"),
    "print.printing": ("Impression en cours…", "Printing…"),
    "print.printing.pages": ("Impression en cours… {pages}", "Printing… {pages}"),
    "print.printed": ("Imprimé", "Printed"),
    "print.printed.pages": ("Imprimé : {pages}", "Printed: {pages}"),
    "print.failed": ("L'impression n'a pas abouti. Demandez au médiateur.", "Printing did not work. Ask the mediator."),
    "print.problem.paper": ("L'imprimante n'a plus de papier.", "The printer is out of paper."),
    "print.problem.jam": ("Du papier est coincé dans l'imprimante.", "Paper is jammed in the printer."),
    "print.problem.ink": ("L'imprimante n'a plus d'encre.", "The printer is out of ink."),
    "print.problem.cover": ("Un capot de l'imprimante est ouvert.", "A cover of the printer is open."),
    "print.problem.offline": ("L'imprimante est éteinte ou débranchée.", "The printer is off or unplugged."),
    "print.problem.stopped": ("L'imprimante est arrêtée.", "The printer is stopped."),
    "print.ask": ("Demandez au médiateur.", "Ask the mediator."),
    "confirm.question": (
        "Terminer et effacer tout ce que vous avez fait sur cet ordinateur ?",
        "Finish and erase everything you did on this computer?",
    ),
    "confirm.yes": ("Oui, tout effacer", "Yes, erase everything"),
    "confirm.no": ("Non, continuer", "No, carry on"),
    "idle.question": ("Êtes-vous toujours là ?", "Are you still there?"),
    "idle.left": (
        "Sans réponse, tout sera effacé dans {seconds} secondes.",
        "Without an answer, everything will be erased in {seconds} seconds.",
    ),
    "idle.stay": ("Oui, je suis là", "Yes, I am here"),
    # end
    "end.wiping": ("Effacement de vos données…", "Erasing your data…"),
    "end.phase.stopping": ("Fermeture du navigateur", "Closing the browser"),
    "end.phase.printing": ("Fin des impressions", "Finishing the printing"),
    "end.phase.erasing": ("Effacement des fichiers", "Erasing the files"),
    "end.phase.verifying": ("Vérification", "Checking"),
    "end.done": ("Vos données ont été effacées.", "Your data has been erased."),
    "end.pages": ("Pages imprimées : {pages}", "Pages printed: {pages}"),
    "end.failed": (
        "Un problème est survenu pendant l'effacement. Un médiateur va vérifier la borne.",
        "Something went wrong while erasing. A mediator will check the terminal.",
    ),
    "end.reason.idle": ("La session a été fermée : personne n'a répondu.", "The session was closed: nobody answered."),
    "end.reason.time_limit": ("Le temps de la session est écoulé.", "The session time is over."),
    "end.reason.remote": ("La session a été fermée par l'équipe du bus.", "The bus team closed the session."),
    "end.reason.closed": ("La session a été fermée : le bus ferme.", "The session was closed: the bus is closing."),
    "end.reason.locked": ("La session a été fermée par l'équipe du bus.", "The bus team closed the session."),
    "end.reason.ignition": ("Le bus va partir : la session est terminée.", "The bus is leaving: the session is over."),
    "end.reason.low_battery": (
        "La batterie du bus est faible : la session est terminée.",
        "The bus battery is low: the session is over.",
    ),
    "end.reason.browser_exited": ("Le navigateur s'est fermé.", "The browser closed."),
    "feedback.question": ("Ce service vous a-t-il aidé ?", "Did this service help you?"),
    "feedback.good": ("😊  Oui", "😊  Yes"),
    "feedback.neutral": ("😐  Un peu", "😐  A little"),
    "feedback.bad": ("😞  Non", "😞  No"),  # 🙁 has no glyph in DejaVu, the bus's fonts
    "feedback.skip": ("Passer", "Skip"),
    "feedback.thanks": ("Merci ! À bientôt.", "Thank you! See you soon."),
    "end.again": ("Touchez l'écran pour revenir à l'accueil", "Touch the screen to go back to the start"),
    # closed and offline
    "closed.title": ("Le bus est fermé", "The bus is closed"),
    "closed.closed": ("La borne ouvrira à l'arrivée du bus.", "The terminal opens when the bus arrives."),
    "closed.starting": ("La borne se prépare. Un instant…", "The terminal is getting ready. One moment…"),
    "closed.locked.title": ("La borne est fermée", "The terminal is closed"),
    "closed.locked": ("Elle a été fermée à distance par l'équipe.", "The team closed it remotely."),
    "closed.wipe_failed.title": ("La borne est en maintenance", "The terminal is under maintenance"),
    "closed.wipe_failed": (
        "Un médiateur va la vérifier. Merci de patienter.",
        "A mediator will check it. Please wait.",
    ),
    "closed.unavailable": ("La borne n'est pas disponible pour le moment.", "The terminal is not available for now."),
    "closed.ignition": ("Le bus va partir. À bientôt !", "The bus is leaving. See you soon!"),
    "closed.low_battery": (
        "La batterie du bus est trop faible pour le moment.",
        "The bus battery is too low for now.",
    ),
    "closed.unreachable.title": ("Un instant, s'il vous plaît", "One moment, please"),
    "closed.unreachable": ("La borne redémarre. Un instant…", "The terminal is restarting. One moment…"),
    "offline.title": ("Pas de connexion Internet pour le moment", "No Internet connection for now"),
    "offline.some": ("Vous pouvez quand même utiliser :", "You can still use:"),
    "offline.none": (
        "Revenez dans quelques minutes, ou demandez au médiateur.",
        "Come back in a few minutes, or ask the mediator.",
    ),
}


class Texts:
    """``t("key", name=value)`` in the current language; French when a key has no English."""

    def __init__(self, lang: str = "fr"):
        self.lang = lang if lang in LANGUAGES else "fr"

    def __call__(self, key: str, **values: Any) -> str:
        fr, en = TEXTS[key]
        text = en if self.lang == "en" and en else fr
        return text.format(**values) if values else text

    def label(self, item: dict[str, Any], key: str = "label") -> str:
        """A config text with its optional English twin (``label`` / ``label_en``)."""
        if self.lang == "en" and item.get(f"{key}_en"):
            return str(item[f"{key}_en"])
        return str(item.get(key) or "")
