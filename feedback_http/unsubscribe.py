"""The unsubscribe pages: GET shows a confirm button (link scanners change nothing), POST unsubscribes."""

from aiohttp import web

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font: 1.125rem/1.5 system-ui, sans-serif; margin: 0; padding: 2rem 1rem; color: #1a1a1a; background: #fff; }}
main {{ max-width: 32rem; margin: 0 auto; }}
button {{ font: inherit; padding: .6rem 1.4rem; border: 2px solid #1a1a1a; border-radius: .4rem; background: #1a1a1a;
  color: #fff; cursor: pointer; }}
button:focus-visible {{ outline: 3px solid #0a58ca; outline-offset: 3px; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
{content}
</main>
</body>
</html>
"""
CONFIRM = """<p>Press the button to stop receiving emails from us at this address.</p>
<form method="post">
<button type="submit" name="List-Unsubscribe" value="Web-Form">Unsubscribe</button>
</form>"""
DONE = "<p>You will not receive any more emails from us at this address.</p>"
NOT_FOUND = "<p>This unsubscribe link is not valid. Please use the link in the most recent email you received.</p>"

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def confirm_page() -> web.Response:
    return _page("Unsubscribe", CONFIRM, 200)


def done_page() -> web.Response:
    return _page("You are unsubscribed", DONE, 200)


def not_found_page() -> web.Response:
    return _page("Link not found", NOT_FOUND, 404)


def _page(title: str, content: str, status: int) -> web.Response:
    return web.Response(
        text=PAGE.format(title=title, content=content), status=status, content_type="text/html", headers=HEADERS
    )
