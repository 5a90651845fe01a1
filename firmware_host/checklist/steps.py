"""The default arrival and departure steps: what a France Services bus checks at each stop without a [checklist]."""

from __future__ import annotations

from typing import Any


def _step(
    id: str,
    fr: str,
    en: str,
    condition: str | None = None,
    required: bool = True,
    help_fr: str = "",
    help_en: str = "",
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": id,
        "label": {"fr": fr, "en": en},
        "kind": "auto" if condition else "manual",
        "required": required,
    }
    if condition:
        step["condition"] = condition
    if help_fr:
        step["help"] = {"fr": help_fr, "en": help_en or None}
    return step


DEFAULT_ARRIVAL: list[dict[str, Any]] = [
    _step(
        "parked",
        "Bus garé, frein serré, cales posées",
        "Bus parked, handbrake on, wheels chocked",
        help_fr="Sur sol plat, hors du passage des véhicules de secours.",
        help_en="On level ground, clear of the emergency access.",
    ),
    _step(
        "shore_plugged",
        "Câble branché à la prise de la mairie",
        "Shore cable plugged into the town hall socket",
        help_fr="Dérouler tout le câble ; le protéger là où l'on marche.",
        help_en="Unroll the whole cable; cover it where people walk.",
    ),
    _step("shore_power", "Courant secteur présent", "Shore power present", "shore.connected"),
    _step("inverter_on", "Onduleur en marche", "Inverter on", 'power.mode == "on"'),
    _step(
        "battery",
        "Batterie au-dessus de 40 %",
        "Battery above 40 %",
        "power.soc >= 40",
        help_fr="En dessous, brancher le secteur avant d'ouvrir.",
        help_en="Below that, get shore power before opening.",
    ),
    _step("antenna_up", "Antenne satellite levée", "Satellite dish raised", "vehicle.antenna_stowed == false"),
    _step("link_up", "Connexion internet établie", "Internet link up", 'modem.link == "up"'),
    _step("printer", "Imprimante allumée, papier en place", "Printer on, paper loaded", required=False),
    _step("signage", "Panneaux et drapeau installés dehors", "Signs and flag set out", required=False),
]
DEFAULT_DEPARTURE: list[dict[str, Any]] = [
    _step(
        "kiosk_closed",
        "Borne publique fermée et effacée",
        "Public terminal closed and wiped",
        "kiosk.open == false and kiosk.session_active == false",
    ),
    _step("equipment_stowed", "Imprimante et matériel rangés et calés", "Printer and equipment stowed"),
    _step("antenna_stowed", "Antenne satellite rangée", "Satellite dish stowed", "vehicle.antenna_stowed"),
    _step(
        "shore_unplugged",
        "Câble secteur débranché et rangé, courant coupé",
        "Shore cable unplugged and stowed, power gone",
        "shore.connected == false",
    ),
    _step(
        "inverter_driving",
        "Onduleur en mode route",
        "Inverter in driving mode",
        'power.mode in ["off", "charger_only"]',
        help_fr="Arrêté ou chargeur seul : l'onduleur ne vide pas la batterie en roulant.",
        help_en="Off or charger only: the inverter does not drain the battery on the road.",
    ),
    _step(
        "door_closed",
        "Marchepied rentré, porte fermée",
        "Steps retracted, door closed",
        "vehicle.door_open == false",
    ),
]
