"""The unsubscribe pages' words in every language they speak, and the choice among them from Accept-Language."""

import re

DEFAULT = "en"

# One catalogue per language. {sender} is MAILGW_BRAND_NAME, or the language's word for "us" when it is not set;
# {address} is the recipient's masked address. Values are plain text: the templates escape them.
MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "language_name": "English",
        "us": "us",
        "confirm_title": "Unsubscribe",
        "confirm_body": "Press the button to stop receiving emails from {sender} at {address}.",
        "confirm_button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done_body": "You will not receive any more emails from {sender} at {address}.",
        "undo_question": "Unsubscribed by mistake?",
        "undo_button": "Resubscribe",
        "resubscribed_title": "You are subscribed again",
        "resubscribed_body": "You will receive emails from {sender} at {address} again.",
        "not_resubscribable_title": "This link cannot resubscribe you",
        "not_resubscribable_body": "Emails from {sender} to {address} cannot be turned back on with this link.",
        "not_found_title": "Link not found",
        "not_found_body": "This unsubscribe link is not valid. Please use the link in the most recent email you "
        "received.",
        "privacy_link": "Privacy policy",
        "contact_text": "Questions? Write to",
    },
    "de": {
        "language_name": "Deutsch",
        "us": "uns",
        "confirm_title": "Abmelden",
        "confirm_body": "Drücken Sie die Schaltfläche, um keine E-Mails mehr von {sender} an {address} zu erhalten.",
        "confirm_button": "Abmelden",
        "done_title": "Sie sind abgemeldet",
        "done_body": "Sie erhalten keine E-Mails mehr von {sender} an {address}.",
        "undo_question": "Versehentlich abgemeldet?",
        "undo_button": "Wieder anmelden",
        "resubscribed_title": "Sie sind wieder angemeldet",
        "resubscribed_body": "Sie erhalten wieder E-Mails von {sender} an {address}.",
        "not_resubscribable_title": "Mit diesem Link ist keine Anmeldung möglich",
        "not_resubscribable_body": "E-Mails von {sender} an {address} lassen sich mit diesem Link nicht wieder "
        "einschalten.",
        "not_found_title": "Link nicht gefunden",
        "not_found_body": "Dieser Abmeldelink ist ungültig. Bitte verwenden Sie den Link aus der neuesten E-Mail, die "
        "Sie erhalten haben.",
        "privacy_link": "Datenschutzerklärung",
        "contact_text": "Fragen? Schreiben Sie an",
    },
    "fr": {
        "language_name": "Français",
        "us": "nous",
        "confirm_title": "Se désabonner",
        "confirm_body": "Appuyez sur le bouton pour ne plus recevoir d’e-mails envoyés par {sender} à l’adresse "
        "{address}.",
        "confirm_button": "Se désabonner",
        "done_title": "Votre désabonnement est confirmé",
        "done_body": "Vous ne recevrez plus d’e-mails envoyés par {sender} à l’adresse {address}.",
        "undo_question": "C’était une erreur\u00a0?",
        "undo_button": "Se réabonner",
        "resubscribed_title": "Votre abonnement est rétabli",
        "resubscribed_body": "Vous recevrez à nouveau les e-mails envoyés par {sender} à l’adresse {address}.",
        "not_resubscribable_title": "Ce lien ne permet pas de vous réabonner",
        "not_resubscribable_body": "Ce lien ne peut pas rétablir l’envoi d’e-mails par {sender} à l’adresse {address}.",
        "not_found_title": "Lien introuvable",
        "not_found_body": "Ce lien de désabonnement n’est pas valide. Veuillez utiliser le lien du dernier e-mail que "
        "vous avez reçu.",
        "privacy_link": "Politique de confidentialité",
        "contact_text": "Des questions\u00a0? Écrivez à",
    },
    "es": {
        "language_name": "Español",
        "us": "nosotros",
        "confirm_title": "Darse de baja",
        "confirm_body": "Pulse el botón para dejar de recibir correos de {sender} en {address}.",
        "confirm_button": "Darse de baja",
        "done_title": "Se ha dado de baja",
        "done_body": "Ya no recibirá más correos de {sender} en {address}.",
        "undo_question": "¿Se dio de baja por error?",
        "undo_button": "Volver a suscribirse",
        "resubscribed_title": "Se ha vuelto a suscribir",
        "resubscribed_body": "Volverá a recibir correos de {sender} en {address}.",
        "not_resubscribable_title": "Este enlace no puede volver a suscribirle",
        "not_resubscribable_body": "Este enlace no puede reactivar los correos de {sender} en {address}.",
        "not_found_title": "Enlace no encontrado",
        "not_found_body": "Este enlace para darse de baja no es válido. Use el enlace del correo más reciente que haya "
        "recibido.",
        "privacy_link": "Política de privacidad",
        "contact_text": "¿Preguntas? Escriba a",
    },
}

MAX_ACCEPT_LANGUAGE = 1024  # characters read of the header: a browser sends a few dozen
# RFC 9110 section 12.5.4: a language range (RFC 4647 basic range) and an optional weight of at most three decimals.
LANGUAGE_RANGE = re.compile(r"\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
WEIGHT = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


def texts(language: str, *, sender: str, address: str) -> dict[str, str]:
    """The catalogue of `language` with the sender's name and the masked address in place."""
    catalogue = MESSAGES[language]
    values = {"sender": sender or catalogue["us"], "address": address}
    return {key: text.format_map(values) for key, text in catalogue.items()}


def choose(accept_language: str, *, override: str = "") -> str:
    """The language to answer in: `override` (?lang=) when we speak it, else the best of Accept-Language that we
    speak (highest weight first, then the order given; "de-AT" is served "de"), else English."""
    if override in MESSAGES:
        return override
    ranked, refused = [], set()
    for position, item in enumerate(accept_language[:MAX_ACCEPT_LANGUAGE].split(",")):
        tag, _, parameters = item.partition(";")
        tag = tag.strip().lower()
        weight = _weight(parameters)
        if not LANGUAGE_RANGE.fullmatch(tag) or weight is None:
            continue  # a malformed entry is ignored, the rest still count
        if weight == 0:
            refused.add(tag)  # "not acceptable" (RFC 9110): only this exact range
            continue
        ranked.append((-weight, position, tag))
    for _, _, tag in sorted(ranked):
        if tag == "*":
            return next((language for language in MESSAGES if language not in refused), DEFAULT)
        primary = tag.partition("-")[0]
        if primary in MESSAGES and primary not in refused:
            return primary
    return DEFAULT


def _weight(parameters: str) -> float | None:
    """The q of ";q=0.8" (1 when absent); None when it is malformed."""
    weight = 1.0
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if not name.strip():
            continue
        if name.strip().lower() != "q" or not WEIGHT.fullmatch(value.strip()):
            return None
        weight = float(value)
    return weight
