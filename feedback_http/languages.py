"""The unsubscribe pages' words in every language they speak, and the choice among them from Accept-Language."""

import re

DEFAULT = "en"

# One catalogue per language. {sender} is MAILGW_BRAND_NAME, or the language's word for "us" when it is not set;
# {address} is the recipient's masked address; {minutes} the undo window. Values are plain text: the templates escape
# them.
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
        "already_title": "You are already unsubscribed",
        "undo_note": "You can undo this here for {minutes} minutes.",
        "undo_not_offered_title": "This unsubscribe cannot be undone here",
        "undo_not_offered_body": "An unsubscribe can be undone only on the page that confirmed it, in the same "
        "browser. To receive emails from {sender} at {address} again, please contact {sender}.",
        "undo_expired_title": "The time to undo has passed",
        "undo_expired_body": "An unsubscribe can be undone for {minutes} minutes only. To receive emails from {sender} "
        "at {address} again, please contact {sender}.",
        "undo_superseded_title": "This unsubscribe cannot be undone anymore",
        "undo_superseded_body": "Something has changed since you unsubscribed. To receive emails from {sender} at "
        "{address} again, please contact {sender}.",
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
        "already_title": "Sie sind bereits abgemeldet",
        "undo_note": "Sie können dies hier {minutes} Minuten lang rückgängig machen.",
        "undo_not_offered_title": "Diese Abmeldung lässt sich hier nicht rückgängig machen",
        "undo_not_offered_body": "Eine Abmeldung lässt sich nur auf der Seite rückgängig machen, die sie bestätigt "
        "hat, im selben Browser. Um wieder E-Mails von {sender} an {address} zu erhalten, wenden Sie sich bitte an "
        "{sender}.",
        "undo_expired_title": "Die Zeit zum Rückgängigmachen ist abgelaufen",
        "undo_expired_body": "Eine Abmeldung lässt sich nur {minutes} Minuten lang rückgängig machen. Um wieder "
        "E-Mails von {sender} an {address} zu erhalten, wenden Sie sich bitte an {sender}.",
        "undo_superseded_title": "Diese Abmeldung lässt sich nicht mehr rückgängig machen",
        "undo_superseded_body": "Seit Ihrer Abmeldung hat sich etwas geändert. Um wieder E-Mails von {sender} an "
        "{address} zu erhalten, wenden Sie sich bitte an {sender}.",
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
        "already_title": "Votre désabonnement est déjà enregistré",
        "undo_note": "Vous pouvez l’annuler ici pendant {minutes}\u00a0minutes.",
        "undo_not_offered_title": "Ce désabonnement ne peut pas être annulé ici",
        "undo_not_offered_body": "Un désabonnement ne peut être annulé que sur la page qui l’a confirmé, dans le "
        "même navigateur. Pour recevoir à nouveau les e-mails envoyés par {sender} à l’adresse {address}, contactez "
        "{sender}.",
        "undo_expired_title": "Le délai d’annulation est dépassé",
        "undo_expired_body": "Un désabonnement ne peut être annulé que pendant {minutes}\u00a0minutes. Pour recevoir à "
        "nouveau les e-mails envoyés par {sender} à l’adresse {address}, contactez {sender}.",
        "undo_superseded_title": "Ce désabonnement ne peut plus être annulé",
        "undo_superseded_body": "Quelque chose a changé depuis votre désabonnement. Pour recevoir à nouveau les "
        "e-mails envoyés par {sender} à l’adresse {address}, contactez {sender}.",
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
        "already_title": "Ya se ha dado de baja",
        "undo_note": "Puede deshacerlo aquí durante {minutes} minutos.",
        "undo_not_offered_title": "Esta baja no se puede deshacer aquí",
        "undo_not_offered_body": "Una baja solo se puede deshacer en la página que la confirmó, en el mismo navegador. "
        "Para volver a recibir correos de {sender} en {address}, póngase en contacto con {sender}.",
        "undo_expired_title": "El plazo para deshacerlo ha terminado",
        "undo_expired_body": "Una baja solo se puede deshacer durante {minutes} minutos. Para volver a recibir correos "
        "de {sender} en {address}, póngase en contacto con {sender}.",
        "undo_superseded_title": "Esta baja ya no se puede deshacer",
        "undo_superseded_body": "Algo ha cambiado desde que se dio de baja. Para volver a recibir correos de {sender} "
        "en {address}, póngase en contacto con {sender}.",
        "privacy_link": "Política de privacidad",
        "contact_text": "¿Preguntas? Escriba a",
    },
}

MAX_ACCEPT_LANGUAGE = 1024  # characters read of the header: a browser sends a few dozen
# RFC 9110 section 12.5.4: a language range (RFC 4647 basic range) and an optional weight of at most three decimals.
LANGUAGE_RANGE = re.compile(r"\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
WEIGHT = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


def texts(language: str, *, sender: str, address: str, minutes: int = 0) -> dict[str, str]:
    """The catalogue of `language` with the sender's name, the masked address and the undo window in place."""
    catalogue = MESSAGES[language]
    values = {"sender": sender or catalogue["us"], "address": address, "minutes": minutes}
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
