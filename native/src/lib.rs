//! kgcurate's compiled WAT hot path: gzip members (one WARC record each, CommonCrawl's layout) to
//! (image_url, text, text_source) columns, exactly as `kgcurate.wat.parse` reads them.
//!
//! It handles the common case only and stops at the first gzip member it cannot handle with
//! certainty (damage of any kind, a record Python would call bad, a JSON payload with anything
//! orjson might read differently, a value of a shape the pure-Python reader treats specially):
//! Python reads that member with `WatParser._member` and calls again after it. URL joins it cannot
//! do by concatenation exactly as `Resolver` does go to a Python callback (`Resolver` itself).

mod json;

use flate2::{Crc, Decompress, FlushDecompress, Status};
use std::borrow::Cow;
use json::J;
use libdeflate_sys as ld;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

/// Status of `Parser.members`: stopped at a member boundary (all input used, or the batch is full).
const DONE: u8 = 0;
/// The member at the returned offset is not all in the buffer: read more and call again.
const MORE: u8 = 1;
/// The member at the returned offset is for Python (`WatParser._member`).
const DEFER: u8 = 2;

const MAX_MEMBER: usize = 64 << 20; // inflated bytes of one member before Python takes it
const MAX_HEADER: usize = 1 << 16;
/// The `path` of an image link (`<img src>`); a payload without it gives no pair.
pub(crate) const IMG_PATH: &str = "IMG@/src";

enum Member {
    Done(usize), // the offset just past it; its bytes are in `out`
    Incomplete,
    Defer,
}

/// Python's `str.isspace` (what `str.split()` splits on): Unicode White_Space plus U+001C..U+001F.
#[inline]
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// What separates words of a text: Python's whitespace and control characters (Unicode Cc: NUL, BEL, DEL,
/// C1; an alt of only these was a caption, and controls were stored). `parse.py`'s `collapse_whitespace` is
/// the same rule.
#[inline]
fn text_space(c: char) -> bool {
    py_space(c) || c.is_control()
}

/// Byte length of the text separator (:func:`text_space`) at `b[i]` (a char boundary), or 0. Past ASCII
/// only lead bytes 0xC2 (U+0080..U+009F, U+0085, U+00A0) and 0xE1..=0xE3 (U+1680, U+2000.., U+3000) can
/// start one, so other bytes (and UTF-8 continuation bytes) need no decoding.
#[inline]
fn space_len(s: &str, i: usize) -> usize {
    let c = s.as_bytes()[i];
    if c < 0x80 {
        return usize::from(c <= b' ' || c == 0x7F);
    }
    if c != 0xC2 && !(0xE1..=0xE3).contains(&c) {
        return 0;
    }
    match s[i..].chars().next() {
        Some(ch) if text_space(ch) => ch.len_utf8(),
        _ => 0,
    }
}

/// Byte length of an invisible character a text drops at `b[i]`, or 0: U+200B ZERO WIDTH SPACE (a word-break
/// mark in Thai, Khmer, Burmese: the words it marks show no space) and U+FEFF (a BOM, or ZERO WIDTH NO-BREAK
/// SPACE); "Kit\u{200B}chen" is "Kitchen" on the page. Only lead bytes, never continuation bytes, match.
#[inline]
fn drop_len(b: &[u8], i: usize) -> usize {
    match (b[i], b.get(i + 1), b.get(i + 2)) {
        (0xE2, Some(0x80), Some(0x8B)) | (0xEF, Some(0xBB), Some(0xBF)) => 3,
        _ => 0,
    }
}

/// `" ".join(s.split())` appended to `out`, controls splitting too (:func:`text_space`) and U+200B and U+FEFF
/// dropped (:func:`drop_len`); returns its length in code points (0: nothing appended),
/// or `limit + 1` as soon as it is longer than `limit`: the caller drops such a text, so the rest of
/// it (CommonCrawl has alt texts of megabytes) is not collapsed, and `out` then holds part of it.
fn collapse_into(s: &str, out: &mut String, limit: usize) -> usize {
    // Most texts are printable ASCII words with single spaces between them: already collapsed.
    let mut after_space = true; // a leading space is not "already collapsed"
    let mut as_is = true;
    for &c in s.as_bytes() {
        if c == b' ' {
            if after_space {
                as_is = false;
                break;
            }
            after_space = true;
        } else if c > b' ' && c < 0x7F {
            after_space = false;
        } else {
            as_is = false;
            break;
        }
    }
    if as_is && !after_space {
        if s.len() > limit {
            return limit.saturating_add(1);
        }
        out.push_str(s);
        return s.len();
    }
    // Words (runs of non-whitespace) copied in pieces around dropped characters, a space between two; a word
    // of dropped characters only is none. Chars counted as the bytes that do not continue a UTF-8 sequence.
    let b = s.as_bytes();
    let start = out.len();
    let mut n = 0usize;
    let mut i = 0usize;
    while i < b.len() {
        let w = space_len(s, i);
        if w > 0 {
            i += w;
            continue;
        }
        let mark = out.len();
        let sep = usize::from(mark > start);
        if sep == 1 {
            out.push(' ');
        }
        let mut piece = i;
        let mut chars = 0usize;
        while i < b.len() && space_len(s, i) == 0 {
            let d = drop_len(b, i);
            if d > 0 {
                out.push_str(&s[piece..i]);
                i += d;
                piece = i;
                continue;
            }
            chars += usize::from(b[i] & 0xC0 != 0x80);
            i += 1;
        }
        if chars == 0 {
            out.truncate(mark);
            continue;
        }
        out.push_str(&s[piece..i]);
        n += sep + chars;
        if n > limit {
            return limit.saturating_add(1);
        }
    }
    n
}

/// Python's `bytes.strip()` whitespace.
#[inline]
fn ascii_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn strip(mut s: &[u8]) -> &[u8] {
    while let Some((&f, rest)) = s.split_first() {
        if !ascii_ws(f) {
            break;
        }
        s = rest;
    }
    while let Some((&l, rest)) = s.split_last() {
        if !ascii_ws(l) {
            break;
        }
        s = rest;
    }
    s
}

fn header_name_ok(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// `_header_at(out, i)`: (offset of the block, Content-Length, WARC-Type is metadata), or None where
/// Python would find the header broken (the member is then Python's).
fn header_at(out: &[u8], i: usize) -> Option<(usize, usize, bool)> {
    if !out[i..].starts_with(b"WARC/1.") {
        return None;
    }
    let lim = out.len().min(i + MAX_HEADER);
    let end = i + memchr::memmem::find(&out[i..lim], b"\r\n\r\n")?;
    // split on "\r\n": split on '\n' and require (and drop) the '\r' before each but the last
    let mut parts: Vec<&[u8]> = Vec::with_capacity(16);
    let mut raw: Vec<&[u8]> = out[i..end].split(|&c| c == b'\n').collect();
    let last = raw.pop()?;
    for l in raw {
        // a line ending in a bare '\n' is not a "\r\n" split point: Python would join it; defer
        let l = l.strip_suffix(b"\r")?;
        parts.push(l);
    }
    parts.push(last);
    if parts.iter().any(|l| l.contains(&b'\r')) {
        return None;
    }
    let v = parts[0];
    if v.len() != 8 || !v[7].is_ascii_digit() {
        return None;
    }
    let mut cl: Option<&[u8]> = None;
    let mut wt: Option<&[u8]> = None;
    for line in &parts[1..] {
        if matches!(line.first(), Some(b' ') | Some(b'\t')) {
            continue;
        }
        let colon = memchr::memchr(b':', line)?;
        let name = &line[..colon];
        if !header_name_ok(name) {
            return None;
        }
        let value = strip(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            cl = Some(value);
        } else if name.eq_ignore_ascii_case(b"warc-type") {
            wt = Some(value);
        }
    }
    let cl = cl?;
    if cl.is_empty() || !cl.iter().all(u8::is_ascii_digit) || cl.len() > 15 {
        return None;
    }
    let cl: usize = std::str::from_utf8(cl).ok()?.parse().ok()?;
    let wt = wt?;
    Some((end + 4, cl, wt.eq_ignore_ascii_case(b"metadata")))
}

/// `_looks_like_json_object`.
fn looks_like_object(p: &[u8]) -> bool {
    let b = strip(p);
    b.first() == Some(&b'{') && b.last() == Some(&b'}')
}

/// The base of a page without `<base href>` when `Resolver._prepare` cuts it by slicing, with a
/// folder (else None: every relative URL of the page goes to Python).
struct Base {
    scheme_len: usize, // "http" or "https"
    origin: String,
    folder: String,
}

fn prepare(page: &str) -> Option<Base> {
    let scheme_len = if page.starts_with("http://") {
        4
    } else if page.starts_with("https://") {
        5
    } else {
        return None;
    };
    let rest = &page[scheme_len + 3..];
    let host_end = rest.find(|c: char| matches!(c, '/' | '?' | '#') || c <= ' ' || c == '[' || c == ']')
        .unwrap_or(rest.len());
    if host_end == 0 {
        return None;
    }
    let host = &rest[..host_end];
    if !host.is_ascii() {
        return None;
    }
    let tail = &rest[host_end..];
    if !(tail.is_empty() || matches!(tail.as_bytes()[0], b'/' | b'?' | b'#')) {
        return None; // the host stopped at a character the regex does not allow
    }
    if tail.bytes().any(|c| c <= b' ') {
        return None;
    }
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let path = if path_end == 0 { "/" } else { &tail[..path_end] };
    if path.contains("//") || path.contains("/.") {
        return None;
    }
    let origin = format!("{}://{}", &page[..scheme_len], host);
    let folder = format!("{}{}", origin, &path[..path.rfind('/').unwrap() + 1]);
    Some(Base { scheme_len, origin, folder })
}

/// `_PLAIN_URL.match(url)`.
fn plain(url: &str) -> bool {
    let b = url.as_bytes();
    if b.is_empty() || b[0] == b'?' {
        return false;
    }
    if b.iter().any(|&c| c <= b' ' || matches!(c, b'#' | b';' | b':' | b'\\' | b'[' | b']')) {
        return false;
    }
    match memchr::memchr(b'?', b) {
        None => true,
        Some(q) => q + 1 < b.len() && b[b.len() - 1] != b'?',
    }
}

enum Url {
    Drop,           // no pair (data:, javascript:, ...)
    Made(String),   // joined here
    Python,         // Resolver decides
}

/// `_host_start`: a host starts at `b[i]` (an ASCII letter or digit, `[`) and no `@` (userinfo) may hide
/// an empty one; else (`https://`, `//:0`, `//x@`: placeholders without a host) Python checks the URL in full.
fn host_start(b: &[u8], i: usize) -> bool {
    i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'[') && !b.contains(&b'@')
}

/// `Resolver.resolve` for a URL that is not an absolute http(s) URL kept as written.
fn resolve(url: &str, base: Option<&Base>) -> Url {
    if url.starts_with("data:") {
        return Url::Drop;
    }
    let b = url.as_bytes();
    if b[0].is_ascii_alphabetic() {
        let mut k = 1;
        while k < b.len() && (b[k].is_ascii_alphanumeric() || matches!(b[k], b'+' | b'.' | b'-')) {
            k += 1;
        }
        if k < b.len() && b[k] == b':' {
            let scheme = &url[..k];
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Url::Drop;
            }
            return Url::Python;
        }
    }
    let Some(base) = base else { return Url::Python };
    if !plain(url) {
        return Url::Python;
    }
    if b[0] == b'/' {
        if b.get(1) == Some(&b'/') {
            if host_start(b, 2) && url.is_ascii() {
                return Url::Made(format!("{}:{}", &base.origin[..base.scheme_len], url));
            }
            return Url::Python;
        }
        if !url.contains("/.") {
            return Url::Made(format!("{}{}", base.origin, url));
        }
        return Url::Python;
    }
    let mut folder: &str = &base.folder;
    let mut rel = url;
    if let Some(r) = rel.strip_prefix("./") {
        rel = r;
    } else if rel.starts_with("../") {
        let top = base.origin.len();
        while let Some(r) = rel.strip_prefix("../") {
            if let Some(cut) = folder[..folder.len() - 1].rfind('/') {
                if cut >= top {
                    folder = &folder[..cut + 1];
                }
            }
            rel = r;
        }
    }
    if !folder.is_empty()
        && !rel.is_empty()
        && !matches!(rel.as_bytes()[0], b'.' | b'/' | b'?')
        && !rel.contains("/.")
        && !rel.contains("//")
    {
        return Url::Made(format!("{}{}", folder, rel));
    }
    Url::Python
}

/// A string value as `_as_str` would give it, for the values read here: Ok(Some) for a string,
/// Ok(None) for absent/null, Err (defer) for anything else.
fn opt_str<'b>(v: Option<&'b J<'_>>) -> Result<Option<&'b str>, ()> {
    match v {
        None | Some(J::Null) => Ok(None),
        Some(J::Str(s)) => Ok(Some(s)),
        _ => Err(()),
    }
}

type Span = (usize, usize); // a string's bytes in `Out::strs`

enum ImgUrl {
    Rust(Span),
    Py(PyObject),
}

struct Row {
    url: usize, // index into the member's urls
    text: Span,
    src: usize,
}

/// One member's pairs until the member is known to be good. Kept by the parser and cleared per
/// member, so the strings go into one reused buffer rather than an allocation each.
#[derive(Default)]
struct Out {
    strs: String, // texts, URLs and page URLs, back to back
    urls: Vec<ImgUrl>,
    rows: Vec<Row>,
    pages: Vec<(Span, usize)>, // page URL, its rows (in order)
    found: Vec<(Span, usize)>, // the current link's texts and their sources
    filtered: u64,
    records: u64,
}

impl Out {
    fn clear(&mut self) {
        self.strs.clear();
        self.urls.clear();
        self.rows.clear();
        self.pages.clear();
        self.found.clear();
        self.filtered = 0;
        self.records = 0;
    }

    fn push(&mut self, s: &str) -> Span {
        let start = self.strs.len();
        self.strs.push_str(s);
        (start, self.strs.len())
    }

    fn get(&self, (a, b): Span) -> &str {
        &self.strs[a..b]
    }
}

/// libdeflate's decompressor (whole deflate streams in one call: ~1.3x zlib-rs's streaming inflate on
/// WAT members). Owned by one `Parser`, used under `&mut self` only.
struct Inflater(*mut ld::libdeflate_decompressor);

// SAFETY: the decompressor holds no thread-local state and is only used through `&mut self`
// (`deflate`), so one caller at a time; nothing reads it through a shared reference.
unsafe impl Send for Inflater {}
unsafe impl Sync for Inflater {}

impl Inflater {
    fn new() -> Self {
        // SAFETY: plain allocation; null is checked.
        let d = unsafe { ld::libdeflate_alloc_decompressor() };
        assert!(!d.is_null(), "libdeflate: out of memory");
        Inflater(d)
    }

    /// Inflate the deflate stream at the start of `input` into `out`: Ok((bytes read, bytes written)),
    /// or Err(true) when `out` is too small, Err(false) for anything else (damage or a stream that
    /// goes on past `input`: the streaming path tells which).
    fn deflate(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), bool> {
        let (mut used, mut made) = (0usize, 0usize);
        // SAFETY: both slices are valid for their lengths; libdeflate writes at most out.len() bytes.
        let r = unsafe {
            ld::libdeflate_deflate_decompress_ex(
                self.0,
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut used,
                &mut made,
            )
        };
        match r {
            ld::libdeflate_result_LIBDEFLATE_SUCCESS => Ok((used, made)),
            ld::libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => Err(true),
            _ => Err(false),
        }
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`, freed once.
        unsafe { ld::libdeflate_free_decompressor(self.0) }
    }
}

#[pyclass]
struct Parser {
    lo: usize,
    hi: usize,
    sources: Py<PyTuple>,
    source_names: Vec<String>,
    join: PyObject,
    unescape: PyObject, // parse.unescape_attr, for a `src`, `alt` or `title` holding a character reference
    dec: Decompress,
    fast: Inflater,
    acc: Out,
    out: Vec<u8>, // inflated bytes of the current member: out[..n]
    n: usize,
}

impl Parser {
    fn inflate(&mut self, buf: &[u8], pos: usize) -> Member {
        let b = &buf[pos..];
        if b.len() < 10 {
            return Member::Incomplete;
        }
        if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
            return Member::Defer;
        }
        let flg = b[3];
        if flg & 0xE2 != 0 {
            return Member::Defer; // reserved bits, or a header CRC: Python's zlib decides
        }
        let mut p = 10;
        if flg & 0x04 != 0 {
            if b.len() < p + 2 {
                return Member::Incomplete;
            }
            p += 2 + (b[p] as usize | (b[p + 1] as usize) << 8);
        }
        for bit in [0x08u8, 0x10] {
            if flg & bit != 0 {
                match b.get(p..).and_then(|r| memchr::memchr(0, r)) {
                    Some(z) => p += z + 1,
                    None => return Member::Incomplete,
                }
            }
        }
        if p > b.len() {
            return Member::Incomplete;
        }
        // The whole member is usually in `buf`: libdeflate inflates it in one call. Anything else
        // (out of input, damage, a member larger than `out` may grow) is left to zlib-rs's
        // streaming inflate, which tells a member that goes on past `buf` from a damaged one.
        let q = loop {
            match self.fast.deflate(&b[p..], &mut self.out) {
                Ok((used, made)) => {
                    self.n = made;
                    break p + used;
                }
                Err(true) if self.out.len() < MAX_MEMBER => {
                    let grow = self.out.len();
                    self.out.resize(self.out.len() + grow, 0);
                }
                Err(_) => match self.stream(b, p) {
                    Ok(q) => break q,
                    Err(m) => return m,
                },
            }
        };
        let Some(trailer) = b.get(q..q + 8) else { return Member::Incomplete };
        let crc = u32::from_le_bytes(trailer[..4].try_into().unwrap());
        let size = u32::from_le_bytes(trailer[4..].try_into().unwrap());
        let mut c = Crc::new();
        c.update(&self.out[..self.n]);
        if c.sum() != crc || size != self.n as u32 {
            return Member::Defer;
        }
        Member::Done(pos + q + 8)
    }

    /// zlib-rs's streaming inflate of the deflate stream at `b[p..]` into `out`: Ok(the offset in `b`
    /// just past it, `n` set), or Err(Incomplete / Defer).
    fn stream(&mut self, b: &[u8], p: usize) -> Result<usize, Member> {
        // `out` stays initialised to its full length (flate2's decompress_vec would zero its spare
        // capacity on every call); `n` is how much of it this member filled.
        self.dec.reset(false);
        let mut n = 0usize;
        loop {
            if self.out.len() - n < (1 << 16) {
                let grow = self.out.len().max(1 << 20);
                self.out.resize(self.out.len() + grow, 0);
            }
            let (in0, out0) = (self.dec.total_in() as usize, self.dec.total_out() as usize);
            let res = self.dec.decompress(&b[p + in0..], &mut self.out[n..], FlushDecompress::None);
            n = self.dec.total_out() as usize;
            match res {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {
                    if n > MAX_MEMBER {
                        return Err(Member::Defer);
                    }
                    let used = self.dec.total_in() as usize;
                    if used == in0 && n == out0 {
                        // no progress: out of input (the member goes on past the buffer), or stuck
                        return Err(if p + used >= b.len() { Member::Incomplete } else { Member::Defer });
                    }
                }
                Err(_) => return Err(Member::Defer),
            }
        }
        self.n = n;
        Ok(p + self.dec.total_in() as usize)
    }

    /// `unescape_attr(s)`: `s` itself without a `&`. Done here when each `&` is a query string's:
    /// `&amp;` (decoded) or `&name=` with an ASCII letter-or-digit name (kept: HTML's attribute rule
    /// leaves a reference without `;` before `=` or a letter or digit); any other goes to Python's,
    /// so both paths decode alike.
    fn unescaped<'s>(&self, py: Python<'_>, s: &'s str) -> Result<Cow<'s, str>, ()> {
        if !s.contains('&') {
            return Ok(Cow::Borrowed(s));
        }
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for i in memchr::memchr_iter(b'&', b) {
            if i < last {
                continue; // inside the `&amp;` just decoded (it holds no `&`: never)
            }
            if b[i..].starts_with(b"&amp;") {
                out.push_str(&s[last..i]);
                out.push('&');
                last = i + 5;
                continue;
            }
            let name = b[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric()).count();
            if name == 0 || b.get(i + 1 + name) != Some(&b'=') {
                let got = self.unescape.call1(py, (s,)).and_then(|got| got.extract::<String>(py));
                return got.map(Cow::Owned).map_err(|_| ());
            }
        }
        out.push_str(&s[last..]);
        Ok(Cow::Owned(out))
    }

    /// `_take` for one framed record of a member: its pairs into `acc`, or Err (defer the member).
    fn take(&self, py: Python<'_>, payload: &[u8], metadata: bool, acc: &mut Out) -> Result<(), ()> {
        acc.records += 1;
        if !metadata {
            return Ok(());
        }
        if memchr::memmem::find(payload, IMG_PATH.as_bytes()).is_none() {
            return if looks_like_object(payload) { Ok(()) } else { Err(()) };
        }
        let text = std::str::from_utf8(payload).map_err(|_| ())?;
        let doc = json::parse_wat(text, &self.source_names)?;
        let env = doc.get("Envelope")?.ok_or(())?;
        let head = env.get("WARC-Header-Metadata")?.ok_or(())?;
        if !matches!(head, J::Obj(_)) {
            return Err(());
        }
        let wtype = head.get("WARC-Type")?;
        match wtype {
            Some(J::Str(s)) if s == "response" => {}
            Some(J::Arr(_)) => return Err(()),
            _ => {
                // not a response: no pairs; only the shape checks decode_payload makes before this
                return if matches!(env, J::Obj(_)) { Ok(()) } else { Err(()) };
            }
        }
        let page: &str = match head.get("WARC-Target-URI")? {
            Some(J::Str(s)) if !s.is_empty() => s,
            _ => return Err(()), // the outer header's URI (or a list's first string): Python
        };
        let pm = env.get("Payload-Metadata")?;
        let http = match pm {
            None | Some(J::Null) => return Ok(()),
            Some(o @ J::Obj(_)) => o.get("HTTP-Response-Metadata")?,
            _ => return Err(()),
        };
        let html = match http {
            None | Some(J::Null) => return Ok(()),
            Some(o @ J::Obj(_)) => o.get("HTML-Metadata")?,
            _ => return Err(()),
        };
        let links = match html {
            None | Some(J::Null) => return Ok(()),
            Some(J::Obj(items)) if items.is_empty() => return Ok(()),
            Some(o @ J::Obj(_)) => o.get("Links")?,
            _ => return Err(()),
        };
        let html = html.unwrap();
        let links = match links {
            None | Some(J::Null) => return Ok(()),
            Some(J::Arr(v)) if v.is_empty() => return Ok(()),
            Some(J::Arr(v)) => v,
            _ => return Err(()),
        };
        let base: Option<&str> = match html.get("Head")? {
            None | Some(J::Null) => None,
            Some(h @ J::Obj(_)) => opt_str(h.get("Base")?)?,
            _ => return Err(()),
        };
        let base = base.filter(|b| !b.is_empty());
        let mut prepared: Option<Option<Base>> = None;
        let rows0 = acc.rows.len();
        for link in links {
            if !matches!(link, J::Obj(_)) {
                return Err(());
            }
            match link.get("path")? {
                Some(J::Str(p)) if p.starts_with(IMG_PATH) => {}
                _ => continue,
            }
            for (si, src) in self.source_names.iter().enumerate() {
                let Some(raw) = opt_str(link.get(src)?)? else { continue };
                if raw.is_empty() {
                    continue;
                }
                let raw = self.unescaped(py, raw)?;
                let start = acc.strs.len();
                let n = collapse_into(&raw, &mut acc.strs, self.hi);
                if n == 0 {
                    continue;
                }
                if n > self.hi || n < self.lo {
                    acc.strs.truncate(start);
                    acc.filtered += 1;
                    continue;
                }
                acc.found.push(((start, acc.strs.len()), si));
            }
            if acc.found.is_empty() {
                continue;
            }
            let url = match opt_str(link.get("url")?)? {
                Some(u) if !u.is_empty() => u,
                _ => {
                    acc.found.clear();
                    continue;
                }
            };
            let url = self.unescaped(py, url)?;
            let url: &str = &url;
            if url.is_empty() {
                acc.found.clear(); // `&#1;` decodes to nothing
                continue;
            }
            // as written, as Python's `parse.as_written` keeps it; a trailing space or control
            // character, a tab or newline or a backslash inside, is Python's to clean
            let made = if (url.starts_with("http://") || url.starts_with("https://"))
                && url.as_bytes()[url.len() - 1] > b' '
                && !url.bytes().any(|c| c == b'\n' || c == b'\t' || c == b'\r' || c == b'\\')
                && host_start(url.as_bytes(), url.find("//").map_or(0, |i| i + 2))
            {
                Some(ImgUrl::Rust(acc.push(url)))
            } else {
                let r = if base.is_none() {
                    let b = prepared.get_or_insert_with(|| prepare(page));
                    resolve(url, b.as_ref())
                } else {
                    match resolve(url, None) {
                        Url::Drop => Url::Drop,
                        _ => Url::Python,
                    }
                };
                match r {
                    Url::Drop => None,
                    Url::Made(s) => Some(ImgUrl::Rust(acc.push(&s))),
                    Url::Python => {
                        let got = self.join.call1(py, (page, base, url)).map_err(|_| ())?;
                        if got.is_none(py) {
                            None
                        } else if got.bind(py).is_instance_of::<PyString>() {
                            Some(ImgUrl::Py(got))
                        } else {
                            return Err(());
                        }
                    }
                }
            };
            if let Some(u) = made {
                acc.urls.push(u);
                let ui = acc.urls.len() - 1;
                for k in 0..acc.found.len() {
                    let (text, src) = acc.found[k];
                    acc.rows.push(Row { url: ui, text, src });
                }
            }
            acc.found.clear();
        }
        if acc.rows.len() > rows0 {
            let span = acc.push(page);
            acc.pages.push((span, acc.rows.len() - rows0));
        }
        Ok(())
    }

    /// The records of the member just inflated into `self.out` (`_member`'s loop), or Err.
    fn member_records(&self, py: Python<'_>, acc: &mut Out) -> Result<(), ()> {
        let out = &self.out[..self.n];
        if out.is_empty() {
            return Err(());
        }
        let mut i = 0;
        while i < out.len() {
            let (start, cl, metadata) = header_at(out, i).ok_or(())?;
            let stop = start.checked_add(cl).ok_or(())?;
            if out.get(stop..stop + 4) != Some(b"\r\n\r\n") {
                return Err(());
            }
            self.take(py, &out[start..stop], metadata, acc)?;
            i = stop + 4;
        }
        Ok(())
    }
}

/// A good member's pairs appended to the column lists (image_url, text, text_source, pages, page_rows).
fn hand_over(py: Python<'_>, acc: &Out, sources: &Bound<'_, PyTuple>, cols: [&Bound<'_, PyList>; 5]) -> PyResult<()> {
    let [image_url, text, text_source, pages, page_rows] = cols;
    let mut url_objs: Vec<Bound<'_, PyAny>> = Vec::with_capacity(acc.urls.len());
    for u in &acc.urls {
        url_objs.push(match u {
            ImgUrl::Rust(s) => PyString::new(py, acc.get(*s)).into_any(),
            ImgUrl::Py(o) => o.bind(py).clone(),
        });
    }
    for r in &acc.rows {
        image_url.append(&url_objs[r.url])?;
        text.append(PyString::new(py, acc.get(r.text)))?;
        text_source.append(sources.get_item(r.src)?)?;
    }
    for (page, n) in &acc.pages {
        pages.append(PyString::new(py, acc.get(*page)))?;
        page_rows.append(*n)?;
    }
    Ok(())
}

#[pymethods]
impl Parser {
    #[new]
    fn new(
        min_text_length: usize,
        max_text_length: usize,
        sources: Bound<'_, PyTuple>,
        join: PyObject,
        unescape: PyObject,
    ) -> PyResult<Self> {
        let source_names = sources.iter().map(|s| s.extract::<String>()).collect::<PyResult<Vec<_>>>()?;
        Ok(Parser {
            lo: min_text_length,
            hi: max_text_length,
            sources: sources.unbind(),
            source_names,
            join,
            unescape,
            dec: Decompress::new(false),
            fast: Inflater::new(),
            acc: Out::default(),
            out: vec![0; 1 << 20],
            n: 0,
        })
    }

    /// Read the gzip members of `buf` from `start`: their pairs are appended to the column lists.
    /// Stops at the end of `buf`, after the member that brings the pairs to `limit` or more, at a
    /// member not all in `buf` (MORE) or at one for Python (DEFER). Returns (offset, status, records,
    /// texts filtered); only whole members are ever counted.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (buf, start, limit, image_url, text, text_source, pages, page_rows, first_only=false))]
    fn members(
        &mut self,
        py: Python<'_>,
        buf: &[u8],
        start: usize,
        limit: usize,
        image_url: &Bound<'_, PyList>,
        text: &Bound<'_, PyList>,
        text_source: &Bound<'_, PyList>,
        pages: &Bound<'_, PyList>,
        page_rows: &Bound<'_, PyList>,
        first_only: bool,
    ) -> PyResult<(usize, u8, u64, u64)> {
        let mut pos = start;
        let (mut records, mut filtered, mut rows) = (0u64, 0u64, 0usize);
        let sources = self.sources.bind(py).clone();
        while pos < buf.len() {
            let end = match self.inflate(buf, pos) {
                Member::Done(e) => e,
                Member::Incomplete => return Ok((pos, MORE, records, filtered)),
                Member::Defer => return Ok((pos, DEFER, records, filtered)),
            };
            let mut acc = std::mem::take(&mut self.acc);
            acc.clear();
            let good = self.member_records(py, &mut acc).is_ok() && !(first_only && acc.records != 1);
            let handed = if good { hand_over(py, &acc, &sources, [image_url, text, text_source, pages, page_rows]) } else { Ok(()) };
            self.acc = acc; // its buffers serve the next member
            handed?;
            if !good {
                return Ok((pos, DEFER, records, filtered));
            }
            let acc = &self.acc;
            records += acc.records;
            filtered += acc.filtered;
            rows += acc.rows.len();
            pos = end;
            if rows >= limit || first_only {
                break;
            }
        }
        Ok((pos, DONE, records, filtered))
    }
}

/// Python's whitespace as this module sees it (tests compare it with `str.isspace`).
#[pyfunction]
fn py_space_chars() -> String {
    (0..=0x10FFFFu32).filter_map(char::from_u32).filter(|&c| py_space(c)).collect()
}

/// :func:`collapse_into` as a whole (tests compare it with `parse.py`'s `collapse_whitespace`).
#[pyfunction]
fn collapse_whitespace(s: &str) -> String {
    let mut out = String::new();
    collapse_into(s, &mut out, usize::MAX);
    out
}

#[pymodule]
fn kgcurate_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Parser>()?;
    m.add_function(wrap_pyfunction!(py_space_chars, m)?)?;
    m.add_function(wrap_pyfunction!(collapse_whitespace, m)?)?;
    m.add("DONE", DONE)?;
    m.add("MORE", MORE)?;
    m.add("DEFER", DEFER)?;
    Ok(())
}
