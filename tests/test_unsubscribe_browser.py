"""The unsubscribe page in a real browser: Debian's headless Chromium, driven through chromedriver (selenium), against
a real sidecar process on a free port. Confirm -> done -> undo on a 375-px phone screen with JavaScript off, the
database checked after each step; the recipient's language from the browser's own Accept-Language."""

import contextlib
import shutil
import struct
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from gateway.store.contacts import get_or_create_contact
from gateway.store.models import Contact, ContactStatus, StatusChange, database, open_database
from support.processes import free_port, start, wait_until

# A long domain without a hyphen (where a browser would break a line anyway): the address must wrap, not widen the page.
ADDRESS = "reader@mail.departmentofcustomercorrespondence.exampleorganisation.org"
SHOWN = "r***@mail.departmentofcustomercorrespondence.exampleorganisation.org"
BRAND = "Acme & Sons"
PRIVACY_URL = "https://acme.example/privacy"
CONTACT = "privacy@acme.example"
PHONE_WIDTH = 375
PIXEL_RATIO = 2
FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers have a small /dev/shm
]
NEEDS = "Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)"


@contextlib.contextmanager
def running_sidecar(database_url: str):
    """`python -m feedback_http` on a free port with the page's settings; its base URL. The test process opens the
    same database to seed contacts and read what the clicks did."""
    port = free_port()
    env = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_HTTP_ADDR": f"127.0.0.1:{port}",
        "MAILGW_BRAND_NAME": BRAND,
        "MAILGW_PRIVACY_URL": PRIVACY_URL,
        "MAILGW_CONTACT_EMAIL": CONTACT,
    }
    process = start(["-m", "feedback_http"], env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{base_url}/healthz", timeout=1).status == 200, process)
        open_database(database_url)
        yield base_url
    finally:
        process.terminate()
        if database.obj is not None:
            database.close_all()
    assert process.wait(30) == 0, process.stdout.read()


@contextlib.contextmanager
def chromium(profile: Path, *, accept_language: str = "en-US,en", javascript: bool = False):
    """A fresh headless Chromium on a 375-px phone screen, with the given Accept-Language, JavaScript off unless
    asked for."""
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.fail(f"this test needs {NEEDS}")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    prefs = {"intl.accept_languages": accept_language}
    if not javascript:
        prefs["profile.managed_default_content_settings.javascript"] = 2  # blocked, as a user can set it
    options.add_experimental_option("prefs", prefs)
    options.add_experimental_option(
        "mobileEmulation",
        {"deviceMetrics": {"width": PHONE_WIDTH, "height": 812, "pixelRatio": PIXEL_RATIO, "mobile": True}},
    )
    # The driver named explicitly: Selenium Manager would otherwise try to download one.
    service = Service(executable_path=driver_path, log_output=str(profile.with_suffix(".chromedriver.log")))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    driver.command_executor.client_config.timeout = 60  # a command that hangs fails the test instead of holding it
    try:
        yield driver
    finally:
        driver.quit()


def seed(email: str) -> str:
    with database.connection_context():
        return get_or_create_contact(email).contact_id


def status_and_history(email: str) -> tuple[ContactStatus, list[tuple[str, str, str]]]:
    with database.connection_context():
        contact = Contact.get(email=email)
        changes = StatusChange.select().where(StatusChange.contact == contact).order_by(StatusChange.id)
        return contact.status, [(c.from_status.value, c.to_status.value, c.source) for c in changes]


def heading(driver) -> str:
    return driver.find_element(By.TAG_NAME, "h1").text


def press(driver, button_text: str, next_heading: str, *, keyboard: bool = False) -> None:
    """Press the button that reads `button_text` with the mouse, or with the Enter key as a keyboard user does, and
    wait for the page that follows. With JavaScript off only the keyboard will do: chromedriver's mouse click waits
    for a script of its own in the page, which then never runs."""
    button = driver.find_element(By.XPATH, f"//button[normalize-space()='{button_text}']")
    if keyboard:
        button.send_keys(Keys.ENTER)
    else:
        button.click()
    # While the next page replaces this one, chromedriver may answer for the old heading with a stale element or
    # "Node with given id does not belong to the document" (an unknown error): both mean "not there yet".
    WebDriverWait(driver, 15, ignored_exceptions=[StaleElementReferenceException, WebDriverException]).until(
        lambda d: heading(d) == next_heading
    )


def fits_the_phone(driver) -> None:
    """Nothing wider than the screen: no sideways scrolling."""
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth]"
    )
    assert widths[0] <= PHONE_WIDTH and widths[2] == PHONE_WIDTH, widths


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_confirm_done_undo_on_a_phone_with_javascript_off(database_url, tmp_path):
    with running_sidecar(database_url) as base_url, chromium(tmp_path / "profile") as driver:
        # JavaScript is really off: a page script does not run (so every step below works without one).
        driver.get("data:text/html,<title>before</title><script>document.title='after'</script>")
        assert driver.title == "before"

        contact_id = seed(ADDRESS)
        driver.get(f"{base_url}/unsubscribe/{contact_id}")

        assert heading(driver) == "Unsubscribe"
        body = driver.find_element(By.TAG_NAME, "body").text
        assert BRAND in body and f"stop receiving emails from {BRAND} at {SHOWN}." in body
        assert driver.find_element(By.LINK_TEXT, "Privacy policy").get_attribute("href") == PRIVACY_URL
        assert driver.find_element(By.LINK_TEXT, CONTACT).get_attribute("href") == f"mailto:{CONTACT}"
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0  # no assets
        fits_the_phone(driver)
        assert status_and_history(ADDRESS) == (ContactStatus.ACTIVE, [])  # the GET changed nothing

        press(driver, "Unsubscribe", "You are unsubscribed", keyboard=True)
        assert f"You will not receive any more emails from {BRAND} at {SHOWN}." in driver.page_source.replace(
            "&amp;", "&"
        )
        fits_the_phone(driver)
        screenshot = tmp_path / "done-375px.png"
        assert driver.get_screenshot_as_file(str(screenshot))
        assert png_size(screenshot)[0] == PHONE_WIDTH * PIXEL_RATIO
        assert status_and_history(ADDRESS) == (
            ContactStatus.UNSUBSCRIBED,
            [("active", "unsubscribed", "unsubscribe-page")],
        )

        press(driver, "Resubscribe", "You are subscribed again", keyboard=True)
        fits_the_phone(driver)
        driver.get_screenshot_as_file(str(tmp_path / "resubscribed-375px.png"))
        assert status_and_history(ADDRESS) == (
            ContactStatus.ACTIVE,
            [("active", "unsubscribed", "unsubscribe-page"), ("unsubscribed", "active", "recipient")],
        )

        # Reloading the page of the undo is a GET of the link: it shows the confirm page and changes nothing.
        driver.get(f"{base_url}/unsubscribe/{contact_id}")
        assert heading(driver) == "Unsubscribe"
        assert len(status_and_history(ADDRESS)[1]) == 2


@pytest.mark.slow
def test_a_form_on_another_site_cannot_undo_even_with_the_secret(database_url, tmp_path):
    """The undo's secret is only in the done page of the browser that unsubscribed; should another site learn it, its
    form is still refused (the browser's Sec-Fetch-Site says the request is not the page's own)."""
    with running_sidecar(database_url) as base_url, chromium(tmp_path / "profile") as driver:
        contact_id = seed(ADDRESS)
        driver.get(f"{base_url}/unsubscribe/{contact_id}")
        press(driver, "Unsubscribe", "You are unsubscribed", keyboard=True)
        secret = driver.find_element(By.NAME, "undo").get_attribute("value")
        done_tab = driver.current_window_handle

        driver.switch_to.new_window("tab")
        driver.get(
            "data:text/html,<title>elsewhere</title>"
            f'<form method="post" action="{base_url}/unsubscribe/{contact_id}/resubscribe">'
            f'<input type="hidden" name="undo" value="{secret}"><button>Resubscribe</button></form>'
        )
        press(driver, "Resubscribe", "This unsubscribe cannot be undone here", keyboard=True)
        assert status_and_history(ADDRESS)[0] is ContactStatus.UNSUBSCRIBED

        driver.switch_to.window(done_tab)  # the recipient's own page still can
        press(driver, "Resubscribe", "You are subscribed again", keyboard=True)
        assert status_and_history(ADDRESS)[0] is ContactStatus.ACTIVE


@pytest.mark.slow
@pytest.mark.parametrize(
    "accept_language, html_lang, confirm, done, undo",
    [
        ("de-DE,de", "de", "Abmelden", "Sie sind abgemeldet", "Wieder anmelden"),
        ("fr-FR,fr", "fr", "Se désabonner", "Votre désabonnement est confirmé", "Se réabonner"),
        ("es-ES,es", "es", "Darse de baja", "Se ha dado de baja", "Volver a suscribirse"),
    ],
    ids=["de", "fr", "es"],
)
def test_the_browsers_language_picks_the_pages(tmp_path, accept_language, html_lang, confirm, done, undo):
    # JavaScript on here, and the mouse: the other way a recipient presses the buttons.
    with (
        running_sidecar(f"sqlite:///{tmp_path}/mailgw.db") as base_url,
        chromium(tmp_path / "profile", accept_language=accept_language, javascript=True) as driver,
    ):
        driver.get(f"{base_url}/unsubscribe/{seed(ADDRESS)}")
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == html_lang
        assert heading(driver) == confirm

        press(driver, confirm, done)
        assert driver.find_element(By.XPATH, f"//button[normalize-space()='{undo}']").is_displayed()
        fits_the_phone(driver)
        driver.get_screenshot_as_file(str(tmp_path / f"done-{html_lang}-375px.png"))
        assert status_and_history(ADDRESS)[0] is ContactStatus.UNSUBSCRIBED
