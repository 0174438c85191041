"""The unsubscribe pages as HTML: Jinja2 templates (the package's, or an operator's from MAILGW_TEMPLATES_DIR), in the
recipient's language, with the sender's name, privacy link and contact address; no scripts, no outside assets."""

import jinja2
from aiohttp import web

from feedback_http import languages
from feedback_http.config import FeedbackSettings
from feedback_http.unsubscribe import LinkContact
from gateway.core.config import ConfigError
from gateway.core.errors import UndoRefused
from gateway.store.models import ContactStatus

TEMPLATES = ("base.html", "confirm.html", "done.html", "resubscribed.html", "error.html")

# What a refused undo answers (gateway.errors.UndoRefused's reasons): the page's title (its text is the matching
# "_body") and the HTTP status.
UNDO_REFUSALS = {
    UndoRefused.NOT_UNSUBSCRIBED: ("not_resubscribable_title", 409),
    UndoRefused.NOT_OFFERED: ("undo_not_offered_title", 403),
    UndoRefused.EXPIRED: ("undo_expired_title", 410),
    UndoRefused.SUPERSEDED: ("undo_superseded_title", 409),
}

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Vary": "Accept-Language",
    # Nothing loads from anywhere (inline CSS only), forms post only here, and no other site may frame the buttons.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class Pages:
    """Renders each state of the unsubscribe flow; built once at start-up, when every template is tried out."""

    def __init__(self, settings: FeedbackSettings):
        loaders = [jinja2.PackageLoader("feedback_http", "templates")]
        if settings.templates_dir:  # the operator's files win, one by one; the rest stay ours
            loaders.insert(0, jinja2.FileSystemLoader(settings.templates_dir))
        self._environment = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=True,  # the brand name, the address and every text are escaped, also in operators' templates
            undefined=jinja2.StrictUndefined,  # a misspelt name fails the start-up check below, not a recipient
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._brand_name = settings.sender_name  # MAILGW_BRAND_NAME, else MAILGW_DEFAULT_FROM's name, as in the mail
        self._privacy_url = settings.privacy_url
        self._contact_email = settings.contact_email
        self._undo_minutes = settings.unsubscribe_undo_seconds // 60 or 1
        self._check()

    def confirm(self, request: web.Request, contact: LinkContact) -> web.Response:
        return self._render(request, "confirm.html", "confirm_title", contact)

    def already(self, request: web.Request, contact: LinkContact) -> web.Response:
        """The link of a contact that is unsubscribed (or bounced, or complained) already: no button to press."""
        return self._render(request, "done.html", "already_title", contact)

    def done(self, request: web.Request, contact: LinkContact, *, undo_secret: str | None = None) -> web.Response:
        """After the button: with `undo_secret` (this request made the unsubscribe), the undo form that carries it."""
        return self._render(request, "done.html", "done_title", contact, undo_secret=undo_secret)

    def resubscribed(self, request: web.Request, contact: LinkContact) -> web.Response:
        return self._render(request, "resubscribed.html", "resubscribed_title", contact)

    def undo_refused(self, request: web.Request, contact: LinkContact, reason: str) -> web.Response:
        """An undo that cannot be done (an UndoRefused reason): 4xx with why, and nothing changed."""
        title, status = UNDO_REFUSALS[reason]
        return self._render(request, "error.html", title, contact, status=status)

    def not_found(self, request: web.Request) -> web.Response:
        return self._render(request, "error.html", "not_found_title", None, status=404)

    def _render(
        self,
        request: web.Request,
        template: str,
        title: str,
        contact: LinkContact | None,
        *,
        status: int = 200,
        undo_secret: str | None = None,
    ) -> web.Response:
        override = request.query.get("lang", "")
        language = languages.choose(request.headers.get("Accept-Language", ""), override=override)
        query = f"?lang={language}" if override == language else ""  # the next page keeps a chosen language
        contact_id = request.match_info.get("contact_id", "")
        context = self._context(language, title, contact, contact_id, query=query, undo_secret=undo_secret)
        page = self._environment.get_template(template).render(context)
        headers = HEADERS | {"Content-Language": language}
        return web.Response(text=page, status=status, content_type="text/html", headers=headers)

    def _context(
        self,
        language: str,
        title: str,
        contact: LinkContact | None,
        contact_id: str,
        *,
        query: str,
        undo_secret: str | None = None,
    ) -> dict:
        address = contact.address if contact else ""
        t = languages.texts(language, sender=self._brand_name, address=address, minutes=self._undo_minutes)
        return {
            "lang": language,
            "t": t,
            "title": t[title],
            # The text under the title: confirm_title -> confirm_body, not_found_title -> not_found_body
            "message": t.get(title.removesuffix("_title") + "_body", ""),
            "brand_name": self._brand_name,
            "privacy_url": self._privacy_url,
            "contact_email": self._contact_email,
            "address": contact.address if contact else "",
            "undo_secret": undo_secret or "",  # the done page's hidden field, only for the page that unsubscribed
            # Relative, so a proxy's path prefix in front of /unsubscribe/ is kept: the page is /unsubscribe/{id}
            # or /unsubscribe/{id}/resubscribe.
            "resubscribe_action": f"{contact_id}/resubscribe{query}" if contact else "",
            "unsubscribe_action": f"../{contact_id}{query}" if contact else "",
        }

    def _check(self) -> None:
        """Render every template in every language now, so a broken override stops the start with one line."""
        sample = LinkContact("a***@example.org", ContactStatus.UNSUBSCRIBED)
        titles = {
            "base.html": "confirm_title",
            "confirm.html": "confirm_title",
            "done.html": "done_title",
            "resubscribed.html": "resubscribed_title",
            "error.html": "not_found_title",
        }
        for template in TEMPLATES:
            for language in languages.MESSAGES:
                context = self._context(language, titles[template], sample, "A" * 22, query="", undo_secret="x" * 43)
                try:
                    self._environment.get_template(template).render(context)
                except Exception as exc:  # a syntax error, an unknown name, or anything a template's code raised
                    where = f"{exc.filename}:{exc.lineno}" if isinstance(exc, jinja2.TemplateSyntaxError) else template
                    raise ConfigError(f"MAILGW_TEMPLATES_DIR: {where} ({language}): {exc}") from None
