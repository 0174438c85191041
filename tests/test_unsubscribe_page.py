"""The unsubscribe page's states, words and settings against the real sidecar app: confirm, done, the recipient's
undo (never of a bounce, a complaint or an unsubscribe that was not the recipient's own), languages, templates."""

import datetime
import json
import re
import string

import pytest

from feedback_http import languages
from feedback_http.config import FeedbackSettings
from gateway.admin.operations import suppress
from gateway.core.config import ConfigError
from gateway.core.errors import UndoRefused
from gateway.core.logs import contact_ref
from gateway.core.states import StatusSource
from gateway.store.contacts import change_status, get_or_create_contact
from gateway.store.models import Contact, ContactStatus, StatusChange, database, open_database
from support import ses_samples
from support.processes import free_port
from support.sns_signing import signed_envelope
from tests.test_startup import one_line, refused_at_start

READER = "reader@example.com"
PAGE_SETTINGS = {
    "MAILGW_BRAND_NAME": "Acme & <Sons>",
    "MAILGW_PRIVACY_URL": "https://acme.example/privacy?from=unsubscribe&x=1",
    "MAILGW_CONTACT_EMAIL": "privacy@acme.example",
}


@pytest.fixture
async def sidecar(make_sidecar):
    return await make_sidecar(environ=PAGE_SETTINGS)


@pytest.fixture
def contact_id(sidecar) -> str:
    with database.connection_context():
        return get_or_create_contact(READER).contact_id


def status_and_history(email: str = READER) -> tuple[ContactStatus, list[tuple[str, str, str]]]:
    with database.connection_context():
        contact = Contact.get(email=email)
        changes = StatusChange.select().where(StatusChange.contact == contact).order_by(StatusChange.id)
        return contact.status, [(c.from_status.value, c.to_status.value, c.source) for c in changes]


async def page(response) -> tuple[int, str]:
    return response.status, await response.text()


async def post_event(sidecar, signer, event: dict) -> None:
    envelope = signed_envelope(signer, message=ses_samples.message(event))
    response = await sidecar.post("/sns", data=json.dumps(envelope), headers={"Content-Type": "text/plain"})
    assert response.status == 200, await response.text()


# --- confirm -> done -> undo ------------------------------------------------------------------------------------

UNDO_FIELD = re.compile(r'<input type="hidden" name="undo" value="([A-Za-z0-9_-]+)">')


def undo_secret(done_page: str) -> str | None:
    """The secret the done page's undo form carries, if it offers the undo."""
    found = UNDO_FIELD.search(done_page)
    return found and found.group(1)


async def undo(sidecar, contact_id: str, secret: str | None = None, **headers) -> tuple[int, str]:
    data = {"undo": secret} if secret is not None else {}
    return await page(await sidecar.post(f"/unsubscribe/{contact_id}/resubscribe", data=data, headers=headers))


async def test_confirm_done_undo_and_the_history_of_each_step(sidecar, contact_id):
    status, confirm = await page(await sidecar.get(f"/unsubscribe/{contact_id}"))
    assert status == 200
    assert "<h1>Unsubscribe</h1>" in confirm
    assert "stop receiving emails from Acme &amp; &lt;Sons&gt; at r***@example.com." in confirm
    assert status_and_history() == (ContactStatus.ACTIVE, [])

    status, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))
    assert status == 200
    assert "<h1>You are unsubscribed</h1>" in done
    assert "You will not receive any more emails from Acme &amp; &lt;Sons&gt; at r***@example.com." in done
    assert f'<form method="post" action="{contact_id}/resubscribe">' in done and ">Resubscribe</button>" in done
    assert "You can undo this here for 15 minutes." in done
    secret = undo_secret(done)
    assert secret and len(secret) >= 43 and secret not in contact_id
    assert status_and_history() == (ContactStatus.UNSUBSCRIBED, [("active", "unsubscribed", "unsubscribe-page")])

    status, back = await undo(sidecar, contact_id, secret)
    assert status == 200
    assert "<h1>You are subscribed again</h1>" in back
    assert f'<form method="post" action="../{contact_id}">' in back  # and a way out again
    assert status_and_history() == (
        ContactStatus.ACTIVE,
        [("active", "unsubscribed", "unsubscribe-page"), ("unsubscribed", "active", "recipient")],
    )

    # A second press (a double click, a reload) changes nothing more.
    status, again = await undo(sidecar, contact_id, secret)
    assert status == 200 and "<h1>You are subscribed again</h1>" in again
    assert len(status_and_history()[1]) == 2

    # The way out works again, and its own undo; the first secret was used up.
    _, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))
    assert (await undo(sidecar, contact_id, secret))[0] == 403
    assert (await undo(sidecar, contact_id, undo_secret(done)))[0] == 200
    assert [source for *_, source in status_and_history()[1]] == [
        "unsubscribe-page",
        "recipient",
        "unsubscribe-page",
        "recipient",
    ]


async def test_the_contact_id_alone_lifts_no_unsubscribe(sidecar, contact_id):
    """Every caller of the API learns contact ids (GetContactStatus, a refusal's metadata): none of them is the
    recipient. A one-click unsubscribe (a mail client's POST, whose answer nobody reads) offers no undo at all."""
    status, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data="List-Unsubscribe=One-Click"))
    assert status == 200 and undo_secret(done) is None and "resubscribe" not in done.lower()
    before = status_and_history()

    for secret in (None, "", "x" * 43, "A" * 10_000):
        status, refused = await undo(sidecar, contact_id, secret)
        assert status == 403
        assert "<h1>This unsubscribe cannot be undone here</h1>" in refused
        assert "please contact Acme &amp; &lt;Sons&gt;." in refused
    assert status_and_history() == before


async def test_a_post_on_an_unsubscribed_contact_mints_nothing_that_lifts_the_earlier_unsubscribe(sidecar, contact_id):
    await sidecar.post(f"/unsubscribe/{contact_id}", data="List-Unsubscribe=One-Click")

    _, again = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))

    assert "<h1>You are unsubscribed</h1>" in again and undo_secret(again) is None
    assert (await undo(sidecar, contact_id, "anything"))[0] == 403
    assert status_and_history()[0] is ContactStatus.UNSUBSCRIBED


async def test_the_undo_window_ends(sidecar, contact_id):
    _, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))
    with database.connection_context():  # the 15 minutes have passed
        StatusChange.update(undo_until=StatusChange.created_at).execute()

    status, refused = await undo(sidecar, contact_id, undo_secret(done))

    assert status == 410
    assert "<h1>The time to undo has passed</h1>" in refused
    assert "An unsubscribe can be undone for 15 minutes only." in refused
    assert status_and_history()[0] is ContactStatus.UNSUBSCRIBED


async def test_the_undo_window_is_a_setting_and_zero_offers_none(make_sidecar):
    short = await make_sidecar(environ={"MAILGW_UNSUBSCRIBE_UNDO_SECONDS": "120"})
    with database.connection_context():
        first = get_or_create_contact("first@example.com").contact_id
        second = get_or_create_contact("second@example.com").contact_id
    _, done = await page(await short.post(f"/unsubscribe/{first}", data={"List-Unsubscribe": "Web-Form"}))
    assert "You can undo this here for 2 minutes." in done and undo_secret(done)

    none = await make_sidecar(environ={"MAILGW_UNSUBSCRIBE_UNDO_SECONDS": "0"})
    _, done = await page(await none.post(f"/unsubscribe/{second}", data={"List-Unsubscribe": "Web-Form"}))
    assert "<h1>You are unsubscribed</h1>" in done and undo_secret(done) is None


async def test_a_form_from_another_site_cannot_undo_even_with_the_secret(sidecar, contact_id):
    _, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))
    secret = undo_secret(done)

    for site in ("cross-site", "same-site"):
        status, refused = await undo(sidecar, contact_id, secret, **{"Sec-Fetch-Site": site})
        assert status == 403 and "<h1>This unsubscribe cannot be undone here</h1>" in refused
    assert status_and_history()[0] is ContactStatus.UNSUBSCRIBED

    assert (await undo(sidecar, contact_id, secret, **{"Sec-Fetch-Site": "same-origin"}))[0] == 200  # the control


async def test_the_undo_works_on_another_sidecar_of_the_same_database(make_sidecar, contact_id, sidecar):
    other = await make_sidecar(environ=PAGE_SETTINGS)
    _, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))

    status, back = await undo(other, contact_id, undo_secret(done))

    assert status == 200 and "<h1>You are subscribed again</h1>" in back
    assert status_and_history()[0] is ContactStatus.ACTIVE


async def test_an_operators_suppression_after_the_unsubscribe_is_never_lifted_by_the_undo(sidecar, contact_id):
    _, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))
    with database.connection_context():
        held = suppress(ContactStatus.UNSUBSCRIBED, reason="legal hold, ticket 12", actor="ops-alice", email=READER)
    assert not held.changed

    status, refused = await undo(sidecar, contact_id, undo_secret(done))

    assert status == 409 and "<h1>This unsubscribe cannot be undone anymore</h1>" in refused
    assert status_and_history() == (
        ContactStatus.UNSUBSCRIBED,
        [("active", "unsubscribed", "unsubscribe-page"), ("unsubscribed", "unsubscribed", "admin")],
    )


async def test_a_get_after_the_unsubscribe_says_so_instead_of_offering_the_button(sidecar, contact_id):
    await sidecar.post(f"/unsubscribe/{contact_id}", data="List-Unsubscribe=One-Click")

    status, again = await page(await sidecar.get(f"/unsubscribe/{contact_id}"))

    assert status == 200 and "<h1>You are already unsubscribed</h1>" in again
    assert "You will not receive any more emails from Acme &amp; &lt;Sons&gt; at r***@example.com." in again
    assert "<button" not in again


async def test_a_get_never_resubscribes(sidecar, contact_id):
    """Link scanners GET every link they find: the undo is a POST."""
    await sidecar.post(f"/unsubscribe/{contact_id}", data="List-Unsubscribe=One-Click")

    response = await sidecar.get(f"/unsubscribe/{contact_id}/resubscribe")

    assert response.status == 405
    assert status_and_history()[0] is ContactStatus.UNSUBSCRIBED


@pytest.mark.one_database
async def test_the_page_links_the_privacy_policy_and_the_contact_address_escaped(sidecar, contact_id):
    _, confirm = await page(await sidecar.get(f"/unsubscribe/{contact_id}"))

    assert '<p class="sender">Acme &amp; &lt;Sons&gt;</p>' in confirm
    assert "<title>Unsubscribe · Acme &amp; &lt;Sons&gt;</title>" in confirm
    assert (
        '<a href="https://acme.example/privacy?from=unsubscribe&amp;x=1" rel="noreferrer">Privacy policy</a>' in confirm
    )
    assert 'Questions? Write to <a href="mailto:privacy@acme.example">privacy@acme.example</a>' in confirm
    assert "<Sons>" not in confirm and READER not in confirm and contact_id not in confirm


@pytest.mark.one_database
async def test_without_a_brand_name_the_page_speaks_for_us(make_sidecar):
    sidecar = await make_sidecar()
    with database.connection_context():
        contact_id = get_or_create_contact(READER).contact_id

    _, confirm = await page(await sidecar.get(f"/unsubscribe/{contact_id}"))

    assert "stop receiving emails from us at r***@example.com." in confirm
    assert 'class="sender"' not in confirm and "<footer>" not in confirm


@pytest.mark.one_database
async def test_no_script_no_outside_asset_and_headers_that_keep_the_page_to_itself(sidecar, contact_id):
    response = await sidecar.get(f"/unsubscribe/{contact_id}")
    confirm = await response.text()

    assert "<script" not in confirm and " src=" not in confirm and "<link" not in confirm
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in confirm
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


# --- never an undo of what the recipient did not do here --------------------------------------------------------


@pytest.mark.parametrize(
    "event, after",
    [
        (ses_samples.bounce_event("Permanent", "General", [ses_samples.bounced_recipient(READER)]), "bounced"),
        (ses_samples.complaint_event([READER]), "complained"),
    ],
    ids=["bounce", "complaint"],
)
async def test_a_bounce_or_complaint_after_the_unsubscribe_cannot_be_undone(sidecar, signer, contact_id, event, after):
    _, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))
    await post_event(sidecar, signer, event)
    assert status_and_history()[0].value == after

    # Unsubscribing again shows the done page, without the undo.
    status, again = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))
    assert status == 200 and "<h1>You are unsubscribed</h1>" in again
    assert "resubscribe" not in again.lower()
    before = status_and_history()

    # Pressing the undo anyway (an old page, a crafted POST) is refused and changes nothing.
    status, refused = await undo(sidecar, contact_id, "anything")
    assert status == 409
    assert "<h1>This link cannot resubscribe you</h1>" in refused
    assert "Emails from Acme &amp; &lt;Sons&gt; to r***@example.com cannot be turned back on" in refused
    assert (await undo(sidecar, contact_id, undo_secret(done)))[0] == 409  # the page's own secret too
    assert status_and_history() == before


async def test_an_unsubscribe_ses_reported_is_not_the_links_to_undo(sidecar, signer, contact_id):
    await post_event(sidecar, signer, ses_samples.subscription_event(True, destination=[READER]))
    assert status_and_history() == (ContactStatus.UNSUBSCRIBED, [("active", "unsubscribed", "ses:Subscription")])

    _, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))
    assert "<h1>You are unsubscribed</h1>" in done and "resubscribe" not in done.lower()

    assert (await undo(sidecar, contact_id, "anything"))[0] == 403
    # The recipient's own unsubscribe is kept as evidence beside SES's report: it holds if the other is ever undone.
    assert status_and_history() == (
        ContactStatus.UNSUBSCRIBED,
        [("active", "unsubscribed", "ses:Subscription"), ("unsubscribed", "unsubscribed", "unsubscribe-page")],
    )


@pytest.mark.one_database
@pytest.mark.parametrize("contact_id", ["A" * 22, "short", "x" * 200])
async def test_undo_of_an_unknown_link_is_not_found(sidecar, contact_id):
    status, missing = await page(await sidecar.post(f"/unsubscribe/{contact_id}/resubscribe"))

    assert status == 404 and "<h1>Link not found</h1>" in missing
    with database.connection_context():
        assert StatusChange.select().count() == 0


async def test_the_undo_logs_a_reference_never_the_contact_id_nor_the_secret(sidecar, contact_id, caplog):
    caplog.set_level("INFO")
    _, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}", data={"List-Unsubscribe": "Web-Form"}))

    assert (await undo(sidecar, contact_id, undo_secret(done)))[0] == 200

    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert f"contact {contact_ref(contact_id)} (r***@example.com): unsubscribed -> active by recipient" in ours
    assert contact_id not in ours and READER not in ours and undo_secret(done) not in ours
    with database.connection_context():  # only its digest is kept, and only until it is used
        assert [row.undo_digest for row in StatusChange.select()] == [None, None]


# --- the status function's one narrow way down ----------------------------------------------------------------


@pytest.mark.parametrize(
    "later, refusal",
    [
        ([], None),
        ([(ContactStatus.UNSUBSCRIBED, "one-click", "")], UndoRefused.SUPERSEDED),  # evidence of another path
        ([(ContactStatus.UNSUBSCRIBED, "admin", "ops")], UndoRefused.SUPERSEDED),  # an operator's hold
        ([(ContactStatus.BOUNCED, "ses:Bounce", "")], UndoRefused.NOT_UNSUBSCRIBED),
        ([(ContactStatus.COMPLAINED, "ses:Complaint", "")], UndoRefused.NOT_UNSUBSCRIBED),
    ],
)
def test_the_recipients_undo_needs_the_secret_of_the_latest_change(database_url, later, refusal):
    open_database(database_url)
    with database.connection_context():
        minted = change_status(
            ContactStatus.UNSUBSCRIBED, source="unsubscribe-page", email=READER, undo_window=datetime.timedelta(60)
        )
        for status, source, actor in later:
            change_status(status, source=source, reason=source, email=READER, actor=actor)
        rows_before = StatusChange.select().count()

        # Neither another secret nor a named actor widens it: only the secret its own change minted.
        for wrong in ("", "x" * 43):
            with pytest.raises(UndoRefused):
                change_status(
                    ContactStatus.ACTIVE, source=StatusSource.RECIPIENT, email=READER, actor="x", undo_secret=wrong
                )
        if refusal:
            with pytest.raises(UndoRefused) as refused:
                change_status(
                    ContactStatus.ACTIVE, source=StatusSource.RECIPIENT, email=READER, undo_secret=minted.undo_secret
                )
            assert refused.value.reason == refusal
            assert StatusChange.select().count() == rows_before
        else:
            update = change_status(
                ContactStatus.ACTIVE, source=StatusSource.RECIPIENT, email=READER, undo_secret=minted.undo_secret
            )
            assert update.changed and Contact.get(email=READER).status is ContactStatus.ACTIVE


# --- languages --------------------------------------------------------------------------------------------------


@pytest.mark.one_database
@pytest.mark.parametrize(
    "accept_language, lang, heading",
    [
        ("de-DE,de;q=0.9,en;q=0.5", "de", "Abmelden"),
        ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "fr", "Se désabonner"),
        ("es-419,es;q=0.9", "es", "Darse de baja"),
        ("ja,zh;q=0.9", "en", "Unsubscribe"),
        ("", "en", "Unsubscribe"),
    ],
)
async def test_the_page_speaks_the_language_the_browser_asks_for(sidecar, contact_id, accept_language, lang, heading):
    response = await sidecar.get(f"/unsubscribe/{contact_id}", headers={"Accept-Language": accept_language})
    confirm = await response.text()

    assert f'<html lang="{lang}">' in confirm and f"<h1>{heading}</h1>" in confirm
    assert response.headers["Content-Language"] == lang
    assert response.headers["Vary"] == "Accept-Language"


@pytest.mark.one_database
async def test_every_state_in_german_with_a_lang_override_carried_through_the_forms(sidecar, contact_id):
    english = {"Accept-Language": "en"}  # ?lang= wins over the header
    _, confirm = await page(await sidecar.get(f"/unsubscribe/{contact_id}?lang=de", headers=english))
    assert "<h1>Abmelden</h1>" in confirm

    _, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}?lang=de", headers=english))
    assert "<h1>Sie sind abgemeldet</h1>" in done
    assert "Sie erhalten keine E-Mails mehr von Acme &amp; &lt;Sons&gt; an r***@example.com." in done
    assert f'action="{contact_id}/resubscribe?lang=de"' in done and ">Wieder anmelden</button>" in done
    assert (
        '<a href="https://acme.example/privacy?from=unsubscribe&amp;x=1" rel="noreferrer">Datenschutzerklärung' in done
    )

    secret = {"undo": undo_secret(done)}
    _, back = await page(
        await sidecar.post(f"/unsubscribe/{contact_id}/resubscribe?lang=de", data=secret, headers=english)
    )
    assert "<h1>Sie sind wieder angemeldet</h1>" in back and f'action="../{contact_id}?lang=de"' in back


@pytest.mark.parametrize(
    "header, expected",
    [
        ("de", "de"),
        ("DE-at", "de"),
        ("en;q=0.5, es;q=0.8", "es"),  # weight, not order
        ("fr;q=0.8, es;q=0.8", "fr"),  # equal weights: the order given
        ("en;q=0.5, es;q=0.8, fr", "fr"),
        ("de;q=0, *", "en"),  # anything but German
        ("en;q=0, de;q=0, *", "fr"),
        ("*", "en"),
        ("de;q=1.5, es", "es"),  # a weight above 1 is malformed: that entry is ignored
        ("de;q=0.0001, es;q=0.1", "es"),  # at most three decimals
        ("de;level=1, es;q=0.1", "es"),  # only q is a parameter of Accept-Language
        ("x-klingon, es;q=0.1", "es"),
        ("12, ,;;, fr", "fr"),
        ("it, pt;q=0.9", "en"),
        (",".join(["it"] * 600) + ",de", "en"),  # past MAX_ACCEPT_LANGUAGE nothing is read
    ],
)
def test_accept_language_weights_ranges_and_malformed_entries(header, expected):
    assert languages.choose(header) == expected


def test_every_language_has_every_text_and_the_same_placeholders():
    english = languages.MESSAGES["en"]
    for language, catalogue in languages.MESSAGES.items():
        assert catalogue.keys() == english.keys(), language
        for key, text in catalogue.items():
            assert set(_placeholders(text)) == set(_placeholders(english[key])), (language, key)


def _placeholders(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


# --- settings and templates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("MAILGW_PRIVACY_URL", "javascript:alert(1)", "MAILGW_PRIVACY_URL must be an http(s) URL"),
        ("MAILGW_PRIVACY_URL", "acme.example/privacy", "MAILGW_PRIVACY_URL must be an http(s) URL"),
        ("MAILGW_PRIVACY_URL", "https://[::1/privacy", "MAILGW_PRIVACY_URL must be an http(s) URL"),
        ("MAILGW_CONTACT_EMAIL", "privacy at acme", "MAILGW_CONTACT_EMAIL must be an email address"),
        ("MAILGW_CONTACT_EMAIL", "Acme <privacy@acme.example>", "MAILGW_CONTACT_EMAIL must be an email address"),
        ("MAILGW_BRAND_NAME", "x" * 101, "MAILGW_BRAND_NAME must be printable text of at most 100"),
        ("MAILGW_TEMPLATES_DIR", "/nonexistent/templates", "MAILGW_TEMPLATES_DIR is not a directory"),
    ],
)
def test_a_bad_page_setting_is_refused_naming_the_variable(variable, value, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        FeedbackSettings.from_env({variable: value})


@pytest.mark.one_database
async def test_an_operators_template_replaces_ours_by_name(make_sidecar, tmp_path):
    (tmp_path / "confirm.html").write_text(
        '{% extends "base.html" %}{% block content %}<p class="ours">{{ t.confirm_body }}</p>'
        '<form method="post"><button>{{ t.confirm_button }}</button></form>{% endblock %}',
        encoding="utf-8",
    )
    sidecar = await make_sidecar(environ=PAGE_SETTINGS | {"MAILGW_TEMPLATES_DIR": str(tmp_path)})
    with database.connection_context():
        contact_id = get_or_create_contact(READER).contact_id

    _, confirm = await page(await sidecar.get(f"/unsubscribe/{contact_id}", headers={"Accept-Language": "es"}))
    _, done = await page(await sidecar.post(f"/unsubscribe/{contact_id}"))

    assert '<p class="ours">Pulse el botón para dejar de recibir correos de Acme &amp; &lt;Sons&gt;' in confirm
    assert '<p class="sender">Acme &amp; &lt;Sons&gt;</p>' in confirm  # our base.html, still escaping
    assert "<h1>You are unsubscribed</h1>" in done  # our done.html


@pytest.mark.slow
def test_a_broken_template_stops_the_sidecar_with_one_line(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "done.html").write_text(
        "{% extends 'base.html' %}{% block content %}{{ t.no_such_text }}{% endblock %}"
    )
    env = {
        "MAILGW_DATABASE_URL": f"sqlite:///{tmp_path}/db",
        "MAILGW_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "MAILGW_TEMPLATES_DIR": str(templates),
    }

    code, output = refused_at_start(["-m", "feedback_http"], env)

    assert code == 2
    assert one_line(output).startswith("mailgw: MAILGW_TEMPLATES_DIR: ")
    assert "done.html" in output
