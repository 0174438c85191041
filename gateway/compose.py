"""The one composer: an OutgoingEmail and its unsubscribe link as a raw MIME message."""

import html
import re
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from gateway.outgoing import OutgoingEmail

TEXT_FOOTER = "\n\n--\nTo stop receiving these emails, unsubscribe here: {url}\n"
HTML_FOOTER = (
    '<p style="font-size:12px;color:#666">To stop receiving these emails, <a href="{url}">unsubscribe here</a>.</p>'
)
BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def unsubscribe_url(public_base_url: str, contact_id: str) -> str:
    return f"{public_base_url}/unsubscribe/{contact_id}"


def compose(email: OutgoingEmail, unsubscribe: str) -> bytes:
    """RFC 5322 bytes with text and/or HTML alternatives, each ending in the unsubscribe footer (RFC 8058 headers)."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = email.sender
    message["To"] = email.to
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=email.sender.domain)
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if email.text_body:
        message.set_content(email.text_body + TEXT_FOOTER.format(url=unsubscribe))
    if email.html_body:
        html_body = _with_html_footer(email.html_body, HTML_FOOTER.format(url=html.escape(unsubscribe)))
        if email.text_body:
            message.add_alternative(html_body, subtype="html")
        else:
            message.set_content(html_body, subtype="html")
    return message.as_bytes()


def _with_html_footer(body: str, footer: str) -> str:
    ends = list(BODY_END.finditer(body))
    if not ends:
        return body + footer
    cut = ends[-1].start()
    return body[:cut] + footer + body[cut:]
