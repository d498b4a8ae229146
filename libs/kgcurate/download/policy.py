"""Politeness rules as data: which X-Robots-Tag directives opt an image out, and when/how long to retry.

Both are frozen dataclasses so a run's rules are part of its config, printed and compared like any
other parameter, and both are pure (no I/O, no clock) so they are tested without a server.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from kgcurate.download import status as st

DEFAULT_OPT_OUT = ("noai", "noimageai")
# What img2dataset refuses by default: also the search-engine directives.
IMG2DATASET_OPT_OUT = ("noai", "noimageai", "noindex", "noimageindex")
DEFAULT_UA_TOKEN = "kgcurate"

# Directives whose own syntax has a colon ("max-snippet: 20", "unavailable_after: 2030-01-01"): the part
# before that colon is the directive, not a user agent, so it must not be read as "for another bot".
_VALUED_DIRECTIVES = frozenset({"max-snippet", "max-image-preview", "max-video-preview", "unavailable_after"})
# A user-agent token (RFC 9309: letters, digits, "_", "-"; dots seen in practice). Text before a colon that
# is not one, such as "21 oct 2015 07" from "unavailable_after: Wed, 21 Oct 2015 07:28:00 GMT" cut at its
# comma, continues the previous directive: it must not start a scope for a bot of that name.
_BOT_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.\-]*")


@dataclass(frozen=True)
class OptOut:
    """Which ``X-Robots-Tag`` directives make us skip an image.

    A header value is a comma-separated list of directives, optionally led by ``<bot>:``; a bot prefix
    applies to the directives after it in that value. Directives with no prefix, or prefixed with one of
    our tokens (``kgcurate``, and the product name of a ``--user-agent`` of the user's own), apply to us;
    those for another bot (``otherbot: noai``) do not. Case-insensitive throughout.
    """

    directives: tuple[str, ...] = DEFAULT_OPT_OUT
    user_agent_tokens: tuple[str, ...] = (DEFAULT_UA_TOKEN,)

    def check(self, header_values: Iterable[str]) -> str | None:
        """The first directive (lower case) that opts us out across all header values, or None."""
        refused = {d.lower() for d in self.directives}
        me = {t.lower() for t in self.user_agent_tokens}
        for value in header_values:
            bot: str | None = None
            for item in value.split(","):
                directive = item.strip().lower()
                if ":" in directive:
                    head, rest = (part.strip() for part in directive.split(":", 1))
                    if head not in _VALUED_DIRECTIVES and _BOT_TOKEN.fullmatch(head):
                        bot, directive = head, rest
                if (bot is None or bot in me) and directive in refused:
                    return directive
        return None


def defaults_left_out(directives: Iterable[str]) -> tuple[str, ...]:
    """The default opt-outs (``noai``, ``noimageai``) a configured list lacks: ``--opt-out`` replaces the
    list, so ``--opt-out noindex,noimageindex`` meant as an addition stops honouring a site's no to AI use."""
    given = {d.strip().lower() for d in directives}
    return tuple(d for d in DEFAULT_OPT_OUT if d not in given)


def user_agent_problem(user_agent: str) -> str | None:
    """Why ``user_agent`` cannot be sent as a header, or None: a line break or other control character
    (a second header smuggled in, or a request http.client refuses) or a character outside Latin-1 (what
    http.client encodes headers as). Either failed every URL of a run as an internal_error."""
    for ch in user_agent:
        if ch != "\t" and unicodedata.category(ch) == "Cc":
            return f"control character {ch!r} (a line break or the like) in it"
        if ord(ch) > 0xFF:
            return f"character {ch!r} outside Latin-1 in it (HTTP headers are sent as Latin-1)"
    return None


# Product tokens of browser-like User-Agents ("Mozilla/5.0 (compatible; AcmeBot/2.1)"): not a bot's name.
_BROWSER_TOKENS = frozenset({"mozilla", "applewebkit", "khtml", "gecko", "chrome", "safari", "version", "mobile"})
_PRODUCT = re.compile(r"(?:^|[\s(;])([A-Za-z][A-Za-z0-9_.\-]*)(?=/\S)|^\s*([A-Za-z][A-Za-z0-9_.\-]*)\s*$")


def user_agent_tokens(user_agent: str | None) -> tuple[str, ...]:
    """The bot names a site may address us by: ``kgcurate``, and the product names of a custom User-Agent
    (``AcmeResearch/1.0 (+https://acme.example)`` -> ``acmeresearch``; ``Mozilla/5.0 (compatible;
    AcmeBot/2.1)`` -> ``acmebot``): the name the site sees in its logs and writes in ``X-Robots-Tag:
    acmeresearch: noai``."""
    tokens = [DEFAULT_UA_TOKEN]
    for versioned, bare in _PRODUCT.findall(user_agent or ""):
        name = (versioned or bare).lower()
        if name not in tokens and name not in _BROWSER_TOKENS and name != "compatible" and _BOT_TOKEN.fullmatch(name):
            tokens.append(name)
    return tuple(tokens)


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed attempt is tried again and after how long.

    Retried: timeouts, HTTP 429 and 5xx, because they say "not now" rather than "no". Never retried:
    other 4xx, decode errors, refused addresses, ... (a second try gives the same answer and costs the
    site a request). Delays back off exponentially from ``base_delay``, capped at ``max_delay``, with a
    jitter drawn from a hash of (url, attempt) so a rerun waits exactly as long as the first run did.
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 0.5  # a delay is stretched by a factor in [1, 1 + jitter)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.jitter < 0:
            raise ValueError("base_delay, max_delay and jitter must be >= 0")

    @staticmethod
    def retryable(status: str, http_status: int | None) -> bool:
        """Whether an attempt that ended in ``status`` (with ``http_status``, if any) is worth repeating."""
        if status == st.TIMEOUT:
            return True
        return status == st.HTTP_ERROR and http_status is not None and (http_status == 429 or http_status >= 500)

    def delay(self, url: str, attempt: int, retry_after: str | None = None, date: str | None = None) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) of ``url``; None: do not try
        again in this run.

        A ``Retry-After`` (seconds, or an HTTP-date measured against the response's ``date`` header, the
        server's clock, else ours) wins over the backoff. One longer than ``max_delay`` (an infinite one
        too) is None: asking again before the time the server named would not honour it, so the URL keeps
        its status for ``download --retry-failed``. An unreadable one falls back to the backoff.
        """
        seconds = retry_after_seconds(retry_after, date)
        if seconds is not None:
            return seconds if seconds <= self.max_delay else None
        digest = hashlib.blake2b(f"{attempt}\x00{url}".encode(), digest_size=8).digest()
        fraction = int.from_bytes(digest, "big") / 2**64
        backoff = self.base_delay * 2 ** min(attempt - 1, 62) * (1 + self.jitter * fraction)
        return min(backoff, self.max_delay)


def retry_after_seconds(value: str | None, date: str | None = None,
                        now: datetime.datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds (None: absent or unreadable). Its HTTP-date form (RFC 9110) is
    how long from the response's ``Date`` (the server's clock, so a skewed local clock does not matter), or
    from ``now`` without one; a date already past is 0."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        when = _http_date(value)
        if when is None:
            return None
        sent = _http_date(date) if date is not None else None
        base = sent or now or datetime.datetime.now(datetime.timezone.utc)
        return max(0.0, (when - base).total_seconds())
    return seconds if seconds >= 0 and not math.isnan(seconds) else None  # inf: longer than any max_delay


def _http_date(text: str) -> datetime.datetime | None:
    """An HTTP-date as an aware datetime (None: not one; a date without a zone is taken as GMT, as HTTP's are)."""
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.timezone.utc)
