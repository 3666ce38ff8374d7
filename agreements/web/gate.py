"""Who is asking: a signed-in person (a session kept on the server), a personal API token,
or the local key from this machine; and sign-in through OpenID Connect with Authlib.

A session cookie holds 32 random bytes; the server keeps their SHA-256 with the person, and
the session ends at logout, on revocation, `session_hours` after sign-in or
`session_idle_minutes` after its last request. Behind HTTPS the cookie is `__Host-` prefixed
and Secure. It is SameSite=Lax (the identity provider sends the browser back with a
top-level navigation from another site, which a Strict cookie would miss); forms carry a
CSRF value derived from the session, as before.

The local key (`AGREEMENTS_API_TOKEN`) is taken only from a request that came from this
machine (a loopback address) and carries no proxy header: behind a reverse proxy every
request would look local, and a proxy always adds X-Forwarded-For (or Forwarded).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import secrets
import warnings
from functools import cached_property
from typing import Any

from fastapi import Request
from sqlalchemy import Engine
from sqlmodel import Session

from agreements import access
from agreements.access import Who
from agreements.web.security import Throttle, same
from models.config import Settings
from models.db import ready
from models.people import SignInState
from models.records import utcnow

with warnings.catch_warnings():
    # Authlib 1.9 says on import that it prefers the httpx2 fork; it works with httpx, which
    # FastAPI and this project use. Silenced here so `agreements up` prints no such line.
    import authlib.deprecate  # sets its warnings to "always" as it loads; ignored after

    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.starlette_client import OAuth, OAuthError

SIGN_IN_COOKIE = "avtal_signin"  # the sign-in under way (its state on the server)
SIGN_IN_LASTS = dt.timedelta(minutes=10)
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


class SignInFailed(Exception):
    """The identity provider's answer could not be used; the message says why (English,
    for the log; the person is shown a message in their language)."""


def loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Gate:
    def __init__(self, config: Settings, throttle: Throttle) -> None:
        self.config = config
        self.throttle = throttle
        self.https = config.public_base_url.startswith("https://")
        self.cookie = "__Host-avtal_session" if self.https else "avtal_session"
        self.secret = config.signing_secret.get_secret_value().encode()
        self.local_key = config.api_token.get_secret_value()
        self.lasts = dt.timedelta(hours=config.session_hours)
        self.idle = dt.timedelta(minutes=config.session_idle_minutes)
        self.oauth = OAuth()
        if config.oidc_issuer and config.oidc_client_id:
            secret = config.oidc_client_secret
            self.oauth.register(
                "idp",
                client_id=config.oidc_client_id,
                client_secret=secret.get_secret_value() if secret else None,
                server_metadata_url=config.oidc_issuer.rstrip("/")
                + "/.well-known/openid-configuration",
                client_kwargs={"scope": config.oidc_scopes, "code_challenge_method": "S256"},
            )

    @cached_property
    def db(self) -> Engine:
        return ready(self.config.db_url())

    @property
    def oidc(self) -> bool:
        return self.oauth.create_client("idp") is not None

    def is_local(self, request: Request) -> bool:
        """From this machine, not through a proxy: where the local key is taken."""
        host = request.client.host if request.client else None
        return loopback(host) and not any(h in request.headers for h in PROXY_HEADERS)

    # --- who is asking ---------------------------------------------------------------------

    def from_cookie(self, request: Request) -> Who | None:
        value = request.cookies.get(self.cookie, "")
        if not value:
            return None
        who = access.session_person(self.db, value, self.idle)
        if who is not None and who.local and not self.is_local(request):
            return None
        return who

    def from_bearer(self, request: Request) -> Who | None:
        """The person (or the local key) an `Authorization: Bearer` header names; None when
        it names nobody (a failure is counted by the caller)."""
        header = request.headers.get("authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            return None
        value = value.strip()
        if value.startswith(access.TOKEN_PREFIX):
            return access.token_person(self.db, value)
        if self.is_local(request) and same(value, self.local_key):
            return Who(person_id=None, email="", local=True)
        return None

    def csrf(self, who: Who | None) -> str:
        """The CSRF value of a session (empty without one: no form is taken then)."""
        if who is None or who.session is None:
            return ""
        return hmac.new(self.secret, b"csrf:" + who.session.encode(), hashlib.sha256).hexdigest()

    def feed_key(self, agreement_id: str, person_id: int | None) -> str:
        """A calendar feed's key: bound to the agreement and to the person it was given to,
        whose right to read the agreement is checked at every fetch."""
        message = f"feed:{person_id or 0}:{agreement_id}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:32]

    # --- sessions ------------------------------------------------------------------------------

    def open(self, response: Any, person_id: int | None) -> None:
        value = access.open_session(self.db, person_id, self.lasts)
        response.set_cookie(
            self.cookie,
            value,
            max_age=int(self.lasts.total_seconds()),
            httponly=True,
            secure=self.https,
            samesite="lax",
            path="/",
        )

    def close(self, request: Request, response: Any) -> None:
        value = request.cookies.get(self.cookie, "")
        if value:
            access.end_session(self.db, value, "logout")
        response.delete_cookie(self.cookie, path="/", secure=self.https, httponly=True)

    # --- OpenID Connect --------------------------------------------------------------------------

    async def start(self, request: Request, response_cookie: list[str]) -> Any:
        """The redirect to the identity provider. Authlib keeps the state, nonce and PKCE
        verifier in `request.session`; here that is a dict kept on the server, found again
        through a short-lived cookie (whose value is put in `response_cookie`)."""
        client = self.oauth.create_client("idp")
        request.scope["session"] = {}
        redirect = await client.authorize_redirect(
            request, self.config.public_base_url.rstrip("/") + "/login/callback"
        )
        value = secrets.token_urlsafe(32)
        with Session(self.db) as session:
            session.add(
                SignInState(
                    id_sha256=access.digest(value), data_json=json.dumps(request.scope["session"])
                )
            )
            session.commit()
        response_cookie.append(value)
        return redirect

    async def finish(self, request: Request) -> dict[str, Any]:
        """The claims of the person the identity provider sent back (the ID token checked by
        Authlib: signature, issuer, audience, expiry, nonce); SignInFailed otherwise."""
        value = request.cookies.get(SIGN_IN_COOKIE, "")
        if not value or len(value) > 100:
            raise SignInFailed("no sign-in under way in this browser")
        with Session(self.db) as session:
            row = session.get(SignInState, access.digest(value))
            if row is None:
                raise SignInFailed("the sign-in was already used or is unknown")
            session.delete(row)  # used once
            session.commit()
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
        if utcnow() - created > SIGN_IN_LASTS:
            raise SignInFailed("the sign-in took too long")
        request.scope["session"] = json.loads(row.data_json)
        client = self.oauth.create_client("idp")
        try:
            token = await client.authorize_access_token(request)
        except OAuthError as error:
            raise SignInFailed(f"the identity provider refused: {error.error}") from None
        except Exception as error:  # a provider that is down or answers nonsense
            raise SignInFailed(f"the identity provider could not be asked: {error!r}") from None
        claims = token.get("userinfo")
        if not claims or not claims.get("sub"):
            raise SignInFailed("the identity provider sent no ID token")
        claims = dict(claims)
        if not claims.get("email"):  # some providers name the person at userinfo only
            try:
                more = await client.userinfo(token=token)
            except Exception as error:
                raise SignInFailed(f"the userinfo endpoint could not be asked: {error!r}") from None
            if more.get("sub") == claims["sub"]:
                claims = {**dict(more), **claims}
        return claims
