"""Who may see the view and act through it, and the headers every response carries.

- **Access.** On 127.0.0.1 (or ::1, localhost) and read-only, any local
  browser may look, as any local user may read the runs dir. Any other
  address, or `--allow-actions` (which act as the user who started the
  view), needs the token printed at start, in the URL once (`?token=`,
  as Jupyter does): the server answers with a cookie for this port
  (HttpOnly, SameSite=Strict) and the same URL without the token.
- **Hosts.** On a loopback address only requests naming a loopback host
  are served (`Host:`), so a web page whose name an attacker points at
  127.0.0.1 (DNS rebinding) reads nothing.
- **Actions** (cancel, label), only with `--allow-actions`: POST with the
  actions token in `X-Gage-Actions` (a value derived from the access
  token, in the pages' `<meta name="gage-actions">`; another site can
  neither read it nor send a custom header without CORS, which is never
  allowed), from this origin (`Origin`, `Sec-Fetch-Site`).
- **Headers.** A Content-Security-Policy that allows scripts from this
  server only (no inline script, no eval, nothing from the network),
  `nosniff`, no framing, no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "::1", "localhost")
ACTIONS_HEADER = "x-gage-actions"

CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    # plotly.js sets style attributes and adds a <style> element; no script can come of it
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def is_loopback(host: str) -> bool:
    return host.strip("[]") in LOOPBACK


def needs_token(host: str, allow_actions: bool) -> bool:
    """A token is needed off loopback, and for actions anywhere."""
    return allow_actions or not is_loopback(host)


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Guard:
    host: str  # the address the server is bound to
    port: int
    allow_actions: bool = False
    token: str | None = None  # None: no token needed
    _actions: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.allow_actions and not self.token:
            raise ValueError("actions need a token")
        if self.token:
            derived = hmac.new(self.token.encode(), b"gage-view actions", hashlib.sha256)
            object.__setattr__(self, "_actions", derived.hexdigest())

    @property
    def cookie_name(self) -> str:
        return f"gage-view-{self.port}"  # cookies do not tell ports apart

    @property
    def actions_token(self) -> str | None:
        return self._actions if self.allow_actions else None

    def host_allowed(self, host_header: str | None) -> bool:
        """On loopback, only requests that name a loopback host (no DNS rebinding)."""
        if not is_loopback(self.host):
            return True
        if not host_header:
            return False
        name = urlsplit("//" + host_header).hostname or ""
        return is_loopback(name)

    def token_ok(self, given: str | None) -> bool:
        return self.token is None or (
            given is not None and hmac.compare_digest(given.encode(), self.token.encode()))

    def action_refusal(self, headers: dict[str, str], host_header: str | None) -> str | None:
        """Why an action request is refused, or None if it may go on."""
        if not self.allow_actions:
            return "read-only: start gage-submit view with --allow-actions to cancel or label runs"
        given = headers.get(ACTIONS_HEADER)
        if not given or not hmac.compare_digest(given.encode(), self._actions.encode()):
            return "missing or wrong actions token"
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != (host_header or ""):
            return "cross-site request refused"
        if headers.get("sec-fetch-site", "same-origin") != "same-origin":
            return "cross-site request refused"
        return None
