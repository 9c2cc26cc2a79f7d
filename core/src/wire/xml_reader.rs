//! A small, bounded pull tokenizer for the XML that MPs send back (reply headers and bodies).
//!
//! - Over UTF-8 `&str` (decode UTF-16 first with [`super::utf16`]); no allocation, no copies:
//!   names, attribute values and text are slices of the input, still escaped. [`XmlText`]
//!   unescapes lazily ([`XmlText::chars`]), into a caller buffer ([`XmlText::unescape_into`]) or
//!   compares ([`XmlText::eq_str`]).
//! - **Safe against entity attacks:** `<!DOCTYPE` (and any other `<!` declaration but comments
//!   and CDATA) is refused, and so is every entity reference except the five predefined ones and
//!   numeric character references. No external entity, no expansion.
//! - Bounded: nesting depth [`MAX_DEPTH`] (end tags checked against a fixed stack), at most
//!   [`MAX_ATTRS`] attributes per tag (duplicates refused).
//! - Well-formedness is checked as far as it is cheap: one root element, matching end tags, names,
//!   quoting, references, control characters. Errors carry the byte offset.
//! - Skipped: the `<?xml …?>` declaration and other processing instructions, comments, and
//!   whitespace outside the root element. Namespaces are not interpreted (`a:b` is a name).

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 16;

/// Most attributes accepted on one tag.
pub const MAX_ATTRS: usize = 32;

/// Longest entity or character reference between `&` and `;` (e.g. `#x0010FFFF`).
const MAX_REF_LEN: usize = 16;

/// What is wrong with the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum XmlErrorKind {
    /// The input ends inside markup or with elements still open.
    UnexpectedEof,
    /// A `<!DOCTYPE` declaration: refused (entity expansion, external entities).
    Doctype,
    /// A `<!` declaration other than a comment or CDATA section.
    UnsupportedMarkup,
    /// An entity reference other than `&lt; &gt; &amp; &apos; &quot;`.
    UnknownEntity,
    /// A malformed reference: a bare `&`, a missing `;`, or a character reference to no valid
    /// XML character.
    BadReference,
    /// A control character other than tab, CR or LF.
    InvalidChar,
    /// A missing or malformed element or attribute name.
    InvalidName,
    /// A malformed tag: no whitespace between attributes, no `=`, unquoted value, `<` in a value.
    MalformedTag,
    /// The same attribute twice on one tag.
    DuplicateAttribute,
    /// More than [`MAX_ATTRS`] attributes on one tag.
    TooManyAttributes,
    /// An end tag that does not match the open element.
    MismatchedEndTag,
    /// An end tag with no element open.
    UnexpectedEndTag,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Text, CDATA or a second element outside the root element.
    ContentOutsideRoot,
    /// No root element at all (empty or whitespace-only document).
    NoRoot,
    /// `--` inside a comment.
    MalformedComment,
    /// Content that is not a simple text: a child element where only text was expected
    /// ([`Reader::read_text`]).
    UnexpectedElement,
    /// The caller's buffer is too small for the unescaped text.
    BufferTooSmall,
}

/// An XML error and where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct XmlError {
    /// What.
    pub kind: XmlErrorKind,
    /// Byte offset in the input (0 for [`XmlErrorKind::BufferTooSmall`]).
    pub offset: usize,
}

impl XmlError {
    /// An error of `kind` at `offset`.
    pub const fn new(kind: XmlErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }
}

fn err<T>(kind: XmlErrorKind, offset: usize) -> Result<T, XmlError> {
    Err(XmlError { kind, offset })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum TextKind {
    Text,
    Attr,
    CData,
}

/// Character data as it appears in the document: element text, an attribute value, or a CDATA
/// section. References are validated already; unescaping cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct XmlText<'a> {
    raw: &'a str,
    kind: TextKind,
}

impl<'a> XmlText<'a> {
    /// The text exactly as in the document (still escaped, unless CDATA).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether this came from a CDATA section (raw and unescaped are the same, bar line ends).
    pub fn is_cdata(&self) -> bool {
        self.kind == TextKind::CData
    }

    /// The text without copying when unescaping would not change it (no `&`, no CR, and for
    /// attribute values no tab or LF either).
    pub fn as_plain(&self) -> Option<&'a str> {
        let special = |b: u8| match self.kind {
            TextKind::Text => b == b'&' || b == b'\r',
            TextKind::CData => b == b'\r',
            TextKind::Attr => matches!(b, b'&' | b'\r' | b'\n' | b'\t'),
        };
        (!self.raw.bytes().any(special)).then_some(self.raw)
    }

    /// The unescaped characters: references replaced, line ends normalised to LF, and in
    /// attribute values tab, CR and LF normalised to spaces (XML 1.0 §2.11, §3.3.3).
    pub fn chars(&self) -> Unescaped<'a> {
        Unescaped {
            rest: self.raw,
            kind: self.kind,
        }
    }

    /// Unescape into `buf`.
    pub fn unescape_into<'b>(&self, buf: &'b mut [u8]) -> Result<&'b str, XmlError> {
        let mut len = 0usize;
        for c in self.chars() {
            let end = len.saturating_add(c.len_utf8());
            let slot = buf
                .get_mut(len..end)
                .ok_or(XmlError::new(XmlErrorKind::BufferTooSmall, 0))?;
            // Through a 4-byte buffer: `encode_utf8` into `slot` keeps a length panic the
            // optimiser cannot remove (no-panic link proof).
            for (d, s) in slot.iter_mut().zip(c.encode_utf8(&mut [0u8; 4]).as_bytes()) {
                *d = *s;
            }
            len = end;
        }
        let out = buf
            .get(..len)
            .ok_or(XmlError::new(XmlErrorKind::BufferTooSmall, 0))?;
        core::str::from_utf8(out).map_err(|_| XmlError::new(XmlErrorKind::BufferTooSmall, 0))
    }

    /// Whether the unescaped text equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        match self.as_plain() {
            Some(plain) => plain == s,
            None => self.chars().eq(s.chars()),
        }
    }

    /// Whether the unescaped text is empty or only XML whitespace.
    pub fn is_whitespace(&self) -> bool {
        self.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
    }
}

/// Iterator over the unescaped characters of an [`XmlText`].
#[derive(Debug, Clone)]
pub struct Unescaped<'a> {
    rest: &'a str,
    kind: TextKind,
}

impl Iterator for Unescaped<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let mut it = self.rest.chars();
        let c = it.next()?;
        let after = it.as_str();
        match c {
            '&' if self.kind != TextKind::CData => {
                // Validated when the text was read; fall back to U+FFFD defensively.
                let (ch, rest) = match after.split_once(';') {
                    Some((body, rest)) => (decode_ref(body).unwrap_or('\u{FFFD}'), rest),
                    None => ('\u{FFFD}', after),
                };
                self.rest = rest;
                Some(ch)
            }
            '\r' => {
                self.rest = after.strip_prefix('\n').unwrap_or(after);
                Some(if self.kind == TextKind::Attr {
                    ' '
                } else {
                    '\n'
                })
            }
            '\n' | '\t' if self.kind == TextKind::Attr => {
                self.rest = after;
                Some(' ')
            }
            c => {
                self.rest = after;
                Some(c)
            }
        }
    }
}

/// The character a reference body (between `&` and `;`) stands for.
fn decode_ref(body: &str) -> Option<char> {
    match body {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => {
            let num = body.strip_prefix('#')?;
            let (digits, radix) = match num.strip_prefix('x') {
                Some(hex) => (hex, 16),
                None => (num, 10),
            };
            if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
                return None;
            }
            let v = u32::from_str_radix(digits, radix).ok()?;
            let c = char::from_u32(v)?;
            is_xml_char(c).then_some(c)
        }
    }
}

/// XML 1.0 `Char`.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Check the references and characters of character data starting at absolute offset `base`.
fn check_text(s: &str, base: usize) -> Result<(), XmlError> {
    for (i, b) in s.bytes().enumerate() {
        let at = base.saturating_add(i);
        match b {
            b'&' => {
                let body_start = i.saturating_add(1);
                let tail = s.get(body_start..).unwrap_or("");
                let window = tail.get(..tail.len().min(MAX_REF_LEN + 1)).unwrap_or(tail);
                let Some(semi) = window.bytes().position(|b| b == b';') else {
                    return err(XmlErrorKind::BadReference, at);
                };
                let body = tail.get(..semi).unwrap_or("");
                if decode_ref(body).is_none() {
                    let looks_named = body
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':');
                    let kind = if looks_named {
                        XmlErrorKind::UnknownEntity
                    } else {
                        XmlErrorKind::BadReference
                    };
                    return err(kind, at);
                }
            }
            b'\t' | b'\n' | b'\r' => {}
            0..=0x1F => return err(XmlErrorKind::InvalidChar, at),
            _ => {}
        }
    }
    Ok(())
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

/// One attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Attr<'a> {
    /// Name as written (`Name`, `xmlns:x`).
    pub name: &'a str,
    /// Value, still escaped.
    pub value: XmlText<'a>,
}

/// The attributes of a tag, parsed lazily (they were validated when the tag was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Attrs<'a> {
    raw: &'a str,
}

impl<'a> Attrs<'a> {
    /// No attributes.
    pub const EMPTY: Attrs<'static> = Attrs { raw: "" };

    /// The value of attribute `name` (case-sensitive, as XML is).
    pub fn get(&self, name: &str) -> Option<XmlText<'a>> {
        self.iter().find(|a| a.name == name).map(|a| a.value)
    }

    /// The attributes in document order.
    pub fn iter(&self) -> AttrIter<'a> {
        AttrIter { rest: self.raw }
    }

    /// The raw attribute text of the tag.
    pub fn raw(&self) -> &'a str {
        self.raw
    }
}

impl<'a> IntoIterator for Attrs<'a> {
    type Item = Attr<'a>;
    type IntoIter = AttrIter<'a>;
    fn into_iter(self) -> AttrIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Attrs`].
#[derive(Debug, Clone)]
pub struct AttrIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Attr<'a>;

    fn next(&mut self) -> Option<Attr<'a>> {
        let s = self.rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let name_len = s.bytes().take_while(|&b| is_name_char(b)).count();
        let (name, rest) = (s.get(..name_len)?, s.get(name_len..)?);
        if name.is_empty() {
            self.rest = "";
            return None;
        }
        let rest = rest
            .trim_start_matches([' ', '\t', '\r', '\n'])
            .strip_prefix('=')?;
        let rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let quote = rest.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let body = rest.get(1..)?;
        let (value, tail) = body.split_once(quote)?;
        self.rest = tail;
        Some(Attr {
            name,
            value: XmlText {
                raw: value,
                kind: TextKind::Attr,
            },
        })
    }
}

/// One token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<'a> {
    /// `<name attrs…>`.
    StartTag {
        /// Element name.
        name: &'a str,
        /// Its attributes.
        attrs: Attrs<'a>,
    },
    /// `<name attrs…/>`: an element with no content (no `EndTag` follows).
    EmptyTag {
        /// Element name.
        name: &'a str,
        /// Its attributes.
        attrs: Attrs<'a>,
    },
    /// `</name>`.
    EndTag {
        /// Element name.
        name: &'a str,
    },
    /// Character data inside the root element (may be whitespace between elements).
    Text(XmlText<'a>),
    /// The content of a `<![CDATA[…]]>` section.
    CData(XmlText<'a>),
}

/// The pull tokenizer. Call [`Reader::next_event`] until `Ok(None)` (the end of a well-formed
/// document) or an error; after an error every call returns the same error.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    src: &'a str,
    pos: usize,
    stack: [&'a str; MAX_DEPTH],
    depth: usize,
    root_seen: bool,
    failed: Option<XmlError>,
}

impl<'a> Reader<'a> {
    /// A reader over `src`; a leading U+FEFF (BOM) is skipped.
    pub fn new(src: &'a str) -> Self {
        let pos = if src.starts_with('\u{FEFF}') {
            '\u{FEFF}'.len_utf8()
        } else {
            0
        };
        Self {
            src,
            pos,
            stack: [""; MAX_DEPTH],
            depth: 0,
            root_seen: false,
            failed: None,
        }
    }

    /// Elements currently open (1 inside the root element).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Byte offset of the next token.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// The next token, `Ok(None)` at the end of the document.
    pub fn next_event(&mut self) -> Result<Option<Event<'a>>, XmlError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.step();
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    /// After a `StartTag`, consume everything up to and including its end tag.
    pub fn skip_element(&mut self) -> Result<(), XmlError> {
        let target = self.depth.saturating_sub(1);
        while self.depth > target {
            if self.next_event()?.is_none() {
                return err(XmlErrorKind::UnexpectedEof, self.pos);
            }
        }
        Ok(())
    }

    /// After a `StartTag`, read its content as one piece of text (or CDATA) up to and including
    /// its end tag. An element with no content gives empty text; a child element is
    /// [`XmlErrorKind::UnexpectedElement`], and so is text split by a comment.
    pub fn read_text(&mut self) -> Result<XmlText<'a>, XmlError> {
        let target = self.depth.saturating_sub(1);
        let mut text: Option<XmlText<'a>> = None;
        loop {
            let at = self.pos;
            match self.next_event()? {
                Some(Event::Text(t) | Event::CData(t)) if text.is_none() => text = Some(t),
                Some(Event::EndTag { .. }) if self.depth == target => {
                    return Ok(text.unwrap_or(XmlText {
                        raw: "",
                        kind: TextKind::Text,
                    }))
                }
                Some(_) => {
                    let e = XmlError::new(XmlErrorKind::UnexpectedElement, at);
                    self.failed = Some(e);
                    return Err(e);
                }
                None => return err(XmlErrorKind::UnexpectedEof, self.pos),
            }
        }
    }

    /// Read to the end, checking that the rest of the document is well formed.
    pub fn finish(&mut self) -> Result<(), XmlError> {
        while self.next_event()?.is_some() {}
        Ok(())
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    /// Offset just past the first `pat` at or after `from`, with the offset of `pat` itself.
    fn find_from(&self, from: usize, pat: &str) -> Result<(usize, usize), XmlError> {
        let tail = self.src.get(from..).unwrap_or("");
        match find_ascii(tail, pat) {
            Some(i) => {
                let at = from.saturating_add(i);
                Ok((at, at.saturating_add(pat.len())))
            }
            None => err(XmlErrorKind::UnexpectedEof, self.src.len()),
        }
    }

    fn step(&mut self) -> Result<Option<Event<'a>>, XmlError> {
        loop {
            let rest = self.rest();
            let start = self.pos;
            if rest.is_empty() {
                if self.depth > 0 {
                    return err(XmlErrorKind::UnexpectedEof, start);
                }
                if !self.root_seen {
                    return err(XmlErrorKind::NoRoot, start);
                }
                return Ok(None);
            }
            if !rest.starts_with('<') {
                let len = rest.find('<').unwrap_or(rest.len());
                let raw = rest.get(..len).unwrap_or("");
                check_text(raw, start)?;
                self.pos = start.saturating_add(len);
                if self.depth == 0 {
                    if let Some(i) = raw.bytes().position(|b| !is_ws(b)) {
                        return err(XmlErrorKind::ContentOutsideRoot, start.saturating_add(i));
                    }
                    continue;
                }
                return Ok(Some(Event::Text(XmlText {
                    raw,
                    kind: TextKind::Text,
                })));
            }
            if rest.starts_with("<?") {
                let (_, end) = self.find_from(start.saturating_add(2), "?>")?;
                self.pos = end;
                continue;
            }
            if rest.starts_with("<!--") {
                let body_start = start.saturating_add(4);
                let (at, end) = self.find_from(body_start, "-->")?;
                let body = self.src.get(body_start..at).unwrap_or("");
                if let Some(i) = find_ascii(body, "--") {
                    return err(XmlErrorKind::MalformedComment, body_start.saturating_add(i));
                }
                // `--->` ends with `-` + `-->`: the comment's last char may not be `-`.
                if body.ends_with('-') {
                    return err(XmlErrorKind::MalformedComment, at.saturating_sub(1));
                }
                self.pos = end;
                continue;
            }
            if rest.starts_with("<![CDATA[") {
                if self.depth == 0 {
                    return err(XmlErrorKind::ContentOutsideRoot, start);
                }
                let body_start = start.saturating_add(9);
                let (at, end) = self.find_from(body_start, "]]>")?;
                let raw = self.src.get(body_start..at).unwrap_or("");
                if let Some(i) = raw
                    .bytes()
                    .position(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
                {
                    return err(XmlErrorKind::InvalidChar, body_start.saturating_add(i));
                }
                self.pos = end;
                return Ok(Some(Event::CData(XmlText {
                    raw,
                    kind: TextKind::CData,
                })));
            }
            if rest.starts_with("<!DOCTYPE") || rest.starts_with("<!doctype") {
                return err(XmlErrorKind::Doctype, start);
            }
            if rest.starts_with("<!") {
                if rest.len() < 9
                    && ("<!DOCTYPE".starts_with(rest)
                        || "<![CDATA[".starts_with(rest)
                        || "<!--".starts_with(rest))
                {
                    return err(XmlErrorKind::UnexpectedEof, start);
                }
                return err(XmlErrorKind::UnsupportedMarkup, start);
            }
            if rest.starts_with("</") {
                return self.end_tag(start).map(Some);
            }
            return self.start_tag(start).map(Some);
        }
    }

    fn name_at(&self, at: usize) -> Result<(&'a str, usize), XmlError> {
        let tail = self.src.get(at..).unwrap_or("");
        match tail.bytes().next() {
            None => return err(XmlErrorKind::UnexpectedEof, at),
            Some(b) if !is_name_start(b) => return err(XmlErrorKind::InvalidName, at),
            Some(_) => {}
        }
        let len = tail.bytes().take_while(|&b| is_name_char(b)).count();
        let name = tail
            .get(..len)
            .ok_or(XmlError::new(XmlErrorKind::InvalidName, at))?;
        Ok((name, at.saturating_add(len)))
    }

    fn skip_ws(&self, mut at: usize) -> usize {
        while self.src.as_bytes().get(at).copied().is_some_and(is_ws) {
            at = at.saturating_add(1);
        }
        at
    }

    fn end_tag(&mut self, start: usize) -> Result<Event<'a>, XmlError> {
        let (name, after) = self.name_at(start.saturating_add(2))?;
        let at = self.skip_ws(after);
        match self.src.as_bytes().get(at) {
            None => return err(XmlErrorKind::UnexpectedEof, at),
            Some(b'>') => {}
            Some(_) => return err(XmlErrorKind::MalformedTag, at),
        }
        let Some(top) = self.depth.checked_sub(1) else {
            return err(XmlErrorKind::UnexpectedEndTag, start);
        };
        if self.stack.get(top).copied() != Some(name) {
            return err(XmlErrorKind::MismatchedEndTag, start);
        }
        self.depth = top;
        self.pos = at.saturating_add(1);
        Ok(Event::EndTag { name })
    }

    fn start_tag(&mut self, start: usize) -> Result<Event<'a>, XmlError> {
        let (name, after) = self.name_at(start.saturating_add(1))?;
        if self.depth == 0 && self.root_seen {
            return err(XmlErrorKind::ContentOutsideRoot, start);
        }
        if self.depth >= MAX_DEPTH {
            return err(XmlErrorKind::TooDeep, start);
        }
        let bytes = self.src.as_bytes();
        let mut names: [&str; MAX_ATTRS] = [""; MAX_ATTRS];
        let mut count = 0usize;
        let mut at = after;
        let (attrs_end, empty, end) = loop {
            let next = self.skip_ws(at);
            let had_ws = next > at;
            at = next;
            match bytes.get(at) {
                None => return err(XmlErrorKind::UnexpectedEof, at),
                Some(b'>') => break (at, false, at.saturating_add(1)),
                Some(b'/') => match bytes.get(at.saturating_add(1)) {
                    None => return err(XmlErrorKind::UnexpectedEof, at),
                    Some(b'>') => break (at, true, at.saturating_add(2)),
                    Some(_) => return err(XmlErrorKind::MalformedTag, at),
                },
                Some(_) if !had_ws => return err(XmlErrorKind::MalformedTag, at),
                Some(_) => {}
            }
            let (attr, after_name) = self.name_at(at)?;
            let eq = self.skip_ws(after_name);
            match bytes.get(eq) {
                None => return err(XmlErrorKind::UnexpectedEof, eq),
                Some(b'=') => {}
                Some(_) => return err(XmlErrorKind::MalformedTag, eq),
            }
            let q = self.skip_ws(eq.saturating_add(1));
            let quote = match bytes.get(q) {
                None => return err(XmlErrorKind::UnexpectedEof, q),
                Some(&c @ (b'"' | b'\'')) => c,
                Some(_) => return err(XmlErrorKind::MalformedTag, q),
            };
            let value_start = q.saturating_add(1);
            let tail = self.src.get(value_start..).unwrap_or("");
            let Some(len) = tail.bytes().position(|b| b == quote) else {
                return err(XmlErrorKind::UnexpectedEof, self.src.len());
            };
            let value = tail.get(..len).unwrap_or("");
            if let Some(i) = value.bytes().position(|b| b == b'<') {
                return err(XmlErrorKind::MalformedTag, value_start.saturating_add(i));
            }
            check_text(value, value_start)?;
            if names.get(..count).unwrap_or(&[]).contains(&attr) {
                return err(XmlErrorKind::DuplicateAttribute, at);
            }
            let slot = names
                .get_mut(count)
                .ok_or(XmlError::new(XmlErrorKind::TooManyAttributes, at))?;
            *slot = attr;
            count += 1;
            at = value_start.saturating_add(len).saturating_add(1);
        };
        let attrs = Attrs {
            raw: self.src.get(after..attrs_end).unwrap_or(""),
        };
        self.root_seen = true;
        self.pos = end;
        if empty {
            Ok(Event::EmptyTag { name, attrs })
        } else {
            let slot = self
                .stack
                .get_mut(self.depth)
                .ok_or(XmlError::new(XmlErrorKind::TooDeep, start))?;
            *slot = name;
            self.depth += 1;
            Ok(Event::StartTag { name, attrs })
        }
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Event<'a>, XmlError>;

    /// Events, then `None` at the end; an error is yielded once, then `None`.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed.is_some() {
            return None;
        }
        self.next_event().transpose()
    }
}

/// Offset of the first `pat` in `hay`, for the reader's short ASCII delimiters. Not `str::find`:
/// core's two-way searcher keeps index checks the optimiser cannot remove, and the core's
/// parsers link without any reachable panic (no-panic link proof).
fn find_ascii(hay: &str, pat: &str) -> Option<usize> {
    let (hay, pat) = (hay.as_bytes(), pat.as_bytes());
    let first = *pat.first()?;
    hay.iter().enumerate().find_map(|(i, &b)| {
        (b == first && hay.get(i..).is_some_and(|t| t.starts_with(pat))).then_some(i)
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn kind(src: &str) -> XmlErrorKind {
        let mut r = Reader::new(src);
        loop {
            match r.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("accepted: {src}"),
                Err(e) => return e.kind,
            }
        }
    }

    fn events(src: &str) -> Vec<String> {
        Reader::new(src)
            .map(|e| match e.unwrap() {
                Event::StartTag { name, attrs } => {
                    let mut s = std::format!("<{name}");
                    for a in attrs {
                        s += &std::format!(" {}={}", a.name, a.value.chars().collect::<String>());
                    }
                    s + ">"
                }
                Event::EmptyTag { name, attrs } => {
                    std::format!("<{name}/{}>", attrs.iter().count())
                }
                Event::EndTag { name } => std::format!("</{name}>"),
                Event::Text(t) => std::format!("T:{}", t.chars().collect::<String>()),
                Event::CData(t) => std::format!("C:{}", t.chars().collect::<String>()),
            })
            .collect()
    }

    #[test]
    fn registration_reply() {
        let src = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><!-- hi --><ClientRegistrationResponse ResponseType=\"Registration\" TimeStamp=\"2026-11-23T10:00:00Z\" Status=\"0\" SMSID=\"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42\"/>\r\n";
        let mut r = Reader::new(src);
        match r.next_event().unwrap().unwrap() {
            Event::EmptyTag { name, attrs } => {
                assert_eq!(name, "ClientRegistrationResponse");
                assert!(attrs.get("Status").unwrap().eq_str("0"));
                assert_eq!(
                    attrs.get("SMSID").unwrap().as_plain(),
                    Some("GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42")
                );
                assert_eq!(attrs.get("status"), None);
                assert_eq!(attrs.iter().count(), 4);
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(r.next_event(), Ok(None));
        assert_eq!(r.next_event(), Ok(None));
    }

    #[test]
    fn nested_text_cdata_and_entities() {
        let src = "\u{FEFF}<a x='1' y = \"&lt;&#65;&#x42;&amp;&quot;&apos;&gt;\"><b>t&amp;u</b><c/><![CDATA[<raw &x;>]]>\r\n<d\n/></a >";
        assert_eq!(
            events(src),
            [
                "<a x=1 y=<AB&\"'>>",
                "<b>",
                "T:t&u",
                "</b>",
                "<c/0>",
                "C:<raw &x;>",
                "T:\n",
                "<d/0>",
                "</a>"
            ]
        );
    }

    #[test]
    fn attribute_whitespace_normalisation_and_unescape() {
        let mut r = Reader::new("<a v=\"x\r\ny\tz&#10;\"/>");
        let Some(Event::EmptyTag { attrs, .. }) = r.next_event().unwrap() else {
            panic!()
        };
        let v = attrs.get("v").unwrap();
        assert_eq!(v.as_plain(), None);
        let mut buf = [0u8; 16];
        assert_eq!(v.unescape_into(&mut buf).unwrap(), "x y z\n");
        let mut small = [0u8; 5];
        assert_eq!(
            v.unescape_into(&mut small).unwrap_err().kind,
            XmlErrorKind::BufferTooSmall
        );
        assert!(v.eq_str("x y z\n"));
        assert!(!v.eq_str("x y z"));
    }

    #[test]
    fn read_text_and_skip() {
        let src = "<Msg><Body Length=\"12\"/><ID> {X} </ID><Hooks><Hook3 Name=\"zlib-compress\"><x/></Hook3></Hooks><E></E><F><![CDATA[c]]></F></Msg>";
        let mut r = Reader::new(src);
        assert!(matches!(
            r.next_event().unwrap(),
            Some(Event::StartTag { name: "Msg", .. })
        ));
        assert!(matches!(
            r.next_event().unwrap(),
            Some(Event::EmptyTag { name: "Body", .. })
        ));
        assert!(matches!(
            r.next_event().unwrap(),
            Some(Event::StartTag { name: "ID", .. })
        ));
        assert_eq!(r.read_text().unwrap().raw(), " {X} ");
        assert!(matches!(
            r.next_event().unwrap(),
            Some(Event::StartTag { name: "Hooks", .. })
        ));
        r.skip_element().unwrap();
        assert_eq!(r.depth(), 1);
        assert!(matches!(
            r.next_event().unwrap(),
            Some(Event::StartTag { name: "E", .. })
        ));
        assert_eq!(r.read_text().unwrap().raw(), "");
        assert!(matches!(
            r.next_event().unwrap(),
            Some(Event::StartTag { name: "F", .. })
        ));
        let t = r.read_text().unwrap();
        assert!(t.is_cdata());
        assert_eq!(t.raw(), "c");
        r.finish().unwrap();

        let mut r = Reader::new("<a><b><c/></b></a>");
        r.next_event().unwrap();
        r.next_event().unwrap();
        assert_eq!(
            r.read_text().unwrap_err().kind,
            XmlErrorKind::UnexpectedElement
        );
        assert_eq!(
            r.next_event().unwrap_err().kind,
            XmlErrorKind::UnexpectedElement
        );
    }

    #[test]
    fn doctype_and_entities_are_refused() {
        let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><lolz>&lol2;</lolz>";
        assert_eq!(kind(laughs), XmlErrorKind::Doctype);
        assert_eq!(
            kind("<!DOCTYPE x SYSTEM \"file:///etc/passwd\"><x/>"),
            XmlErrorKind::Doctype
        );
        assert_eq!(kind("<!doctype x><x/>"), XmlErrorKind::Doctype);
        assert_eq!(kind("<a><!DOCTYPE x></a>"), XmlErrorKind::Doctype);
        assert_eq!(
            kind("<!ENTITY x \"y\"><a/>"),
            XmlErrorKind::UnsupportedMarkup
        );
        assert_eq!(kind("<a>&xxe;</a>"), XmlErrorKind::UnknownEntity);
        assert_eq!(kind("<a v=\"&nbsp;\"/>"), XmlErrorKind::UnknownEntity);
        assert_eq!(kind("<a>&</a>"), XmlErrorKind::BadReference);
        assert_eq!(kind("<a>& b;</a>"), XmlErrorKind::BadReference);
        assert_eq!(kind("<a>&amp</a>"), XmlErrorKind::BadReference);
        assert_eq!(kind("<a>&#0;</a>"), XmlErrorKind::BadReference);
        assert_eq!(kind("<a>&#xD800;</a>"), XmlErrorKind::BadReference);
        assert_eq!(kind("<a>&#x110000;</a>"), XmlErrorKind::BadReference);
        assert_eq!(kind("<a>&#x;</a>"), XmlErrorKind::BadReference);
        assert_eq!(kind("<a>&#12a;</a>"), XmlErrorKind::BadReference);
        assert_eq!(
            kind("<a>&#99999999999999999999;</a>"),
            XmlErrorKind::BadReference
        );
        assert_eq!(kind("<a>&#1;</a>"), XmlErrorKind::BadReference);
        assert_eq!(kind("<a>&#X41;</a>"), XmlErrorKind::BadReference);
        assert_eq!(events("<a>&#x0000041;</a>"), ["<a>", "T:A", "</a>"]);
    }

    #[test]
    fn structure_errors() {
        assert_eq!(kind("<a></b>"), XmlErrorKind::MismatchedEndTag);
        assert_eq!(kind("<a><b></a></b>"), XmlErrorKind::MismatchedEndTag);
        assert_eq!(kind("</a>"), XmlErrorKind::UnexpectedEndTag);
        assert_eq!(kind("<a/></a>"), XmlErrorKind::UnexpectedEndTag);
        assert_eq!(kind("<a>"), XmlErrorKind::UnexpectedEof);
        assert_eq!(kind("<a><b>text"), XmlErrorKind::UnexpectedEof);
        assert_eq!(kind("<a"), XmlErrorKind::UnexpectedEof);
        assert_eq!(kind("<a x=\"1"), XmlErrorKind::UnexpectedEof);
        assert_eq!(kind("<a><!-- x"), XmlErrorKind::UnexpectedEof);
        assert_eq!(kind("<a><![CDATA[x"), XmlErrorKind::UnexpectedEof);
        assert_eq!(kind("<a><![CDA"), XmlErrorKind::UnexpectedEof);
        assert_eq!(kind("<?xml version"), XmlErrorKind::UnexpectedEof);
        assert_eq!(kind(""), XmlErrorKind::NoRoot);
        assert_eq!(kind(" \r\n<!-- c --> "), XmlErrorKind::NoRoot);
        assert_eq!(kind("<a/><b/>"), XmlErrorKind::ContentOutsideRoot);
        assert_eq!(kind("<a/>x"), XmlErrorKind::ContentOutsideRoot);
        assert_eq!(kind("x<a/>"), XmlErrorKind::ContentOutsideRoot);
        assert_eq!(kind("<![CDATA[x]]><a/>"), XmlErrorKind::ContentOutsideRoot);
        assert_eq!(
            kind("<a><!-- a -- b --></a>"),
            XmlErrorKind::MalformedComment
        );
        assert_eq!(kind("<a><!-- a ---></a>"), XmlErrorKind::MalformedComment);
        assert_eq!(kind("<1a/>"), XmlErrorKind::InvalidName);
        assert_eq!(kind("< a/>"), XmlErrorKind::InvalidName);
        assert_eq!(kind("<a></ a>"), XmlErrorKind::InvalidName);
        assert_eq!(kind("<a =\"1\"/>"), XmlErrorKind::InvalidName);
        assert_eq!(kind("<a x=\"1\"y=\"2\"/>"), XmlErrorKind::MalformedTag);
        assert_eq!(kind("<a x/>"), XmlErrorKind::MalformedTag);
        assert_eq!(kind("<a x=1/>"), XmlErrorKind::MalformedTag);
        assert_eq!(kind("<a x=\"<\"/>"), XmlErrorKind::MalformedTag);
        assert_eq!(kind("<a / >"), XmlErrorKind::MalformedTag);
        assert_eq!(kind("<a></a x>"), XmlErrorKind::MalformedTag);
        assert_eq!(kind("<a x=\"1\" x='2'/>"), XmlErrorKind::DuplicateAttribute);
        assert_eq!(kind("<a>\u{1}</a>"), XmlErrorKind::InvalidChar);
        assert_eq!(kind("<a v=\"\0\"/>"), XmlErrorKind::InvalidChar);
    }

    #[test]
    fn limits() {
        let mut deep = String::new();
        for _ in 0..MAX_DEPTH {
            deep += "<d>";
        }
        let mut ok = deep.clone();
        for _ in 0..MAX_DEPTH {
            ok += "</d>";
        }
        assert_eq!(Reader::new(&ok).count(), 2 * MAX_DEPTH);
        assert_eq!(kind(&(deep.clone() + "<d>")), XmlErrorKind::TooDeep);
        assert_eq!(kind(&(deep + "<e/>")), XmlErrorKind::TooDeep);

        let mut many = String::from("<a");
        for i in 0..MAX_ATTRS {
            many += &std::format!(" a{i}=\"{i}\"");
        }
        let ok = many.clone() + "/>";
        assert_eq!(events(&ok), [std::format!("<a/{MAX_ATTRS}>")]);
        assert_eq!(kind(&(many + " z=\"\"/>")), XmlErrorKind::TooManyAttributes);
    }

    #[test]
    fn error_offsets_and_stickiness() {
        let mut r = Reader::new("<a><b></c></a>");
        r.next_event().unwrap();
        r.next_event().unwrap();
        let e = r.next_event().unwrap_err();
        assert_eq!(e, XmlError::new(XmlErrorKind::MismatchedEndTag, 6));
        assert_eq!(r.next_event(), Err(e));
        let mut it = Reader::new("<a>&bad;</a>");
        assert!(matches!(
            it.next(),
            Some(Ok(Event::StartTag { name: "a", .. }))
        ));
        assert!(matches!(
            it.next(),
            Some(Err(XmlError {
                kind: XmlErrorKind::UnknownEntity,
                offset: 3
            }))
        ));
        assert!(it.next().is_none());
    }

    #[test]
    fn non_ascii_names_and_text() {
        assert_eq!(events("<é ñ=\"ü\">日本</é>"), ["<é ñ=ü>", "T:日本", "</é>"]);
        assert_eq!(events("<a:b xmlns:a=\"u\"/>"), ["<a:b/1>"]);
    }

    #[test]
    fn html_error_page_is_refused() {
        let html = "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\"><html><body><h1>Server Error</h1></body></html>";
        assert_eq!(kind(html), XmlErrorKind::Doctype);
        assert_eq!(
            kind("<html><head><meta charset=utf-8></head></html>"),
            XmlErrorKind::MalformedTag
        );
        assert_eq!(
            kind("<html><body><br></body></html>"),
            XmlErrorKind::MismatchedEndTag
        );
    }
}
