//! A strict JSON reader for WAT payloads: accepts only what orjson accepts *and* reads the same way.
//!
//! Anything it is not certain about is an error (`Err(())`), which makes the caller hand the whole
//! gzip member to the pure-Python reader: numbers with an exponent (orjson may overflow them to an
//! error), nesting deeper than 500, lone surrogate escapes, control characters in strings, trailing
//! commas, a byte order mark, content after the document. The input is already valid UTF-8.

use std::borrow::Cow;

pub enum J<'a> {
    Null,
    Bool,
    Num,
    Str(Cow<'a, str>),
    Arr(Vec<J<'a>>),
    Obj(Vec<(Cow<'a, str>, J<'a>)>),
}

pub type R<T> = Result<T, ()>;

const MAX_DEPTH: usize = 500;
const MAX_NUMBER: usize = 300;

impl<'a> J<'a> {
    /// The value under `key` of an object (None: absent). Err for a duplicate key (orjson keeps the
    /// last; deferring is simpler than proving it) or when `self` is not an object.
    pub fn get(&self, key: &str) -> R<Option<&J<'a>>> {
        let J::Obj(items) = self else { return Err(()) };
        let mut found = None;
        for (k, v) in items {
            if k == key {
                if found.is_some() {
                    return Err(());
                }
                found = Some(v);
            }
        }
        Ok(found)
    }
}

/// Which part of a WAT payload a value is: the parts read are kept, every other value is only
/// validated (no tree, no unescaped strings), which is most of a payload.
#[derive(Clone, Copy, PartialEq)]
pub enum Sel {
    Keep,
    Top,
    Env,
    Pm,
    Hrm,
    Html,
    Head,
    Links,
    Link,
}

fn child(sel: Sel, key: &str, sources: &[String]) -> Option<Sel> {
    match (sel, key) {
        (Sel::Keep, _) => Some(Sel::Keep),
        (Sel::Top, "Envelope") => Some(Sel::Env),
        (Sel::Env, "WARC-Header-Metadata") => Some(Sel::Keep),
        (Sel::Env, "Payload-Metadata") => Some(Sel::Pm),
        (Sel::Pm, "HTTP-Response-Metadata") => Some(Sel::Hrm),
        (Sel::Hrm, "HTML-Metadata") => Some(Sel::Html),
        (Sel::Html, "Links") => Some(Sel::Links),
        (Sel::Html, "Head") => Some(Sel::Head),
        (Sel::Head, "Base") => Some(Sel::Keep),
        (Sel::Link, "path" | "url") => Some(Sel::Keep),
        (Sel::Link, k) if sources.iter().any(|s| s == k) => Some(Sel::Keep),
        _ => None,
    }
}

/// The payload's document with only the parts a WAT reader looks at (see `Sel`); the rest is
/// validated as `parse` would.
pub fn parse_wat<'a>(text: &'a str, sources: &[String]) -> R<J<'a>> {
    let mut p = Parser { s: text, b: text.as_bytes(), i: 0 };
    p.ws();
    let v = p.sel_value(0, Sel::Top, sources)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(());
    }
    Ok(v)
}

#[allow(dead_code)]
pub fn parse(text: &str) -> R<J<'_>> {
    let mut p = Parser { s: text, b: text.as_bytes(), i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(());
    }
    Ok(v)
}

/// The index of the first quote, backslash or control byte in `b` at or after `i` (`b.len()` if
/// none), eight bytes at a time: strings are most of a payload's bytes.
#[inline]
fn plain_run(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(w) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(w.try_into().unwrap());
        let q = x ^ (ONES * b'"' as u64);
        let s = x ^ (ONES * b'\\' as u64);
        // a byte's high bit set: that byte is 0 (q, s) or below 0x20 (x). A borrow can set bits above
        // the first such byte only, so the lowest set bit is exact.
        let m = (q.wrapping_sub(ONES) & !q | s.wrapping_sub(ONES) & !s | x.wrapping_sub(ONES * 0x20) & !x) & HIGH;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] != b'"' && b[i] != b'\\' && b[i] >= 0x20 {
        i += 1;
    }
    i
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(())
    }

    /// The whole value at `self.i`.
    fn value(&mut self, depth: usize) -> R<J<'a>> {
        self.sel_value(depth, Sel::Keep, &[])
    }

    /// The value at `self.i` with only the parts under `sel` built (objects: the keys `child` names;
    /// arrays: all of a kept one, each link of Links; any other array is validated and stands as
    /// `[null]`, its shape being all a reader looks at).
    fn sel_value(&mut self, depth: usize, sel: Sel, sources: &[String]) -> R<J<'a>> {
        match self.peek()? {
            b'{' => {
                if depth >= MAX_DEPTH {
                    return Err(());
                }
                self.i += 1;
                let mut items = Vec::new();
                // A link whose first key is a "path" other than an image's: the reader skips it, so
                // the rest is only validated and it stands as `{}` (no allocation for most links).
                let mut not_img = false;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Ok(J::Obj(items));
                }
                loop {
                    self.ws();
                    if self.peek()? != b'"' {
                        return Err(());
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.peek()? != b':' {
                        return Err(());
                    }
                    self.i += 1;
                    self.ws();
                    if not_img {
                        if k == "path" {
                            return Err(()); // a second "path": `J::get` would defer the record too
                        }
                        self.skip(depth + 1)?;
                    } else {
                        match child(sel, &k, sources) {
                            Some(c) => {
                                let v = self.sel_value(depth + 1, c, sources)?;
                                if sel == Sel::Link && items.is_empty() && k == "path"
                                    && !matches!(&v, J::Str(p) if p.starts_with(crate::IMG_PATH))
                                {
                                    not_img = true;
                                } else {
                                    items.push((k, v));
                                }
                            }
                            None => self.skip(depth + 1)?,
                        }
                    }
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Ok(J::Obj(items));
                        }
                        _ => return Err(()),
                    }
                }
            }
            b'[' if matches!(sel, Sel::Keep | Sel::Links) => {
                if depth >= MAX_DEPTH {
                    return Err(());
                }
                let each = if sel == Sel::Links { Sel::Link } else { Sel::Keep };
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Ok(J::Arr(items));
                }
                loop {
                    self.ws();
                    items.push(self.sel_value(depth + 1, each, sources)?);
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Ok(J::Arr(items));
                        }
                        _ => return Err(()),
                    }
                }
            }
            b'[' => {
                self.skip(depth)?;
                Ok(J::Arr(vec![J::Null]))
            }
            _ => self.scalar(),
        }
    }

    /// A string, literal or number at `self.i`.
    fn scalar(&mut self) -> R<J<'a>> {
        match self.peek()? {
            b'"' => Ok(J::Str(self.string()?)),
            b't' => self.lit(b"true", J::Bool),
            b'f' => self.lit(b"false", J::Bool),
            b'n' => self.lit(b"null", J::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(()),
        }
    }

    /// Validate the value at `self.i` as `value` would, building nothing.
    fn skip(&mut self, depth: usize) -> R<()> {
        match self.peek()? {
            b'{' | b'[' => {
                if depth >= MAX_DEPTH {
                    return Err(());
                }
                let close = if self.b[self.i] == b'{' { b'}' } else { b']' };
                self.i += 1;
                self.ws();
                if self.peek()? == close {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if close == b'}' {
                        if self.peek()? != b'"' {
                            return Err(());
                        }
                        self.skip_string()?;
                        self.ws();
                        if self.peek()? != b':' {
                            return Err(());
                        }
                        self.i += 1;
                        self.ws();
                    }
                    self.skip(depth + 1)?;
                    self.ws();
                    let c = self.peek()?;
                    if c == b',' {
                        self.i += 1;
                    } else if c == close {
                        self.i += 1;
                        return Ok(());
                    } else {
                        return Err(());
                    }
                }
            }
            b'"' => self.skip_string(),
            _ => self.scalar().map(|_| ()),
        }
    }

    /// Validate the string at `self.i` as `string` would (escapes, surrogate pairs, no control bytes).
    fn skip_string(&mut self) -> R<()> {
        self.i += 1;
        let b = self.b;
        loop {
            self.i = plain_run(b, self.i);
            let c = *b.get(self.i).ok_or(())?;
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => {
                    let e = *b.get(self.i + 1).ok_or(())?;
                    self.i += 2;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi) {
                                if b.get(self.i) != Some(&b'\\') || b.get(self.i + 1) != Some(&b'u') {
                                    return Err(());
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(());
                                }
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(());
                            }
                        }
                        _ => return Err(()),
                    }
                }
                _ => return Err(()), // a control byte
            }
        }
    }

    fn lit(&mut self, word: &[u8], v: J<'a>) -> R<J<'a>> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(())
        }
    }

    /// `-? (0 | [1-9][0-9]*) (\.[0-9]+)?`; an exponent, or more than MAX_NUMBER digits, is deferred.
    fn number(&mut self) -> R<J<'a>> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                    self.i += 1;
                }
            }
            _ => return Err(()),
        }
        if self.i < self.b.len() && self.b[self.i] == b'.' {
            self.i += 1;
            let f = self.i;
            while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                self.i += 1;
            }
            if self.i == f {
                return Err(());
            }
        }
        if self.i < self.b.len() && matches!(self.b[self.i], b'e' | b'E') {
            return Err(());
        }
        if self.i - start > MAX_NUMBER {
            return Err(());
        }
        Ok(J::Num)
    }

    /// A string at `self.i` (the opening quote): borrowed when it has no escapes.
    fn string(&mut self) -> R<Cow<'a, str>> {
        self.i += 1;
        let start = self.i;
        let b = self.b;
        self.i = plain_run(b, self.i);
        match *b.get(self.i).ok_or(())? {
            b'"' => {
                let s = &self.s[start..self.i];
                self.i += 1;
                return Ok(Cow::Borrowed(s));
            }
            b'\\' => {}
            _ => return Err(()), // a control byte
        }
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(&self.s[start..self.i]);
        loop {
            let c = *b.get(self.i).ok_or(())?;
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {
                    let e = *b.get(self.i + 1).ok_or(())?;
                    self.i += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if b.get(self.i) != Some(&b'\\') || b.get(self.i + 1) != Some(&b'u') {
                                    return Err(());
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(());
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(());
                            } else {
                                hi
                            };
                            out.push(char::from_u32(cp).ok_or(())?);
                        }
                        _ => return Err(()),
                    }
                }
                c if c < 0x20 => return Err(()),
                _ => {
                    // copy the run up to the next quote, backslash or control byte
                    let run = self.i;
                    self.i = plain_run(b, self.i);
                    out.push_str(&self.s[run..self.i]);
                }
            }
        }
    }

    fn hex4(&mut self) -> R<u32> {
        let h = self.b.get(self.i..self.i + 4).ok_or(())?;
        let mut v = 0u32;
        for &c in h {
            v = v * 16 + (c as char).to_digit(16).ok_or(())?;
        }
        self.i += 4;
        Ok(v)
    }
}
