"""The dashboard's access rules, as ASGI middleware: a token when it is reachable from other machines, and
headers that keep a page from running anything it did not ship.

Token: accepted as ``Authorization: Bearer <token>``, an ``X-Palaestra-Token`` header, the
``palaestra_token`` cookie, or once as ``?token=<token>``, which answers with a redirect to the same URL
without it and sets the cookie (so the token does not stay in the address bar, the history or a
``Referer``). Anything else gets 401. Compared in constant time.

On a loopback address without a token the ``Host`` header must name the loopback host: otherwise a web page
could point a name it controls at 127.0.0.1 (DNS rebinding) and read the dashboard through the browser.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "palaestra_token"
HEADER = "x-palaestra-token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

# Scripts only from the dashboard itself (no inline script, no eval); no inline styles; nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    if header.startswith("["):  # [::1]:8765
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


async def _plain(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class AccessGuard:
    """Checks the token (when one is set) and the Host header (when bound to loopback) on every request,
    and adds the security headers to every response."""

    def __init__(self, app: ASGIApp, *, token: str | None, check_host: bool) -> None:
        self.app = app
        self.token = token
        self.check_host = check_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.check_host and not is_loopback(_host_name(headers.get("host", ""))):
            await _plain(send, 400, "this dashboard only answers requests addressed to localhost or 127.0.0.1\n")
            return
        if self.token is not None:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given = dict(query).get("token")
            if given is not None and self._matches(given):
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                await _plain(
                    send,
                    303,
                    "token accepted\n",
                    [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1"))],
                )
                return
            if not self._authorised(headers):
                await _plain(
                    send,
                    401,
                    "this dashboard needs its access token: open the URL it printed when it started "
                    "(...?token=...), or send the header 'Authorization: Bearer <token>'\n",
                    [(b"www-authenticate", b'Bearer realm="palaestra"')],
                )
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in present
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _matches(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _authorised(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and self._matches(auth[7:].strip()):
            return True
        if HEADER in headers and self._matches(headers[HEADER]):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no token
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and self._matches(morsel.value)
