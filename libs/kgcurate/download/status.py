"""The closed set of outcomes a download can have, one per image URL in the ``downloads`` table.

Strings, not an enum, because they go straight into Arrow/Spark columns and JSON; :data:`STATUSES`
is the whole set so a consumer (report, tests) can check it never meets an unknown one.
"""

from __future__ import annotations

import re

SUCCESS = "success"  # fetched, decoded, resized and written to the shard's tar
OPTED_OUT = "opted_out"  # the site said no (X-Robots-Tag): a polite outcome, not a failure
HTTP_ERROR = "http_error"  # a final non-2xx response (after retries for 429/5xx), or a redirect without Location
TIMEOUT = "timeout"  # connect or read timeout, or the total time limit for one response, after retries
TOO_LARGE = "too_large"  # body over max_bytes, or more pixels than max_pixels (decompression bombs)
REFUSED_ADDRESS = "refused_address"  # a hop resolved to a private/loopback/reserved/... address
TOO_MANY_REDIRECTS = "too_many_redirects"  # more redirect hops than max_redirects
DECODE_ERROR = "decode_error"  # not an image Pillow decodes (whatever Content-Type said), or bad Content-Encoding
INVALID_URL = "invalid_url"  # not an http(s) URL with a host, or a redirect Location that is not one
CONNECTION_ERROR = "connection_error"  # DNS failure, refused/reset connection, TLS or protocol error
INTERNAL_ERROR = "internal_error"  # an unexpected exception in our code: recorded per URL, never kills a shard

STATUSES: frozenset[str] = frozenset(
    {
        SUCCESS, OPTED_OUT, HTTP_ERROR, TIMEOUT, TOO_LARGE, REFUSED_ADDRESS, TOO_MANY_REDIRECTS,
        DECODE_ERROR, INVALID_URL, CONNECTION_ERROR, INTERNAL_ERROR,
    }
)


_OBJECT_ADDRESS = re.compile(r" (?:object )?at 0x[0-9a-fA-F]+")


def one_line(message: object, limit: int = 300) -> str:
    """An error message as one line of at most ``limit`` characters, fit for a table cell; object addresses
    (``<... at 0x7f..>``) are dropped so a rerun writes the same text."""
    text = _OBJECT_ADDRESS.sub("", " ".join(str(message).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."
