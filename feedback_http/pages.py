"""The unsubscribe pages as HTML: Jinja2 templates (the package's, or an operator's from MAILGW_TEMPLATES_DIR), in the
recipient's language, with the sender's name, privacy link and contact address; no scripts, no outside assets."""

import jinja2
from aiohttp import web

from feedback_http import languages
from feedback_http.config import FeedbackSettings
from feedback_http.unsubscribe import LinkContact
from gateway.ops.config import ConfigError
from gateway.store.models import ContactStatus

TEMPLATES = ("base.html", "confirm.html", "done.html", "resubscribed.html", "error.html")

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
        self._check()

    def confirm(self, request: web.Request, contact: LinkContact) -> web.Response:
        return self._render(request, "confirm.html", "confirm_title", contact)

    def done(self, request: web.Request, contact: LinkContact) -> web.Response:
        return self._render(request, "done.html", "done_title", contact)

    def resubscribed(self, request: web.Request, contact: LinkContact) -> web.Response:
        return self._render(request, "resubscribed.html", "resubscribed_title", contact)

    def not_resubscribable(self, request: web.Request, contact: LinkContact) -> web.Response:
        """A bounced or complained contact, or one an operator or SES unsubscribed: 409, and nothing changed."""
        return self._render(request, "error.html", "not_resubscribable_title", contact, status=409)

    def not_found(self, request: web.Request) -> web.Response:
        return self._render(request, "error.html", "not_found_title", None, status=404)

    def _render(
        self, request: web.Request, template: str, title: str, contact: LinkContact | None, *, status: int = 200
    ) -> web.Response:
        override = request.query.get("lang", "")
        language = languages.choose(request.headers.get("Accept-Language", ""), override=override)
        query = f"?lang={language}" if override == language else ""  # the next page keeps a chosen language
        contact_id = request.match_info.get("contact_id", "")
        page = self._environment.get_template(template).render(
            self._context(language, title, contact, contact_id, query=query)
        )
        headers = HEADERS | {"Content-Language": language}
        return web.Response(text=page, status=status, content_type="text/html", headers=headers)

    def _context(self, language: str, title: str, contact: LinkContact | None, contact_id: str, *, query: str) -> dict:
        t = languages.texts(language, sender=self._brand_name, address=contact.address if contact else "")
        return {
            "lang": language,
            "t": t,
            "title": t[title],
            # The text under the title: confirm_title -> confirm_body, not_found_title -> not_found_body
            "message": t[title.removesuffix("_title") + "_body"],
            "brand_name": self._brand_name,
            "privacy_url": self._privacy_url,
            "contact_email": self._contact_email,
            "address": contact.address if contact else "",
            "can_resubscribe": bool(contact and contact.can_resubscribe),
            # Relative, so a proxy's path prefix in front of /unsubscribe/ is kept: the page is /unsubscribe/{id}
            # or /unsubscribe/{id}/resubscribe.
            "resubscribe_action": f"{contact_id}/resubscribe{query}" if contact else "",
            "unsubscribe_action": f"../{contact_id}{query}" if contact else "",
        }

    def _check(self) -> None:
        """Render every template in every language now, so a broken override stops the start with one line."""
        sample = LinkContact("a***@example.org", ContactStatus.UNSUBSCRIBED, can_resubscribe=True)
        titles = {
            "base.html": "confirm_title",
            "confirm.html": "confirm_title",
            "done.html": "done_title",
            "resubscribed.html": "resubscribed_title",
            "error.html": "not_found_title",
        }
        for template in TEMPLATES:
            for language in languages.MESSAGES:
                try:
                    self._environment.get_template(template).render(
                        self._context(language, titles[template], sample, "A" * 22, query="")
                    )
                except Exception as exc:  # a syntax error, an unknown name, or anything a template's code raised
                    where = f"{exc.filename}:{exc.lineno}" if isinstance(exc, jinja2.TemplateSyntaxError) else template
                    raise ConfigError(f"MAILGW_TEMPLATES_DIR: {where} ({language}): {exc}") from None
