"""What must never be shown: passwords in URLs and secret settings. Every place that prints,
logs or returns a URL or a setting goes through here (docs/CONFIGURATION.md)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Settings whose whole value is a secret.
SECRET_SUFFIXES = ("TOKEN", "PASSWORD", "SECRET", "API_KEY")
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)\S+")


def redact(url: str) -> str:
    """`url` (a URL or a key=value DSN) without its password, for printing."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL that parses (a malformed IPv6 host, say): show none of it
        return MASK
    if password:
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))
    return _DSN_PASSWORD.sub(rf"\g<1>{MASK}", url)


def shown_setting(name: str, value: str) -> str:
    """A setting's value as `alphaplus config` may print it."""
    if not value:
        return value
    if name.endswith(SECRET_SUFFIXES):
        return MASK
    if name.endswith("_URL") or "://" in value:
        return ",".join(redact(part) for part in value.split(","))
    return value
