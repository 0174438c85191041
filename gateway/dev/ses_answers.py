"""How the SES v2 API answers an error, for the stand-in's routes: the code in x-amzn-ErrorType (botocore reads it
there) and {"message"} as JSON, or a raw body as text/html (what a proxy or load balancer in front of SES answers)."""

from aiohttp import web


def error(status: int, code: str, message: str, body: str | None = None) -> web.Response:
    headers = {"x-amzn-ErrorType": code} if code else {}
    if body is not None:
        return web.Response(text=body, status=status, content_type="text/html", headers=headers)
    return web.json_response({"message": message}, status=status, headers=headers)
