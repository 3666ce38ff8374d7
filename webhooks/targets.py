"""Where a webhook may be sent (SSRF): an https address on the public internet.

A target on a loopback, private, link-local, shared or reserved address could reach the
municipality's own network from the service's side (its Temporal server, its database, a
cloud's metadata endpoint), so it is refused, both when the endpoint is registered and
before every attempt (a name can come to point elsewhere), unless the settings allow it
(AGREEMENTS_WEBHOOKS_ALLOW_PRIVATE: trials on one machine, tests). Redirects are never
followed (webhooks/send.py), so an answer cannot lead the service elsewhere either.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL = 2000


class TargetRefused(ValueError):
    """The address may not be used: `code` says why, `params` with what."""

    def __init__(self, code: str, **params: str) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


def check(url: str, allow_private: bool) -> str:
    """The address, checked: https (or http when private targets are allowed), a host, no
    credentials in it, and every address its host resolves to public. Raises
    TargetRefused."""
    url = url.strip()
    if not url or len(url) > MAX_URL or any(c.isspace() for c in url):
        raise TargetRefused("webhook-url-invalid", url=url[:200])
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise TargetRefused("webhook-url-scheme", url=url[:200])
    if not parts.hostname or parts.username or parts.password:
        raise TargetRefused("webhook-url-invalid", url=url[:200])
    if not allow_private:
        for address in resolve(parts.hostname, parts.port or 443):
            if not address.is_global or address.is_multicast:
                raise TargetRefused("webhook-url-private", host=parts.hostname)
    return url


def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address the host name stands for (a literal address stands for itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise TargetRefused("webhook-url-unknown", host=host) from error
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]
    # An IPv4 address mapped into IPv6 is the IPv4 address it maps
    return [
        a.ipv4_mapped if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped else a
        for a in addresses
    ]
