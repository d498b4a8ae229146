"""Deterministic generator of realistic CommonCrawl WAT files, with the pairs they must give.

The files follow CommonCrawl's structure: a ``warcinfo`` record, then per page three ``metadata``
records describing the original WARC's request, response and metadata records (WARC headers
like CommonCrawl's, one gzip member per record or uncompressed), with JSON payloads shaped like
ia-web-commons' (Container / Envelope / WARC-Header-Metadata / Payload-Metadata /
HTTP-Response-Metadata / HTML-Metadata / Head / Links).

The expected output is computed from the generator's own model, never by parsing: each image
link is drawn as an absolute target URL plus a way of writing it (relative, root-relative,
``./``, ``../``, protocol-relative, under a ``<base href>``), and each caption as a list of words
rendered with whitespace noise. The manifest therefore checks the parser independently.
"""

from __future__ import annotations

import base64
import gzip as gzip_mod
import hashlib
import html
import json
import random
import uuid
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from kgcurate.wat.sample_images import ImagesWritten, served_name, served_url, write_images

CRAWL = "CC-MAIN-2099-01"
MAX_TEXT = 2000  # the parser's default max_text_length; longer captions are expected as `filtered`

Pair = tuple[str, str, str, str]  # (image_url, text, text_source, page_url)

# -- vocabulary: common nouns (WordNet / entity names) so that matching finds hits ------------------
ANIMALS = [
    "dog", "cat", "horse", "cow", "sheep", "goat", "pig", "chicken", "duck", "rabbit", "fox", "wolf",
    "bear", "lion", "tiger", "leopard", "elephant", "giraffe", "zebra", "monkey", "gorilla", "deer",
    "owl", "eagle", "parrot", "penguin", "dolphin", "whale", "shark", "turtle", "frog", "butterfly",
    "bee", "spider", "snake", "squirrel", "hedgehog", "otter", "golden retriever", "german shepherd",
    "labrador retriever", "tabby cat", "red fox", "bald eagle", "honey bee", "sea turtle", "polar bear",
    "koala", "kangaroo", "flamingo", "peacock", "robin", "sparrow", "salmon", "goldfish",
]
PLANTS = ["oak tree", "sunflower", "rose", "tulip", "maple", "pine tree", "cactus", "fern", "orchid",
          "lavender", "daisy", "bamboo", "palm tree", "apple tree", "moss"]
OBJECTS = [
    "chair", "table", "sofa", "lamp", "bicycle", "car", "truck", "bus", "train", "airplane", "boat",
    "laptop", "phone", "camera", "watch", "guitar", "piano", "book", "cup", "mug", "bottle", "backpack",
    "umbrella", "shoe", "sneakers", "jacket", "dress", "hat", "sunglasses", "kitchen", "bathroom",
    "bedroom", "house", "bridge", "church", "castle", "lighthouse", "mountain", "beach", "lake", "river",
    "forest", "city skyline", "street", "garden", "pizza", "burger", "salad", "cake", "coffee", "bread",
]
TAXA = [
    ("Canis lupus", "grey wolf"), ("Canis lupus familiaris", "dog"), ("Felis catus", "cat"),
    ("Panthera leo", "lion"), ("Panthera tigris", "tiger"), ("Vulpes vulpes", "red fox"),
    ("Ursus arctos", "brown bear"), ("Haliaeetus leucocephalus", "bald eagle"), ("Apis mellifera", "honey bee"),
    ("Quercus robur", "English oak"), ("Helianthus annuus", "sunflower"), ("Equus caballus", "horse"),
    ("Bubo bubo", "Eurasian eagle-owl"), ("Delphinus delphis", "common dolphin"),
]
ADJECTIVES = ["small", "big", "old", "young", "happy", "brown", "black", "white", "red", "blue", "green",
              "cute", "wild", "beautiful", "vintage", "modern", "wooden", "sleeping", "running", "fluffy"]
PLACES = ["in the garden", "on the beach", "in the snow", "at the park", "on a sofa", "in the forest",
          "by the lake", "on the street", "in the kitchen", "at sunset", "in the mountains", "on the grass"]
UNICODE_CAPTIONS = [
    ["Café", "au", "lait", "&", "a", "croissant"], ["Ein", "Hund", "im", "Park"],
    ["Niño", "jugando", "con", "un", "perro"], ["一只狗在草地上"], ["猫の写真"], ["🐶", "dog", "on", "the", "beach"],
    ["Żółty", "kot", "śpi"], ["Crème", "brûlée", "dessert"], ["Смешной", "кот"], ["北京", "故宫", "tiger"],
    ["naïve", "art", "of", "a", "horse"], ["🌻", "sunflower", "field", "🌞"],
]
HOSTS = ["www.petsworld.example", "blog.wildlife-notes.example", "shop.outdoor-gear.example",
         "news.city-daily.example", "www.recipes-home.example", "photos.travel-diary.example",
         "www.furniture-store.example", "forum.birdwatchers.example", "en.encyclopedia.example",
         "www.garden-centre.example"]
SECTIONS = ["animals", "news", "products", "recipes", "travel", "gallery", "blog/2024/05", "wiki", "shop/items"]
SPACES = [" ", " ", " ", " ", "  ", "\n", "\t", "\r\n", " \n  ", "\xa0"]


@dataclass
class SampleManifest:
    """What ``write_sample`` wrote and what the parser (default ParseOptions) must find in it."""

    out_dir: str
    crawl: str
    files: list[str]  # absolute paths
    listing: str  # wat.paths.gz next to the files
    pairs: set[Pair] = field(default_factory=set)  # over all files
    pairs_by_file: dict[str, list[Pair]] = field(default_factory=dict)  # file name -> pairs, duplicates kept
    records_by_file: dict[str, int] = field(default_factory=dict)  # expected FileStats.records
    bad_by_file: dict[str, int] = field(default_factory=dict)  # expected FileStats.bad_records
    filtered_by_file: dict[str, int] = field(default_factory=dict)  # expected FileStats.filtered
    truncated_file: str | None = None  # name of the file whose last gzip member is cut (error expected)
    bytes_by_file: dict[str, int] = field(default_factory=dict)
    images: ImagesWritten | None = None  # with an image base URL: the image folder written

    @property
    def bad_records(self) -> int:
        return sum(self.bad_by_file.values())

    @property
    def records(self) -> int:
        return sum(self.records_by_file.values())

    def to_json(self) -> dict[str, Any]:
        data = {
            "out_dir": self.out_dir, "crawl": self.crawl, "files": self.files, "listing": self.listing,
            "pairs_by_file": self.pairs_by_file, "records_by_file": self.records_by_file,
            "bad_by_file": self.bad_by_file, "filtered_by_file": self.filtered_by_file,
            "truncated_file": self.truncated_file, "bytes_by_file": self.bytes_by_file,
        }
        if self.images is not None:  # absent otherwise: a plain sample's manifest is as it always was
            data["images"] = asdict(self.images)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SampleManifest:
        by_file = {k: [tuple(p) for p in v] for k, v in data["pairs_by_file"].items()}
        return cls(
            out_dir=data["out_dir"], crawl=data["crawl"], files=data["files"], listing=data["listing"],
            pairs={p for v in by_file.values() for p in v}, pairs_by_file=by_file,
            records_by_file=data["records_by_file"], bad_by_file=data["bad_by_file"],
            filtered_by_file=data["filtered_by_file"], truncated_file=data["truncated_file"],
            bytes_by_file=data.get("bytes_by_file", {}),
            images=ImagesWritten(**data["images"]) if data.get("images") else None,
        )


# -- the model -------------------------------------------------------------------------------------
@dataclass
class _Img:
    written: str  # the URL as the page wrote it
    expected: str | None  # absolute http(s) URL, None when the parser must drop it
    alt: list[str] | None  # words; None = attribute absent; [] = alt=""
    alt_raw: str | None
    title: list[str] | None = None
    title_raw: str | None = None


@dataclass
class _Page:
    url: str
    kind: str  # html | html-noimg | nonhtml | error
    base_written: str | None
    imgs: list[_Img]
    seed: int  # for the rest of the payload (links, headers), so a shared page renders identically


def _render(words: list[str], rng: random.Random) -> str:
    """Words joined by whitespace noise (the parser must collapse it to single spaces)."""
    if not words:
        return rng.choice(["", "", " ", "\n\t "])  # empty, or whitespace only
    out = [rng.choice(["", "", "", " ", "\n  ", "\t"])]
    for i, w in enumerate(words):
        if i:
            out.append(rng.choice(SPACES))
        out.append(w)
    out.append(rng.choice(["", "", "", " ", "\r\n", "  "]))
    return "".join(out)


def _caption(rng: random.Random) -> list[str]:
    r = rng.random()
    if r < 0.30:
        return f"a {rng.choice(ADJECTIVES)} {rng.choice(ANIMALS)} {rng.choice(PLACES)}".split()
    if r < 0.45:
        return f"{rng.choice(ADJECTIVES)} {rng.choice(OBJECTS)}".split()
    if r < 0.55:
        latin, common = rng.choice(TAXA)
        return f"{common} ({latin})".split() if rng.random() < 0.5 else latin.split()
    if r < 0.63:
        return rng.choice(UNICODE_CAPTIONS)
    if r < 0.70:
        return f"{rng.choice(PLANTS)} {rng.choice(PLACES)}".split()
    if r < 0.78:
        return f"Photo of a {rng.choice(ANIMALS)} and a {rng.choice(OBJECTS)}".split()
    if r < 0.84:
        return [str(rng.randint(1, 999))]
    if r < 0.90:
        return f"{rng.choice(OBJECTS).title()} - {rng.choice(ADJECTIVES)} {rng.choice(OBJECTS)} for sale".split()
    words = [rng.choice(ANIMALS + OBJECTS + PLANTS) for _ in range(rng.randint(3, 12))]
    return " ".join(words).split()


def _origin(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _dir(url: str) -> str:
    """``scheme://host/a/b/`` for ``scheme://host/a/b/page.html?q`` (the base of relative URLs)."""
    no_query = url.split("?", 1)[0].split("#", 1)[0]
    origin = _origin(no_query)
    path = no_query[len(origin):] or "/"
    return origin + path[: path.rfind("/") + 1]


def _image(rng: random.Random, base: str, host: str) -> tuple[str, str | None]:
    """(written, expected) for one image URL relative to the effective base URL ``base``."""
    stem = rng.choice(["img", "photo", "thumb", "IMG_"])
    name = f"{stem}{rng.randint(1, 99999)}.{rng.choice(['jpg', 'png', 'webp'])}"
    if rng.random() < 0.15:
        name += f"?w={rng.choice([150, 300, 640])}&h={rng.choice([100, 200, 480])}"
    scheme = base.split("://", 1)[0]
    r = rng.random()
    if r < 0.30:
        url = f"{rng.choice(['https', 'http'])}://{rng.choice(['cdn.', 'img.', 'static.'])}{host}/media/{name}"
        return url, url
    if r < 0.50:
        return f"/images/{name}", f"{_origin(base)}/images/{name}"
    if r < 0.65:
        return f"uploads/{name}", f"{_dir(base)}uploads/{name}"
    if r < 0.72:
        return f"./{name}", f"{_dir(base)}{name}"
    if r < 0.78:
        d = _dir(base)
        path = d[len(_origin(base)):]
        if path.count("/") >= 2:  # has a parent folder
            parent = path[: path[:-1].rfind("/") + 1]
            return f"../pics/{name}", f"{_origin(base)}{parent}pics/{name}"
        return f"/pics/{name}", f"{_origin(base)}/pics/{name}"
    if r < 0.88:
        return f"//images.{host}/{name}", f"{scheme}://images.{host}/{name}"
    if r < 0.93:
        data = base64.b64encode(rng.randbytes(24)).decode()
        return f"data:image/gif;base64,{data}", None
    if r < 0.96:
        return rng.choice(["javascript:void(0)", f"ftp://files.{host}/{name}", f"mailto:info@{host}"]), None
    url = f"https://{host}/{name}"
    return url, url


def _make_page(page_seed: int) -> _Page:
    prng = random.Random(page_seed)
    host = prng.choice(HOSTS)
    scheme = "https" if prng.random() < 0.8 else "http"
    slug = prng.choice(ANIMALS + OBJECTS).replace(" ", "-")
    url = f"{scheme}://{host}/{prng.choice(SECTIONS)}/{slug}-{prng.randint(1, 9999)}.html"
    if prng.random() < 0.2:
        url += f"?id={prng.randint(1, 500)}&ref=home"
    r = prng.random()
    kind = "html" if r < 0.80 else "html-noimg" if r < 0.88 else "nonhtml" if r < 0.96 else "error"
    base_written = None
    base = url
    if kind == "html" and prng.random() < 0.12:
        if prng.random() < 0.5:
            base_written = f"https://static.{host}/assets/v2/"
            base = base_written
        else:
            base_written = "/static/"
            base = _origin(url) + "/static/"
    imgs: list[_Img] = []
    if kind == "html":
        logo = f"/static/{host.split('.')[1]}-logo.png"  # the same pair on every page of the host
        imgs.append(_Img(logo, _origin(base) + logo, [host.split(".")[1].replace("-", " ").title(), "logo"], None))
        for _ in range(prng.randint(2, 25)):
            written, expected = _image(prng, base, host)
            a = prng.random()
            if a < 0.55:
                alt = _caption(prng)
            elif a < 0.75:
                alt = None  # no alt attribute
            elif a < 0.9:
                alt = []  # alt="" (or whitespace only)
            else:
                alt = _caption(prng)
            img = _Img(written, expected, alt, None)
            if prng.random() < 0.12:
                img.title = _caption(prng) if prng.random() < 0.8 else []
            if expected and prng.random() < 0.01:
                img.alt = ("very long description " * 120).split()  # > 2000 chars: filtered
            imgs.append(img)
            if prng.random() < 0.04:  # the same image twice on a page (e.g. thumbnail and full)
                imgs.append(_Img(written, expected, img.alt, None))
        for img in imgs:
            img.alt_raw = None if img.alt is None else _render(img.alt, prng)
            img.title_raw = None if img.title is None else _render(img.title, prng)
    return _Page(url, kind, base_written, imgs, prng.getrandbits(32))


def _expected(page: _Page) -> tuple[list[Pair], int]:
    """The pairs (and filtered count) the parser must give for a page, from the model alone."""
    pairs: list[Pair] = []
    filtered = 0
    for img in page.imgs:
        for src, words in (("alt", img.alt), ("title", img.title)):
            if not words:
                continue
            text = " ".join(words)
            if len(text) > MAX_TEXT:
                filtered += 1
                continue
            if img.expected is not None:
                pairs.append((img.expected, text, src, page.url))
    return pairs, filtered


# -- rendering to WAT ------------------------------------------------------------------------------
def _uuid(rng: random.Random) -> str:
    return f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>"


def _digest(rng: random.Random) -> str:
    return "sha1:" + base64.b32encode(rng.randbytes(20)).decode()


def _sha1(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()  # noqa: S324 - WARC digest


def _other_links(rng: random.Random, page: _Page, n: int) -> list[dict[str, Any]]:
    host = _origin(page.url)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.7:
            link: dict[str, Any] = {"path": "A@/href", "url": f"/{rng.choice(SECTIONS)}/{rng.randint(1, 9999)}.html"}
            if rng.random() < 0.8:
                link["text"] = " ".join(_caption(rng))
            if rng.random() < 0.2:
                link["title"] = " ".join(_caption(rng))  # titles on non-image links must give no pair
        elif r < 0.8:
            link = {"path": "A@/href", "url": f"https://www.{rng.choice(HOSTS)}/", "text": "partner site"}
        elif r < 0.9:
            link = {"path": "SCRIPT@/src", "url": f"{host}/js/app.{rng.randint(1, 99)}.js"}
        else:
            link = {"path": "FORM@/action", "method": "post", "url": "/search"}
        out.append(link)
    return out


def _response_json(page: _Page, rng: random.Random, container: dict[str, Any], dates: tuple[str, str],
                   ids: tuple[str, str, str]) -> dict[str, Any]:
    """The response record: HTTP response metadata (HTML metadata for HTML and error pages) in its WARC
    envelope. The parts draw from ``rng`` in document order, so the record is a function of the page."""
    warc_date, fetch_date = dates
    rec_id, warcinfo_id, req_id = ids
    http = _http_response(page, rng, fetch_date)
    if page.kind in ("html", "html-noimg", "error"):
        http["HTML-Metadata"] = _html_metadata(page, rng)
    return {
        "Container": container,
        "Envelope": {
            "Format": "WARC", "WARC-Header-Length": str(rng.randint(400, 700)),
            "Actual-Content-Length": http["Entity-Length"],
            "Block-Digest": _digest(rng),
            "WARC-Header-Metadata": {
                "WARC-Type": "response", "WARC-Date": warc_date, "WARC-Record-ID": rec_id,
                "Content-Length": http["Entity-Length"], "Content-Type": "application/http; msgtype=response",
                "WARC-Warcinfo-ID": warcinfo_id, "WARC-Concurrent-To": req_id,
                "WARC-IP-Address": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "WARC-Target-URI": page.url,
                "WARC-Payload-Digest": _digest(rng),
                "WARC-Identified-Payload-Type": "text/html" if page.kind.startswith("html") else "application/pdf",
            },
            "Payload-Metadata": {"Actual-Content-Type": "application/http; msgtype=response",
                                 "HTTP-Response-Metadata": http, "Trailing-Slop-Length": "4"},
        },
    }


def _http_response(page: _Page, rng: random.Random, fetch_date: str) -> dict[str, Any]:
    """``HTTP-Response-Metadata`` without the HTML part: status line and headers, some of them
    repeated (a JSON list, as CommonCrawl writes them since CC-MAIN-2024-51)."""
    headers: dict[str, Any] = {
        "Date": fetch_date, "Server": rng.choice(["nginx", "Apache", "cloudflare"]),
        "Content-Type": "text/html; charset=UTF-8" if page.kind.startswith("html") else "application/pdf",
        "Cache-Control": "max-age=600",
    }
    if rng.random() < 0.5:  # repeated header: a JSON list since CC-MAIN-2024-51
        headers["Set-Cookie"] = [f"sid={rng.getrandbits(64):x}; Path=/", "consent=0; Path=/"]
        headers["Vary"] = ["Accept-Encoding", "User-Agent"]
    else:
        headers["Vary"] = "Accept-Encoding"
    status = ("404", "Not Found") if page.kind == "error" else ("200", "OK")
    return {
        "Response-Message": {"Version": "HTTP/1.1", "Status": status[0], "Reason": status[1]},
        "Headers": headers, "Headers-Length": str(200 + rng.randint(0, 400)),
        "Entity-Length": str(rng.randint(2000, 200000)), "Entity-Trailing-Slop-Length": "0",
        "Entity-Digest": _digest(rng),
    }


def _html_metadata(page: _Page, rng: random.Random) -> dict[str, Any]:
    """``HTML-Metadata``: the head (with the page's ``<base href>``, if any) and the links, the page's
    image links scattered among links that must give no pair."""
    head: dict[str, Any] = {
        "Title": " ".join(_caption(rng)).title(),
        "Metas": [{"name": "viewport", "content": "width=device-width, initial-scale=1"},
                  {"name": "description", "content": " ".join(_caption(rng))},
                  {"property": "og:image", "content": f"{_origin(page.url)}/og/{rng.randint(1, 999)}.jpg"}],
        "Link": [{"path": "LINK@/href", "rel": "stylesheet", "type": "text/css", "url": "/css/site.css"},
                 {"path": "LINK@/href", "rel": "icon", "url": "/favicon.ico"},
                 {"path": "LINK@/href", "rel": "canonical", "url": page.url}],
        "Scripts": [{"path": "SCRIPT@/src", "url": "/js/main.js", "type": "text/javascript"}],
    }
    if page.base_written:
        head["Base"] = page.base_written
    links = _other_links(rng, page, rng.randint(5, 60) if page.kind != "error" else 2)
    for img in page.imgs:
        # CommonCrawl keeps attribute values as the HTML wrote them: `&amp;` in a src, `&quot;` in an alt
        link: dict[str, Any] = {"path": "IMG@/src", "url": html.escape(img.written)}
        if img.alt_raw is not None:
            link["alt"] = html.escape(img.alt_raw)
        if img.title_raw is not None:
            link["title"] = html.escape(img.title_raw)
        links.insert(rng.randint(0, len(links)), link)
    return {"Head": head, "Links": links}


def _request_json(page: _Page, rng: random.Random, container: dict[str, Any], warc_date: str,
                  ids: tuple[str, str]) -> dict[str, Any]:
    rec_id, warcinfo_id = ids
    host = page.url.split("://", 1)[1].split("/", 1)[0]
    return {
        "Container": container,
        "Envelope": {
            "Format": "WARC", "WARC-Header-Length": "357",
            "WARC-Header-Metadata": {
                "WARC-Type": "request", "WARC-Date": warc_date, "WARC-Record-ID": rec_id, "Content-Length": "265",
                "Content-Type": "application/http; msgtype=request", "WARC-Warcinfo-ID": warcinfo_id,
                "WARC-Target-URI": page.url,
            },
            "Payload-Metadata": {
                "Actual-Content-Type": "application/http; msgtype=request",
                "HTTP-Request-Metadata": {
                    "Request-Message": {"Method": "GET", "Path": "/" + page.url.split("://", 1)[1].split("/", 1)[1],
                                        "Version": "HTTP/1.1"},
                    "Headers": {"User-Agent": "CCBot/2.0 (https://commoncrawl.org/faq/)",
                                "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                                "Accept-Language": "en-US,en;q=0.5", "Accept-Encoding": "br,gzip", "Host": host,
                                "Connection": "Keep-Alive"},
                    "Headers-Length": "263", "Entity-Length": "0", "Entity-Trailing-Slop-Length": "0",
                },
                "Trailing-Slop-Length": "4",
            },
        },
    }


def _metadata_json(page: _Page, rng: random.Random, container: dict[str, Any], warc_date: str,
                   ids: tuple[str, str]) -> dict[str, Any]:
    rec_id, refers = ids
    return {
        "Container": container,
        "Envelope": {
            "Format": "WARC", "WARC-Header-Length": "399",
            "WARC-Header-Metadata": {
                "WARC-Type": "metadata", "WARC-Date": warc_date, "WARC-Record-ID": rec_id, "Content-Length": "40",
                "Content-Type": "application/warc-fields", "WARC-Concurrent-To": refers, "WARC-Target-URI": page.url,
            },
            "Payload-Metadata": {
                "Actual-Content-Type": "application/metadata-fields",
                "WARC-Metadata-Metadata": {"Metadata-Records": [
                    {"Name": "fetchTimeMs", "Value": str(rng.randint(20, 3000))},
                    {"Name": "charset-detected", "Value": "UTF-8"},
                ]},
                "Trailing-Slop-Length": "0",
            },
        },
    }


class _Writer:
    """Appends WARC records to one file: one gzip member per record, or plain."""

    def __init__(self, path: Path, gzip: bool) -> None:
        self.f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.gzip = gzip
        self.size = 0

    @staticmethod
    def record(headers: list[tuple[str, str]], payload: bytes) -> bytes:
        lines = ["WARC/1.0"] + [f"{k}: {v}" for k, v in headers] + [f"Content-Length: {len(payload)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload + b"\r\n\r\n"

    def encode(self, raw: bytes) -> bytes:
        if not self.gzip:
            return raw
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return c.compress(raw) + c.flush()

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.size += len(data)

    def close(self) -> None:
        self.f.close()


def _warc_date(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _page_records(page: _Page, rng: random.Random, t: datetime, warcinfo_id: str, warc_name: str,
                  offset: int, malformed: str | None = None) -> list[tuple[str, bytes]]:
    """The three WAT records of one page: (inner type, record bytes, uncompressed)."""
    prng = random.Random(page.seed)  # page content is a function of the page alone
    req_id, resp_id, meta_id = _uuid(prng), _uuid(prng), _uuid(prng)
    warc_date, fetch_date = _warc_date(t), t.strftime("%a, %d %b %Y %H:%M:%S GMT")
    out = []
    for inner in ("request", "response", "metadata"):
        container = {"Filename": warc_name, "Compressed": True, "Offset": str(offset + prng.randint(0, 10**6)),
                     "Gzip-Metadata": {"Deflate-Length": str(prng.randint(300, 30000)), "Header-Length": "10",
                                       "Footer-Length": "8", "Inflated-CRC": str(prng.randint(-2**31, 2**31 - 1)),
                                       "Inflated-Length": str(prng.randint(500, 90000))}}
        if inner == "request":
            doc = _request_json(page, prng, container, warc_date, (req_id, warcinfo_id))
            refers = req_id
        elif inner == "response":
            doc = _response_json(page, prng, container, (warc_date, fetch_date), (resp_id, warcinfo_id, req_id))
            refers = resp_id
        else:
            doc = _metadata_json(page, prng, container, warc_date, (meta_id, resp_id))
            refers = meta_id
        payload = orjson.dumps(doc)
        if malformed == inner:
            # Deliberate corruption: a JSON payload cut short (and, for the response, with an image link
            # left in it, so the parser must decode and reject it rather than skip it).
            payload = payload[: len(payload) * 2 // 3].rstrip(b"}")
        headers = [("WARC-Type", "metadata"), ("WARC-Target-URI", page.url), ("WARC-Date", warc_date),
                   ("WARC-Record-ID", _uuid(rng)), ("WARC-Refers-To", refers), ("Content-Type", "application/json"),
                   ("WARC-Block-Digest", _sha1(payload))]
        out.append((inner, _Writer.record(headers, payload)))
    return out


@dataclass
class _SampleSpec:
    """The settings every file of one sample shares: write_sample's arguments, resolved once."""

    files: int
    seed: int
    corrupt: bool
    gzip: bool
    per_file_bytes: float | None  # with size_mb: write pages until a file is this large
    pages_per_file: int  # otherwise: this many pages (three records each) after the warcinfo record
    shared_pool: list[int]  # page seeds that appear in several files
    t0: datetime
    image_base_url: str | None = None  # image links served from here (kgcurate.wat.sample_images)
    image_files: set[str] = field(default_factory=set)  # the files those links name

    @property
    def suffix(self) -> str:
        return ".warc.wat.gz" if self.gzip else ".warc.wat"


@dataclass
class _File:
    """One WAT file being written, with what the parser must report for it."""

    name: str
    path: Path
    writer: _Writer
    rng: random.Random  # the file's own stream: a file's content does not depend on the others
    warcinfo_id: str
    warc_name: str
    records: int = 1  # the warcinfo record
    bad: int = 0
    filtered: int = 0
    pairs: list[Pair] = field(default_factory=list)


def write_sample(out_dir: str | Path, files: int = 4, records: int = 400, seed: int = 0, corrupt: bool = True,
                 gzip: bool = True, size_mb: float | None = None, image_base_url: str | None = None,
                 images_dir: str | Path | None = None) -> SampleManifest:
    """Write ``files`` WAT files of about ``records`` WARC records each (or ``size_mb`` MB in all,
    compressed) plus ``wat.paths.gz``; return the manifest of what the parser must find.

    With ``image_base_url``: every kept image link is ``image_base_url/<file>`` and the files are written
    to ``images_dir`` (:mod:`kgcurate.wat.sample_images`); the pages are otherwise the same.

    With ``corrupt``: file 0 has a response record whose JSON is cut short (1 bad record), file 1
    (file 0 if only one) a request record cut short (1 bad record), and the last file ends with a
    truncated gzip member (1 bad record, and the file's error). A single file of one page holds the
    response's only.
    """
    if files < 1:
        raise ValueError("files must be >= 1")
    if (image_base_url is None) != (images_dir is None):
        raise ValueError("image_base_url and images_dir go together")
    out = _clear_out_dir(out_dir)
    rng = random.Random(seed)
    spec = _SampleSpec(
        files=files, seed=seed, corrupt=corrupt, gzip=gzip,
        per_file_bytes=size_mb * 1e6 / files if size_mb else None, pages_per_file=max(1, (records - 1) // 3),
        shared_pool=[rng.getrandbits(64) for _ in range(20)], t0=datetime(2099, 1, 3, 10, 0, 0, tzinfo=timezone.utc),
        image_base_url=image_base_url)
    manifest = SampleManifest(out_dir=str(out.resolve()), crawl=CRAWL, files=[], listing="")
    for fi in range(files):
        _write_file(out, fi, spec, manifest)
    if images_dir is not None:
        manifest.images = write_images(images_dir, spec.image_files)
    listing = out / "wat.paths.gz"
    with gzip_mod.GzipFile(listing, "wb", mtime=0) as f:
        f.write("".join(f"{Path(p).name}\n" for p in manifest.files).encode())
    manifest.listing = str(listing.resolve())
    (out / "manifest.json").write_text(json.dumps(manifest.to_json(), ensure_ascii=False))
    return manifest


def _clear_out_dir(out_dir: str | Path) -> Path:
    """The output folder, without a previous (larger) sample's files that this one would not overwrite."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{CRAWL}-sample-*.warc.wat*"):
        stale.unlink()
    return out


def _write_file(out: Path, fi: int, spec: _SampleSpec, manifest: SampleManifest) -> None:
    """File ``fi``: warcinfo, the pages, and (last file, with ``corrupt``) a truncated final page."""
    f = _open_file(out, fi, spec)
    pi = _write_pages(f, fi, spec)
    if spec.corrupt and fi == spec.files - 1:
        _write_truncated_page(f, spec.t0 + timedelta(seconds=fi * 10000 + pi), spec)
        manifest.truncated_file = f.name
    f.writer.close()
    manifest.files.append(str(f.path.resolve()))
    manifest.pairs_by_file[f.name] = f.pairs
    manifest.records_by_file[f.name] = f.records
    manifest.bad_by_file[f.name] = f.bad
    manifest.filtered_by_file[f.name] = f.filtered
    manifest.bytes_by_file[f.name] = f.writer.size
    manifest.pairs.update(f.pairs)


def _open_file(out: Path, fi: int, spec: _SampleSpec) -> _File:
    """Create file ``fi`` and write its ``warcinfo`` record (the one record that is not a page's)."""
    name = f"{CRAWL}-sample-{fi:05d}{spec.suffix}"
    path = out / name
    frng = random.Random(f"{spec.seed}/{fi}")
    writer = _Writer(path, spec.gzip)
    warc_name = f"{CRAWL}-sample-{fi:05d}.warc.gz"
    warcinfo_id = _uuid(frng)
    t0 = spec.t0
    info = (f"Software-Info: kgcurate-sample\r\nExtracted-Date: {t0:%a, %d %b %Y %H:%M:%S GMT}\r\n"
            f"ip: 10.0.0.1\r\nhostname: sample.internal\r\nformat: WARC File Format 1.0\r\n"
            f"isPartOf: {CRAWL}\r\n").encode()
    writer.write(writer.encode(_Writer.record(
        [("WARC-Type", "warcinfo"), ("WARC-Date", _warc_date(t0)), ("WARC-Filename", name),
         ("WARC-Record-ID", warcinfo_id), ("Content-Type", "application/warc-fields")], info)))
    return _File(name, path, writer, frng, warcinfo_id, warc_name)


def _malformed_pages(fi: int, spec: _SampleSpec) -> dict[int, str]:
    """page index -> the record cut short on it in file ``fi`` (see write_sample's ``corrupt``)."""
    malformed_at: dict[int, str] = {}
    if spec.corrupt:
        last = spec.pages_per_file - 1
        if fi == 0:
            malformed_at[min(3, last)] = "response"
        if fi == min(1, spec.files - 1):
            at = min(5, last) if fi else min(4, last)
            if malformed_at.get(at) == "response":  # one file of at most 4 pages: the page before it
                at -= 1
            if at >= 0:  # a one-page file has room for one of them
                malformed_at[at] = "request"
    return malformed_at


def _write_pages(f: _File, fi: int, spec: _SampleSpec) -> int:
    """Write file ``fi``'s pages, counting records and expected pairs; return how many pages."""
    malformed_at = _malformed_pages(fi, spec)
    pi = 0
    while (f.writer.size < spec.per_file_bytes) if spec.per_file_bytes else (pi < spec.pages_per_file):
        use_shared = f.rng.random() < 0.05
        page_seed = f.rng.choice(spec.shared_pool) if use_shared else f.rng.getrandbits(64)
        page = _make_page(page_seed)
        broken = malformed_at.get(pi)
        if broken == "response" and not page.imgs:
            page = _forced_image_page(page_seed)
        _serve_images(page, spec)
        t = spec.t0 + timedelta(seconds=fi * 10000 + pi)
        for inner, raw in _page_records(page, f.rng, t, f.warcinfo_id, f.warc_name, f.writer.size, broken):
            f.writer.write(f.writer.encode(raw))
            f.records += 1
            if inner == broken:
                f.bad += 1
        if broken != "response":  # a broken response loses the page's pairs; a broken request does not
            page_pairs, page_filtered = _expected(page)
            f.pairs.extend(page_pairs)
            f.filtered += page_filtered
        pi += 1
    return pi


def _write_truncated_page(f: _File, t: datetime, spec: _SampleSpec) -> None:
    """A final page whose response record is cut in the middle of its gzip member."""
    page = _forced_image_page(f.rng.getrandbits(64))
    _serve_images(page, spec)
    recs = _page_records(page, f.rng, t, f.warcinfo_id, f.warc_name, f.writer.size)
    f.writer.write(f.writer.encode(recs[0][1]))
    cut = f.writer.encode(recs[1][1])
    f.writer.write(cut[: len(cut) // 2])
    f.records += 2
    f.bad += 1


def _serve_images(page: _Page, spec: _SampleSpec) -> None:
    """With an image base URL: every image link the parser would keep becomes an absolute link to the
    served file (its name a hash of the link it replaces), recorded in ``spec.image_files``. Links the
    parser drops (``data:``, ``javascript:``, ...) stay as they were."""
    if spec.image_base_url is None:
        return
    for img in page.imgs:
        if img.expected is not None:
            spec.image_files.add(served_name(img.expected))
            img.written = img.expected = served_url(spec.image_base_url, img.expected)


def _forced_image_page(page_seed: int) -> _Page:
    """A page from ``page_seed`` that has image links (for the deliberate corruptions)."""
    s = page_seed
    while True:
        page = _make_page(s)
        if page.kind == "html" and any(i.expected and i.alt for i in page.imgs):
            return page
        s = (s * 6364136223846793005 + 1442695040888963407) % 2**64


def load_manifest(out_dir: str | Path) -> SampleManifest:
    return SampleManifest.from_json(json.loads((Path(out_dir) / "manifest.json").read_text()))


def count_pairs(manifest: SampleManifest) -> Counter:
    """Multiset of expected pairs over all files (duplicates across files included)."""
    return Counter(p for v in manifest.pairs_by_file.values() for p in v)
