//! Finding the one JSON value in a model's free-form answer.
//!
//! Owns the search order (fenced code blocks, then the first balanced object, then the first
//! balanced array), the string-aware brace matching, and the bound on the work one call may
//! do. It must not change the text: every candidate is parsed straight from a slice of the
//! input (`&text[span]`), so a string inside the value keeps its exact bytes. It knows nothing
//! about schemas or kinds; that is `check`'s job.
//!
//! # Rules, in order
//!
//! 1. **Fences.** A fence is a line that starts (after optional spaces or tabs) with three or
//!    more backticks or tildes; a backtick fence's info string may not contain a backtick
//!    (so "```{...}```" on one line is not a fence). The block closes at the next line made
//!    only of at least as many of the same character (plus whitespace); an unclosed block
//!    runs to the end of the text. Blocks whose info string's first word is `json` (any case)
//!    are tried first, then blocks with no info string; blocks tagged with anything else
//!    (`python`, `json5`, ...) are never candidates. The first block whose content, without
//!    the whitespace around it, parses as any JSON value wins.
//! 2. **First object.** Every `{` is a candidate, in order. Its end is found by matching
//!    braces while tracking JSON strings and their backslash escapes, starting from that `{`.
//!    A balanced candidate that parses wins, unless it is an element of a balanced, parseable
//!    array that starts before it: then that array wins (the outermost such array).
//!    A candidate that does not parse is skipped, and the search goes on with the next `{`
//!    after its start, so an object nested in a broken one can still win.
//! 3. **First array.** As 2, with `[` and `]`, when no object parsed at all.
//!
//! Outside fences, a bare scalar (`42`, `"ok"`, `true`) is never extracted: in prose it is
//! indistinguishable from words and numbers.
//!
//! # Remaining ambiguity
//!
//! Prose that is itself valid JSON wins if it comes first: `{}` or `{"x": 1}` written as an
//! example before the real answer, or a `[1]` footnote when the answer is an array with no
//! object in it. Placeholders such as `{name}` or `[see below]` never parse and are skipped
//! without a parse attempt (a candidate `{` must be followed by `"` or `}`, a `[` by
//! something that can start a JSON value).
//!
//! # Bounds
//!
//! Brace matching memoises the end of every bracket it has matched outside a string, so
//! rescanning from a nested candidate jumps over known spans instead of walking them again;
//! typical inputs cost O(n). On top of that, one call may spend at most
//! `WORK_PER_BYTE * n + WORK_BASE` steps (one per byte scanned, plus the length of every slice
//! handed to the JSON parser) and at most [`MAX_FAILED_PARSES`] failed parses. When either runs
//! out the search stops and answers [`NotFound::NoJson`] (or `Truncated`, when an unclosed
//! value was seen first). A leading byte-order mark (U+FEFF) is skipped and never part of a
//! span; slices are only ever cut at ASCII delimiters, so no input can make the search panic.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use serde_json::Value;

/// Which rule found the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The content of a fenced code block tagged `json` or untagged.
    Fence,
    /// The first balanced object in the text that parses.
    Object,
    /// A balanced array: the one holding the first object, or the first one that parses.
    Array,
}

/// The JSON value found in a model's text.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// The parsed value.
    pub value: Value,
    /// The rule that found it.
    pub source: Source,
    /// Byte range of the parsed JSON text in the input; `&text[span]` parses to `value`.
    pub span: Range<usize>,
}

/// Why nothing was extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFound {
    /// The text is empty or only whitespace (a byte-order mark counts as nothing).
    Empty,
    /// A value starts at byte `at` (a `{`, a `[` or an unclosed fence) but never closes,
    /// most likely because the model's output was cut off.
    Truncated {
        /// Byte offset of the earliest unclosed opening seen.
        at: usize,
    },
    /// There is text, but no JSON object, array or fenced JSON was found in it (including
    /// when the search stopped at its work bound, see the module docs).
    NoJson,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the text is empty"),
            Self::Truncated { at } => write!(f, "the JSON starting at byte {at} never closes"),
            Self::NoJson => f.write_str("no JSON object or array found in the text"),
        }
    }
}

/// Failed parse attempts allowed per call, across all rules.
pub const MAX_FAILED_PARSES: usize = 64;
/// Work steps allowed per input byte (see the module docs).
pub const WORK_PER_BYTE: usize = 16;
/// Work steps allowed on top of the per-byte allowance, so short texts are never cut short.
pub const WORK_BASE: usize = 1 << 16;

const BOM: &str = "\u{feff}";

/// Finds the JSON value in `text` by the rules in the module docs.
///
/// # Errors
///
/// [`NotFound`] says why there is no value: empty text, a value cut off, or no JSON found.
pub fn extract(text: &str) -> Result<Extracted, NotFound> {
    let start = if text.starts_with(BOM) { BOM.len() } else { 0 };
    if text[start..].trim().is_empty() {
        return Err(NotFound::Empty);
    }
    let mut search = Search::new(text, start);
    let found = search
        .fenced()
        .or_else(|| search.object())
        .or_else(|| search.array());
    match (found, search.truncated) {
        (Some(found), _) => Ok(found),
        (None, Some(at)) => Err(NotFound::Truncated { at }),
        (None, None) => Err(NotFound::NoJson),
    }
}

/// Whether a fence's info string makes its block a candidate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tag {
    Json,
    Untagged,
    Other,
}

/// A fenced block: where its fence line starts and the bytes between the fence lines.
struct Block {
    at: usize,
    tag: Tag,
    content: Range<usize>,
    closed: bool,
}

/// The state of one call: the text, what is left of the budget, what was seen.
struct Search<'t> {
    text: &'t str,
    bytes: &'t [u8],
    start: usize,
    budget: usize,
    failed_parses: usize,
    exhausted: bool,
    truncated: Option<usize>,
    objects: Matcher,
    arrays: Matcher,
}

impl<'t> Search<'t> {
    fn new(text: &'t str, start: usize) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            start,
            budget: text
                .len()
                .saturating_mul(WORK_PER_BYTE)
                .saturating_add(WORK_BASE),
            failed_parses: 0,
            exhausted: false,
            truncated: None,
            objects: Matcher::new(b'{', b'}'),
            arrays: Matcher::new(b'[', b']'),
        }
    }

    fn note_truncated(&mut self, at: usize) {
        self.truncated = Some(self.truncated.map_or(at, |seen| seen.min(at)));
    }

    /// Parses `&text[span]`, charging its length to the budget; `None` when it does not parse
    /// or the budget is spent.
    fn parse(&mut self, span: Range<usize>) -> Option<Value> {
        if self.exhausted || self.failed_parses >= MAX_FAILED_PARSES || self.budget < span.len() {
            self.exhausted = true;
            return None;
        }
        self.budget -= span.len();
        let parsed = serde_json::from_str(self.text.get(span)?).ok();
        if parsed.is_none() {
            self.failed_parses += 1;
        }
        parsed
    }

    /// Rule 1: json-tagged blocks, then untagged ones.
    fn fenced(&mut self) -> Option<Extracted> {
        let blocks = fenced_blocks(self.bytes, self.start);
        for wanted in [Tag::Json, Tag::Untagged] {
            for block in blocks.iter().filter(|b| b.tag == wanted) {
                let span = trim_json_whitespace(self.bytes, block.content.clone());
                if span.is_empty() {
                    continue;
                }
                if let Some(value) = self.parse(span.clone()) {
                    return Some(Extracted {
                        value,
                        source: Source::Fence,
                        span,
                    });
                }
                if self.exhausted {
                    return None;
                }
                if !block.closed {
                    self.note_truncated(block.at);
                }
            }
        }
        None
    }

    /// Rule 2: the first object that parses, or the array it is an element of.
    fn object(&mut self) -> Option<Extracted> {
        let mut at = self.start;
        while let Some(open) = find_byte(self.bytes, b'{', at) {
            at = open + 1;
            if !could_start_object(self.bytes, open) {
                continue;
            }
            let close = match self.objects.end_of(self.bytes, open, &mut self.budget) {
                None => {
                    self.exhausted = true;
                    return None;
                }
                Some(End::Open) => {
                    self.note_truncated(open);
                    continue;
                }
                Some(End::Closed(close)) => close,
            };
            let span = open..close + 1;
            if let Some(value) = self.parse(span.clone()) {
                return Some(self.enclosing_array(&span).unwrap_or(Extracted {
                    value,
                    source: Source::Object,
                    span,
                }));
            }
            if self.exhausted {
                return None;
            }
        }
        None
    }

    /// The outermost balanced, parseable array that starts before `inner` and ends after it.
    fn enclosing_array(&mut self, inner: &Range<usize>) -> Option<Extracted> {
        let mut at = self.start;
        while let Some(open) = find_byte(self.bytes, b'[', at).filter(|&o| o < inner.start) {
            at = open + 1;
            if !could_start_array(self.bytes, open) {
                continue;
            }
            match self.arrays.end_of(self.bytes, open, &mut self.budget)? {
                End::Closed(close) if close >= inner.end => {
                    let span = open..close + 1;
                    if let Some(value) = self.parse(span.clone()) {
                        return Some(Extracted {
                            value,
                            source: Source::Array,
                            span,
                        });
                    }
                }
                // An unclosed `[` before a complete object is prose, not a cut-off array.
                End::Closed(_) | End::Open => {}
            }
        }
        None
    }

    /// Rule 3: the first array that parses.
    fn array(&mut self) -> Option<Extracted> {
        if self.exhausted {
            return None;
        }
        let mut at = self.start;
        while let Some(open) = find_byte(self.bytes, b'[', at) {
            at = open + 1;
            if !could_start_array(self.bytes, open) {
                continue;
            }
            let close = match self.arrays.end_of(self.bytes, open, &mut self.budget) {
                None => {
                    self.exhausted = true;
                    return None;
                }
                Some(End::Open) => {
                    self.note_truncated(open);
                    continue;
                }
                Some(End::Closed(close)) => close,
            };
            let span = open..close + 1;
            if let Some(value) = self.parse(span.clone()) {
                return Some(Extracted {
                    value,
                    source: Source::Array,
                    span,
                });
            }
            if self.exhausted {
                return None;
            }
        }
        None
    }
}

/// Where a bracket's value ends, as seen from that bracket.
#[derive(Clone, Copy)]
enum End {
    Closed(usize),
    Open,
}

/// String-aware matching of one kind of bracket, remembering every match it has made.
///
/// The memo is sound because the scan's state right after an opening bracket met outside a
/// string (depth + 1, not in a string) is exactly the state a scan starting at that bracket
/// begins with, so both see the same closing bracket.
struct Matcher {
    open: u8,
    close: u8,
    memo: HashMap<usize, End>,
}

impl Matcher {
    fn new(open: u8, close: u8) -> Self {
        Self {
            open,
            close,
            memo: HashMap::new(),
        }
    }

    /// The end of the value opening at `start`; `None` when `budget` runs out first.
    fn end_of(&mut self, bytes: &[u8], start: usize, budget: &mut usize) -> Option<End> {
        if let Some(&end) = self.memo.get(&start) {
            return Some(end);
        }
        let mut stack = vec![start];
        let mut in_string = false;
        let mut i = start + 1;
        while i < bytes.len() {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
            let byte = bytes[i];
            if in_string {
                match byte {
                    // Skipping the escaped byte may land inside a multi-byte character; that
                    // is harmless, as continuation bytes never equal an ASCII delimiter.
                    b'\\' => i += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else if byte == b'"' {
                in_string = true;
            } else if byte == self.open {
                match self.memo.get(&i) {
                    Some(End::Closed(close)) => i = *close,
                    Some(End::Open) => break,
                    None => stack.push(i),
                }
            } else if byte == self.close {
                if let Some(opened) = stack.pop() {
                    self.memo.insert(opened, End::Closed(i));
                }
                if stack.is_empty() {
                    return Some(End::Closed(i));
                }
            }
            i += 1;
        }
        for opened in stack {
            self.memo.insert(opened, End::Open);
        }
        Some(End::Open)
    }
}

/// The fenced blocks of the text, in order (tagged `Other` ones included, so their fences
/// pair up correctly).
fn fenced_blocks(bytes: &[u8], start: usize) -> Vec<Block> {
    let mut blocks = Vec::new();
    // The open block: its fence character, fence length, where it starts, tag, content start.
    let mut open: Option<(u8, usize, usize, Tag, usize)> = None;
    let mut line_start = start;
    loop {
        let line_end = find_byte(bytes, b'\n', line_start).unwrap_or(bytes.len());
        let next = (line_end + 1).min(bytes.len());
        let line = &bytes[line_start..line_end];
        match open {
            None => {
                if let Some((fence, count, info)) = opening_fence(line) {
                    open = Some((fence, count, line_start, classify(info), next));
                }
            }
            Some((fence, count, at, tag, content_start)) => {
                if is_closing_fence(line, fence, count) {
                    blocks.push(Block {
                        at,
                        tag,
                        content: content_start..line_start,
                        closed: true,
                    });
                    open = None;
                }
            }
        }
        if line_end >= bytes.len() {
            break;
        }
        line_start = next;
    }
    if let Some((_, _, at, tag, content_start)) = open {
        blocks.push(Block {
            at,
            tag,
            content: content_start..bytes.len(),
            closed: false,
        });
    }
    blocks
}

/// The fence character, its count and the info string, when `line` opens a block.
fn opening_fence(line: &[u8]) -> Option<(u8, usize, &[u8])> {
    let rest = skip_indent(line);
    let fence = *rest.first().filter(|&&b| b == b'`' || b == b'~')?;
    let count = rest.iter().take_while(|&&b| b == fence).count();
    let info = &rest[count..];
    if count < 3 || (fence == b'`' && info.contains(&b'`')) {
        return None;
    }
    Some((fence, count, info))
}

fn is_closing_fence(line: &[u8], fence: u8, count: usize) -> bool {
    let rest = skip_indent(line);
    let run = rest.iter().take_while(|&&b| b == fence).count();
    run >= count && rest[run..].iter().all(u8::is_ascii_whitespace)
}

fn skip_indent(line: &[u8]) -> &[u8] {
    let indent = line
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &line[indent..]
}

fn classify(info: &[u8]) -> Tag {
    let word = info
        .split(u8::is_ascii_whitespace)
        .find(|word| !word.is_empty());
    match word {
        None => Tag::Untagged,
        Some(word) if word.eq_ignore_ascii_case(b"json") => Tag::Json,
        Some(_) => Tag::Other,
    }
}

/// `span` without the JSON whitespace around it (ASCII only, so the ends stay on character
/// boundaries).
fn trim_json_whitespace(bytes: &[u8], span: Range<usize>) -> Range<usize> {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let slice = &bytes[span.clone()];
    let lead = slice.iter().take_while(|b| is_ws(b)).count();
    let trail = slice[lead..].iter().rev().take_while(|b| is_ws(b)).count();
    span.start + lead..span.end - trail
}

fn find_byte(bytes: &[u8], byte: u8, from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b == byte)
        .map(|offset| from + offset)
}

/// The first byte after `at` that is not JSON whitespace.
fn next_significant(bytes: &[u8], at: usize) -> Option<u8> {
    bytes
        .get(at + 1..)?
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// A JSON object's `{` is followed by a key or by `}`; `{name}` placeholders are not.
fn could_start_object(bytes: &[u8], at: usize) -> bool {
    matches!(next_significant(bytes, at), Some(b'"' | b'}'))
}

/// A JSON array's `[` is followed by a value or by `]`; `[see below]` is not.
fn could_start_array(bytes: &[u8], at: usize) -> bool {
    matches!(
        next_significant(bytes, at),
        Some(b'"' | b'{' | b'[' | b']' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
    )
}
