//! Text formatting for Telegram's HTML parse mode.
//!
//! The model writes Markdown; Telegram accepts a small HTML subset
//! (<https://core.telegram.org/bots/api#html-style>). This module converts
//! between the two ([`markdown_to_html`]), splits long HTML into messages
//! that fit Telegram's length limit without breaking the markup
//! ([`split_html`]), and produces the plain-text fallback used when Telegram
//! rejects the markup anyway ([`html_to_plain`]).
//!
//! Units: every length in this module that is compared with Telegram's limits
//! is counted the way Telegram counts it — in UTF-16 code units of the text
//! *after* entity parsing (tags count 0, `&amp;` counts 1, an emoji outside
//! the Basic Multilingual Plane counts 2).

use std::borrow::Cow;

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// Telegram's limit for one message text, in UTF-16 code units (Bot API: "1-4096 characters after entities parsing").
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Escape `&`, `<` and `>` for Telegram HTML parse mode.
///
/// The result is safe as element text. Attribute values additionally need `"`
/// escaped; [`markdown_to_html`] does that itself for `href`.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escape text for use inside a double-quoted attribute value.
fn escape_attr(s: &str) -> String {
    escape_html(s).replace('"', "&quot;")
}

/// Length of `s` in UTF-16 code units — the unit Telegram uses for message
/// lengths and entity offsets.
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Visible length of Telegram HTML: UTF-16 code units of the text left after
/// tags are removed and entities decoded — what Telegram compares with
/// [`MAX_MESSAGE_LEN`]. (Telegram additionally trims leading and trailing
/// whitespace, so the real count can only be smaller.)
pub fn visible_len(html: &str) -> usize {
    tokenize(html)
        .iter()
        .map(|t| match t {
            Tok::Text { units, .. } => *units,
            _ => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------
// Markdown → HTML
// ---------------------------------------------------------------------------

/// Convert the model's Markdown to the HTML subset Telegram accepts.
///
/// | Markdown | HTML |
/// | --- | --- |
/// | `**bold**`, `__bold__` | `<b>bold</b>` |
/// | `*italic*`, `_italic_` | `<i>italic</i>` |
/// | `~~strike~~` | `<s>strike</s>` |
/// | `` `code` `` | `<code>code</code>` |
/// | fenced / indented code block | `<pre><code class="language-x">…</code></pre>` / `<pre>…</pre>` |
/// | `[text](https://…)` | `<a href="https://…">text</a>` (other schemes: `text (url)`) |
/// | `# Heading` | `<b>Heading</b>` |
/// | `> quote` | `<blockquote>quote</blockquote>` (never nested) |
/// | `- item` / `1. item` | `• item` / `1. item` lines, nested lists indented two spaces per level |
/// | `- [x] done` | `☑ done` |
/// | table | column-aligned plain text inside `<pre>` |
/// | `---` | a `———` line |
///
/// Everything else — raw HTML, `<tags>` the model typed, stray `&`, single
/// `~tildes~` — comes out as escaped literal text. Line breaks inside a
/// paragraph are kept as line breaks (chat text, not wrapped prose); blocks
/// are separated by one blank line. The result has no leading or trailing
/// newlines and is empty only when the input has no content.
pub fn markdown_to_html(md: &str) -> String {
    let options = Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_SUBSCRIPT
        | Options::ENABLE_TABLES
        | Options::ENABLE_TASKLISTS;
    let mut r = MdRenderer::default();
    for event in Parser::new_ext(md, options) {
        r.event(event);
    }
    r.out
}

/// How a Markdown link is being rendered.
enum LinkMode {
    /// `<a href>` was written; `start` is the output length after it.
    Anchor { start: usize, url: String },
    /// The URL is not one Telegram accepts: label only, then ` (url)`.
    Plain { start: usize, url: String },
}

#[derive(Default)]
struct TableState {
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: String,
    header_rows: usize,
}

#[derive(Default)]
struct MdRenderer {
    out: String,
    /// Newlines owed before the next block's content (written lazily so the
    /// output never ends with them).
    pending: usize,
    /// One entry per open list: the next number for ordered lists.
    lists: Vec<Option<u64>>,
    quote_depth: usize,
    bold: usize,
    italic: usize,
    strike: usize,
    links: Vec<LinkMode>,
    code_block: Option<(String, String)>,
    table: Option<TableState>,
    /// Just wrote a list item marker or `<blockquote>`: a block may start right here.
    at_block_start: bool,
}

impl MdRenderer {
    /// Flush owed newlines before writing content.
    fn begin(&mut self) {
        if self.pending > 0 && !self.out.is_empty() {
            for _ in 0..self.pending {
                self.out.push('\n');
            }
        }
        self.pending = 0;
        self.at_block_start = false;
    }

    /// A block element starts: it needs its own line (e.g. a code block
    /// inside a tight list item, which has no paragraph break before it).
    fn block_start(&mut self) {
        if !self.at_block_start && !self.out.is_empty() {
            self.pending = self.pending.max(1);
        }
    }

    fn text(&mut self, s: &str) {
        if let Some((_, buf)) = &mut self.code_block {
            buf.push_str(s);
            return;
        }
        if let Some(t) = &mut self.table {
            t.cell.push_str(s);
            return;
        }
        self.begin();
        self.out.push_str(&escape_html(s));
    }

    fn open_inline(&mut self, which: Inline) {
        if self.table.is_some() {
            return;
        }
        let (counter, tag) = self.counter(which);
        *counter += 1;
        if *counter == 1 {
            self.begin();
            self.out.push_str(&format!("<{tag}>"));
        }
    }

    fn close_inline(&mut self, which: Inline) {
        if self.table.is_some() {
            return;
        }
        let (counter, tag) = self.counter(which);
        *counter = counter.saturating_sub(1);
        if *counter == 0 {
            self.out.push_str(&format!("</{tag}>"));
        }
    }

    fn counter(&mut self, which: Inline) -> (&mut usize, &'static str) {
        match which {
            Inline::Bold => (&mut self.bold, "b"),
            Inline::Italic => (&mut self.italic, "i"),
            Inline::Strike => (&mut self.strike, "s"),
        }
    }

    fn block_end(&mut self) {
        self.pending = self.pending.max(2);
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(s) => self.text(&s),
            Event::Code(s) => {
                if let Some(t) = &mut self.table {
                    t.cell.push_str(&s);
                } else {
                    self.begin();
                    self.out.push_str("<code>");
                    self.out.push_str(&escape_html(&s));
                    self.out.push_str("</code>");
                }
            }
            Event::InlineMath(s) | Event::DisplayMath(s) => self.text(&s),
            Event::Html(s) | Event::InlineHtml(s) => self.text(&s),
            Event::FootnoteReference(s) => self.text(&format!("[^{s}]")),
            Event::SoftBreak | Event::HardBreak => {
                if let Some(t) = &mut self.table {
                    t.cell.push(' ');
                } else {
                    self.text("\n");
                }
            }
            Event::Rule => {
                self.block_start();
                self.begin();
                self.out.push_str("———");
                self.block_end();
            }
            Event::TaskListMarker(done) => self.text(if done { "☑ " } else { "☐ " }),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph | Tag::HtmlBlock | Tag::MetadataBlock(_) => {
                self.block_start();
                self.begin();
            }
            Tag::Heading { .. } => {
                self.block_start();
                self.open_inline(Inline::Bold);
            }
            Tag::BlockQuote(_) => {
                self.quote_depth += 1;
                if self.quote_depth == 1 {
                    self.block_start();
                    self.begin();
                    self.out.push_str("<blockquote>");
                    self.at_block_start = true;
                }
            }
            Tag::CodeBlock(kind) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => info
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || "_+#.-".contains(*c))
                        .collect(),
                    CodeBlockKind::Indented => String::new(),
                };
                self.block_start();
                self.code_block = Some((lang, String::new()));
            }
            Tag::List(first) => {
                if !self.lists.is_empty() {
                    // Nested list: starts on the line after its parent item's text.
                    self.pending = self.pending.max(1);
                }
                self.lists.push(first);
            }
            Tag::Item => {
                self.begin();
                let depth = self.lists.len().saturating_sub(1);
                let indent = "  ".repeat(depth);
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "• ".to_string(),
                };
                self.out.push_str(&indent);
                self.out.push_str(&marker);
                self.at_block_start = true;
            }
            Tag::Table(_) => {
                self.block_start();
                self.begin();
                self.table = Some(TableState::default());
            }
            Tag::TableHead | Tag::TableRow | Tag::TableCell => {}
            Tag::Emphasis => self.open_inline(Inline::Italic),
            Tag::Strong => self.open_inline(Inline::Bold),
            Tag::Strikethrough => self.open_inline(Inline::Strike),
            // Single `~x~`: keep the tildes, it is almost never meant as markup.
            Tag::Subscript => self.text("~"),
            Tag::Superscript => self.text("^"),
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                let url = dest_url.to_string();
                if self.table.is_some() {
                    return;
                }
                self.begin();
                let lower = url.to_ascii_lowercase();
                let ok = ["http://", "https://", "tg://"]
                    .iter()
                    .any(|p| lower.starts_with(p));
                if ok {
                    self.out
                        .push_str(&format!("<a href=\"{}\">", escape_attr(&url)));
                    let start = self.out.len();
                    self.links.push(LinkMode::Anchor { start, url });
                } else {
                    let start = self.out.len();
                    self.links.push(LinkMode::Plain { start, url });
                }
            }
            Tag::FootnoteDefinition(label) => {
                self.begin();
                self.text(&format!("[^{label}]: "));
            }
            Tag::DefinitionList | Tag::DefinitionListTitle | Tag::DefinitionListDefinition => {
                self.begin()
            }
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph | TagEnd::MetadataBlock(_) => self.block_end(),
            TagEnd::HtmlBlock => {
                let trimmed = self.out.trim_end_matches('\n').len();
                self.out.truncate(trimmed);
                self.block_end();
            }
            TagEnd::Heading(_) => {
                self.close_inline(Inline::Bold);
                self.block_end();
            }
            TagEnd::BlockQuote(_) => {
                self.quote_depth = self.quote_depth.saturating_sub(1);
                if self.quote_depth == 0 {
                    self.out.push_str("</blockquote>");
                }
                self.block_end();
            }
            TagEnd::CodeBlock => {
                if let Some((lang, code)) = self.code_block.take() {
                    self.begin();
                    let code = code.strip_suffix('\n').unwrap_or(&code);
                    if lang.is_empty() {
                        self.out.push_str("<pre>");
                        self.out.push_str(&escape_html(code));
                        self.out.push_str("</pre>");
                    } else {
                        self.out.push_str(&format!(
                            "<pre><code class=\"language-{}\">",
                            escape_attr(&lang)
                        ));
                        self.out.push_str(&escape_html(code));
                        self.out.push_str("</code></pre>");
                    }
                }
                self.block_end();
            }
            TagEnd::List(_) => {
                self.lists.pop();
                if self.lists.is_empty() {
                    self.block_end();
                } else {
                    self.pending = 1;
                }
            }
            TagEnd::Item => self.pending = 1,
            TagEnd::Table => {
                if let Some(t) = self.table.take() {
                    self.out.push_str(&render_table(&t));
                }
                self.block_end();
            }
            TagEnd::TableHead => {
                if let Some(t) = &mut self.table {
                    let row = std::mem::take(&mut t.row);
                    t.rows.push(row);
                    t.header_rows = t.rows.len();
                }
            }
            TagEnd::TableRow => {
                if let Some(t) = &mut self.table {
                    let row = std::mem::take(&mut t.row);
                    t.rows.push(row);
                }
            }
            TagEnd::TableCell => {
                if let Some(t) = &mut self.table {
                    let cell = std::mem::take(&mut t.cell);
                    t.row.push(cell.trim().to_string());
                }
            }
            TagEnd::Emphasis => self.close_inline(Inline::Italic),
            TagEnd::Strong => self.close_inline(Inline::Bold),
            TagEnd::Strikethrough => self.close_inline(Inline::Strike),
            TagEnd::Subscript => self.text("~"),
            TagEnd::Superscript => {}
            TagEnd::Link | TagEnd::Image => {
                if self.table.is_some() {
                    return;
                }
                match self.links.pop() {
                    Some(LinkMode::Anchor { start, url }) => {
                        if self.out.len() == start {
                            self.out.push_str(&escape_html(&url));
                        }
                        self.out.push_str("</a>");
                    }
                    Some(LinkMode::Plain { start, url }) => {
                        let label_empty = self.out.len() == start;
                        if label_empty {
                            self.out.push_str(&escape_html(&url));
                        } else if !url.is_empty() {
                            self.out.push_str(&format!(" ({})", escape_html(&url)));
                        }
                    }
                    None => {}
                }
            }
            TagEnd::FootnoteDefinition => self.block_end(),
            TagEnd::DefinitionList => self.block_end(),
            TagEnd::DefinitionListTitle | TagEnd::DefinitionListDefinition => {
                self.pending = self.pending.max(1)
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Inline {
    Bold,
    Italic,
    Strike,
}

/// Render a Markdown table as aligned monospace text inside `<pre>`.
fn render_table(t: &TableState) -> String {
    let cols = t.rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in &t.rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for (r, row) in t.rows.iter().enumerate() {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            if i > 0 {
                line.push_str(" | ");
            }
            line.push_str(cell);
            if i + 1 < cols {
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
        if r + 1 == t.header_rows && t.rows.len() > t.header_rows {
            let sep: Vec<String> = widths.iter().map(|w| "-".repeat((*w).max(1))).collect();
            text.push_str(&sep.join("-+-"));
            text.push('\n');
        }
    }
    format!("<pre>{}</pre>", escape_html(text.trim_end_matches('\n')))
}

// ---------------------------------------------------------------------------
// HTML tokenizer (shared by split_html, html_to_plain, visible_len)
// ---------------------------------------------------------------------------

#[derive(Debug)]
enum Tok<'a> {
    /// `<name ...>`
    Open { raw: &'a str, name: &'a str },
    /// `</name>`
    Close { name: &'a str },
    /// `<name .../>` — no content, never on the open-tag stack.
    Void { raw: &'a str },
    /// One visible character or one `&entity;` — the atoms a split may fall between.
    Text {
        raw: &'a str,
        plain: Cow<'a, str>,
        /// UTF-16 code units of `plain`.
        units: usize,
    },
}

impl Tok<'_> {
    fn raw(&self) -> Cow<'_, str> {
        match self {
            Tok::Open { raw, .. } | Tok::Void { raw } | Tok::Text { raw, .. } => Cow::Borrowed(raw),
            Tok::Close { name } => Cow::Owned(format!("</{name}>")),
        }
    }

    fn first_char(&self) -> Option<char> {
        match self {
            Tok::Text { plain, .. } => plain.chars().next(),
            _ => None,
        }
    }
}

fn tokenize(html: &str) -> Vec<Tok<'_>> {
    let bytes = html.as_bytes();
    let mut toks = Vec::with_capacity(html.len());
    let mut i = 0;
    while i < html.len() {
        let b = bytes[i];
        if let Some((tok, len)) = (b == b'<').then(|| parse_tag(&html[i..])).flatten() {
            toks.push(tok);
            i += len;
            continue;
        }
        if let Some((plain, len)) = (b == b'&').then(|| parse_entity(&html[i..])).flatten() {
            let units = utf16_len(&plain);
            toks.push(Tok::Text {
                raw: &html[i..i + len],
                plain,
                units,
            });
            i += len;
            continue;
        }
        let c = html[i..].chars().next().unwrap_or('\u{fffd}');
        let len = c.len_utf8();
        let raw = &html[i..i + len];
        toks.push(Tok::Text {
            raw,
            plain: Cow::Borrowed(raw),
            units: c.len_utf16(),
        });
        i += len;
    }
    toks
}

/// Parse a tag at the start of `s` (which starts with `<`). Returns `None`
/// when this `<` does not start a tag (it is then a literal character).
fn parse_tag(s: &str) -> Option<(Tok<'_>, usize)> {
    let bytes = s.as_bytes();
    let closing = bytes.get(1) == Some(&b'/');
    let name_start = if closing { 2 } else { 1 };
    if !bytes.get(name_start)?.is_ascii_alphabetic() {
        return None;
    }
    let name_end = name_start
        + bytes[name_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
            .count();
    // Find the closing '>' outside quoted attribute values.
    let mut quote: Option<u8> = None;
    let mut end = None;
    for (j, &b) in bytes.iter().enumerate().skip(name_end) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => {
                end = Some(j);
                break;
            }
            None if b == b'<' => return None,
            None => {}
        }
    }
    let end = end?;
    let raw = &s[..=end];
    let name = &s[name_start..name_end];
    let tok = if closing {
        Tok::Close { name }
    } else if raw.ends_with("/>") {
        Tok::Void { raw }
    } else {
        Tok::Open { raw, name }
    };
    Some((tok, end + 1))
}

/// Parse `&name;` / `&#123;` / `&#x1F600;` at the start of `s`. Unknown named
/// entities are kept literally but still treated as one unsplittable atom.
fn parse_entity(s: &str) -> Option<(Cow<'_, str>, usize)> {
    let body_len = s[1..]
        .bytes()
        .take(32)
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'#')
        .count();
    if body_len == 0 || s.as_bytes().get(1 + body_len) != Some(&b';') {
        return None;
    }
    let len = body_len + 2;
    let body = &s[1..1 + body_len];
    let decoded = match body {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some('\u{a0}'),
        _ => body.strip_prefix('#').and_then(|num| {
            let n = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse().ok(),
            };
            n.and_then(char::from_u32)
        }),
    };
    Some(match decoded {
        Some(c) => (Cow::Owned(c.to_string()), len),
        None => (Cow::Borrowed(&s[..len]), len),
    })
}

// ---------------------------------------------------------------------------
// Splitting
// ---------------------------------------------------------------------------

/// Split HTML into parts of at most `max` visible characters each.
///
/// `max` is in UTF-16 code units of text after entity parsing (what Telegram
/// counts; pass [`MAX_MESSAGE_LEN`]). Values below 2 are treated as 2, the
/// size of one astral-plane character.
///
/// Break points, in order of preference: after a blank line (`"\n\n"`), after
/// a line break, after a space, then anywhere between characters ("hard"
/// split, which avoids separating a character from a following combining
/// mark, variation selector or zero-width joiner). A preferred break is only
/// used if it leaves the part at least a third full, so parts don't become
/// tiny. Splits never fall inside a tag or an `&entity;`. Tags open at a split
/// point are closed at the end of the part and reopened (with their original
/// attributes) at the start of the next, so every part is valid on its own.
///
/// Separator whitespace stays at the end of the part before the split, so
/// concatenating [`html_to_plain`] of all parts reproduces the original text,
/// except that parts with no visible non-whitespace text are dropped
/// (Telegram rejects them). Input that fits is returned unchanged as a single
/// part; input without visible text yields an empty `Vec`.
pub fn split_html(html: &str, max: usize) -> Vec<String> {
    let max = max.max(2);
    let toks = tokenize(html);
    let has_content = |ts: &[Tok<'_>]| {
        ts.iter()
            .any(|t| t.first_char().is_some_and(|c| !c.is_whitespace()))
    };
    if !has_content(&toks) {
        return Vec::new();
    }
    let total: usize = toks
        .iter()
        .map(|t| match t {
            Tok::Text { units, .. } => *units,
            _ => 0,
        })
        .sum();
    if total <= max {
        return vec![html.to_string()];
    }

    let mut parts = Vec::new();
    // Tags open at the start of the current part: (name, raw opening tag).
    let mut stack: Vec<(&str, &str)> = Vec::new();
    let mut start = 0;
    while start < toks.len() {
        let end = find_break(&toks, start, max);
        let mut part = String::new();
        for (_, raw) in &stack {
            part.push_str(raw);
        }
        for t in &toks[start..end] {
            part.push_str(&t.raw());
            apply_tag(&mut stack, t);
        }
        for (name, _) in stack.iter().rev() {
            part.push_str(&format!("</{name}>"));
        }
        if has_content(&toks[start..end]) {
            parts.push(part);
        }
        start = end;
    }
    parts
}

/// Track the open-tag stack through one token.
fn apply_tag<'a>(stack: &mut Vec<(&'a str, &'a str)>, t: &Tok<'a>) {
    match t {
        Tok::Open { raw, name } => stack.push((name, raw)),
        Tok::Close { name } => {
            if let Some(pos) = stack
                .iter()
                .rposition(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                stack.truncate(pos);
            }
        }
        _ => {}
    }
}

/// Characters that should stay attached to the character before them.
fn is_extender(c: char) -> bool {
    matches!(c,
        '\u{200d}'                      // zero-width joiner
        | '\u{fe00}'..='\u{fe0f}'       // variation selectors
        | '\u{0300}'..='\u{036f}'       // combining diacritics
        | '\u{1ab0}'..='\u{1aff}'
        | '\u{1dc0}'..='\u{1dff}'
        | '\u{20d0}'..='\u{20ff}'
        | '\u{1f3fb}'..='\u{1f3ff}'     // skin tone modifiers
        | '\u{e0020}'..='\u{e007f}'     // tag characters (flag sequences)
    )
}

/// Token index where the part starting at `start` should end (exclusive).
fn find_break(toks: &[Tok<'_>], start: usize, max: usize) -> usize {
    #[derive(Clone, Copy)]
    struct Cand {
        at: usize,
        used: usize,
    }
    let mut used = 0usize;
    let mut j = start;
    let mut para: Option<Cand> = None;
    let mut line: Option<Cand> = None;
    let mut space: Option<Cand> = None;
    let mut prev_newline = false;
    let mut any_text = false;
    while j < toks.len() {
        if let Tok::Text { units, .. } = &toks[j] {
            if used + units > max && any_text {
                break;
            }
            used += units;
            any_text = true;
            let c = toks[j].first_char();
            j += 1;
            let cand = Some(Cand { at: j, used });
            match c {
                Some('\n') => {
                    if prev_newline {
                        para = cand;
                    }
                    line = cand;
                    prev_newline = true;
                }
                Some(c) if c.is_whitespace() => {
                    space = cand;
                    prev_newline = false;
                }
                _ => prev_newline = false,
            }
        } else {
            j += 1;
        }
    }
    if j >= toks.len() {
        return toks.len();
    }
    let threshold = max / 3;
    let chosen = [para, line, space]
        .into_iter()
        .flatten()
        .find(|c| c.used >= threshold && c.used > 0);
    let mut end = match chosen {
        Some(c) => c.at,
        None => {
            // Hard split: j is the first text token that did not fit. Step back
            // over tags so they go with the text that follows them, and over
            // extenders so a character keeps its modifiers.
            let mut e = j;
            while e > start + 1 && !matches!(toks[e - 1], Tok::Text { .. }) {
                e -= 1;
            }
            let hard = e;
            while e > start + 1
                && (toks[e].first_char().is_some_and(is_extender)
                    || toks[e - 1].first_char() == Some('\u{200d}'))
            {
                e -= 1;
            }
            if toks[start..e].iter().any(|t| matches!(t, Tok::Text { .. })) {
                e
            } else {
                hard
            }
        }
    };
    // Closing tags right after the break belong to this part, not the next.
    while end < toks.len() && matches!(toks[end], Tok::Close { .. }) {
        end += 1;
    }
    end
}

// ---------------------------------------------------------------------------
// Plain-text fallback
// ---------------------------------------------------------------------------

/// Strip tags and unescape entities: the plain-text fallback when Telegram
/// rejects the markup (send the result without `parse_mode`).
///
/// Decodes `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&nbsp;` and numeric
/// entities; unknown entities and a `<` that does not start a tag are kept as
/// they are. Link targets are dropped along with the tags. For any string `s`,
/// `html_to_plain(&escape_html(s)) == s`.
pub fn html_to_plain(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    for t in tokenize(html) {
        if let Tok::Text { plain, .. } = t {
            out.push_str(&plain);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Check that every tag in `html` is closed in order and nothing extra is closed.
    fn balanced(html: &str) -> bool {
        let mut stack = Vec::new();
        for t in tokenize(html) {
            match t {
                Tok::Open { name, .. } => stack.push(name.to_ascii_lowercase()),
                Tok::Close { name }
                    if stack.pop().as_deref() != Some(&name.to_ascii_lowercase()) =>
                {
                    return false;
                }
                _ => {}
            }
        }
        stack.is_empty()
    }

    fn no_ws(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn escape_basic() {
        assert_eq!(
            escape_html("a < b && c > d"),
            "a &lt; b &amp;&amp; c &gt; d"
        );
        assert_eq!(escape_html("\"quote\" 'x'"), "\"quote\" 'x'");
        assert_eq!(escape_html(""), "");
    }

    #[test]
    fn markdown_table() {
        let cases: &[(&str, &str)] = &[
            ("plain text", "plain text"),
            ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
            ("*it* and _it_", "<i>it</i> and <i>it</i>"),
            ("~~gone~~", "<s>gone</s>"),
            ("about ~5 to ~10 min", "about ~5 to ~10 min"),
            ("~approx~", "~approx~"),
            ("`x < y`", "<code>x &lt; y</code>"),
            (
                "```rust\nfn main() {}\n```",
                "<pre><code class=\"language-rust\">fn main() {}</code></pre>",
            ),
            ("```\na & b\n```", "<pre>a &amp; b</pre>"),
            ("    indented\n    code", "<pre>indented\ncode</pre>"),
            (
                "[site](https://example.com/?a=1&b=\"2\")",
                "<a href=\"https://example.com/?a=1&amp;b=&quot;2&quot;\">site</a>",
            ),
            (
                "<https://x.org>",
                "<a href=\"https://x.org\">https://x.org</a>",
            ),
            ("[rel](docs/page)", "rel (docs/page)"),
            (
                "[](https://x.org)",
                "<a href=\"https://x.org\">https://x.org</a>",
            ),
            (
                "![cat](https://x.org/c.png)",
                "<a href=\"https://x.org/c.png\">cat</a>",
            ),
            ("# Title\n\ntext", "<b>Title</b>\n\ntext"),
            ("## **Bold** title", "<b>Bold title</b>"),
            ("- a\n- b", "• a\n• b"),
            ("* a\n* b\n\nafter", "• a\n• b\n\nafter"),
            ("1. one\n2. two", "1. one\n2. two"),
            ("3. three\n4. four", "3. three\n4. four"),
            ("- a\n  - b\n- c", "• a\n  • b\n• c"),
            ("- [x] done\n- [ ] todo", "• ☑ done\n• ☐ todo"),
            ("> quoted\n> more", "<blockquote>quoted\nmore</blockquote>"),
            (
                "> outer\n>> inner",
                "<blockquote>outer\n\ninner</blockquote>",
            ),
            (
                "- item:\n  ```\n  code\n  ```\n- next",
                "• item:\n<pre>code</pre>\n• next",
            ),
            ("- ```\n  code\n  ```", "• <pre>code</pre>"),
            ("1. a\n\n2. b", "1. a\n2. b"),
            ("text\n# Heading", "text\n\n<b>Heading</b>"),
            ("para one\n\npara two", "para one\n\npara two"),
            ("line one\nline two", "line one\nline two"),
            (
                "<b>raw</b> & <script>",
                "&lt;b&gt;raw&lt;/b&gt; &amp; &lt;script&gt;",
            ),
            ("<div>\nblock\n</div>", "&lt;div&gt;\nblock\n&lt;/div&gt;"),
            ("a\n\n---\n\nb", "a\n\n———\n\nb"),
            ("***both***", "<i><b>both</b></i>"),
            ("**a *b* c**", "<b>a <i>b</i> c</b>"),
            ("snake_case_name", "snake_case_name"),
            ("2 < 3 > 1", "2 &lt; 3 &gt; 1"),
            ("", ""),
            (
                "| a | bb |\n|---|---|\n| ccc | d |",
                "<pre>a   | bb\n----+---\nccc | d</pre>",
            ),
        ];
        for (md, want) in cases {
            assert_eq!(&markdown_to_html(md), want, "markdown: {md:?}");
        }
    }

    #[test]
    fn markdown_output_is_balanced() {
        let md = "# H\n\n> q **b** *i* `c`\n\n- [l](https://a.b) ~~s~~\n  1. n\n\n```py\nx\n```";
        let html = markdown_to_html(md);
        assert!(balanced(&html), "{html}");
    }

    #[test]
    fn plain_round_trips() {
        for s in [
            "a < b & c > d",
            "&amp; literally",
            "emoji 😀 & \"quotes\"",
            "",
            "<b>",
        ] {
            assert_eq!(html_to_plain(&escape_html(s)), s);
        }
        assert_eq!(
            html_to_plain(
                "<b>bold</b> <a href=\"https://x\">link</a> &lt;tag&gt; &#128512; &#x41; &nbsp;"
            ),
            "bold link <tag> 😀 A \u{a0}"
        );
        assert_eq!(
            html_to_plain("a &unknown; b & c < d"),
            "a &unknown; b & c < d"
        );
        let md = "**Hello** _world_ & `code <x>`";
        assert_eq!(
            html_to_plain(&markdown_to_html(md)),
            "Hello world & code <x>"
        );
    }

    #[test]
    fn visible_len_counts_utf16_after_entities() {
        assert_eq!(visible_len("<b>ab</b>"), 2);
        assert_eq!(visible_len("&amp;&lt;"), 2);
        assert_eq!(visible_len("😀"), 2);
        assert_eq!(visible_len("&#128512;"), 2);
        assert_eq!(visible_len("é"), 1);
        assert_eq!(utf16_len("a😀"), 3);
    }

    #[test]
    fn short_input_is_unchanged_and_empty_input_yields_nothing() {
        assert_eq!(split_html("<b>hi</b>", 10), vec!["<b>hi</b>"]);
        assert!(split_html("", 10).is_empty());
        assert!(split_html("  \n <b></b>", 10).is_empty());
    }

    #[test]
    fn long_reply_splits_on_paragraphs() {
        let para = |i: usize| {
            format!(
                "Paragraph {i}: {}",
                "lorem ipsum dolor sit amet ".repeat(12)
            )
        };
        let text: Vec<String> = (0..30).map(para).collect();
        let original = text.join("\n\n");
        assert!(utf16_len(&original) > 9000);
        let html = escape_html(&original);
        let parts = split_html(&html, MAX_MESSAGE_LEN);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        for p in &parts {
            assert!(visible_len(p) <= MAX_MESSAGE_LEN);
            // Every part ends at a paragraph boundary except the last.
            assert!(p.ends_with("\n\n") || p == parts.last().unwrap());
        }
        let joined: String = parts.iter().map(|p| html_to_plain(p)).collect();
        assert_eq!(joined, original);
    }

    #[test]
    fn nine_thousand_chars_without_newlines() {
        let words: String = (0..1500).map(|i| format!("w{:04} ", i)).collect(); // 9000 chars
        assert_eq!(words.len(), 9000);
        let original = words.trim_end().to_string();
        let parts = split_html(&original, MAX_MESSAGE_LEN);
        assert_eq!(parts.len(), 3);
        for p in &parts {
            assert!(visible_len(p) <= MAX_MESSAGE_LEN);
        }
        assert!(parts[0].ends_with(' '), "split at a space");
        let joined: String = parts.iter().map(|p| html_to_plain(p)).collect();
        assert_eq!(joined, original);
    }

    #[test]
    fn prefers_line_then_space_then_hard() {
        assert_eq!(
            split_html("aaaa\nbbbb cccc", 10),
            vec!["aaaa\n", "bbbb cccc"]
        );
        assert_eq!(split_html("aaaa bbbb cccc", 10), vec!["aaaa bbbb ", "cccc"]);
        assert_eq!(split_html("aaaaaaaaaaaa", 5), vec!["aaaaa", "aaaaa", "aa"]);
        // A paragraph break too early (less than a third of max) is skipped.
        assert_eq!(
            split_html("a\n\nbbbbbbb ccccc", 12),
            vec!["a\n\nbbbbbbb ", "ccccc"]
        );
    }

    #[test]
    fn split_inside_bold_keeps_both_parts_balanced() {
        let html = format!("intro <b>{} {}</b> outro", "x".repeat(30), "y".repeat(30));
        let parts = split_html(&html, 40);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], format!("intro <b>{} </b>", "x".repeat(30)));
        assert_eq!(parts[1], format!("<b>{}</b> outro", "y".repeat(30)));
        for p in &parts {
            assert!(balanced(p), "{p}");
        }
    }

    #[test]
    fn reopens_tags_with_attributes() {
        let html = format!(
            "<pre><code class=\"language-rust\">{}\n{}</code></pre>",
            "a".repeat(8),
            "b".repeat(8)
        );
        let parts = split_html(&html, 10);
        assert_eq!(
            parts,
            vec![
                format!(
                    "<pre><code class=\"language-rust\">{}\n</code></pre>",
                    "a".repeat(8)
                ),
                format!(
                    "<pre><code class=\"language-rust\">{}</code></pre>",
                    "b".repeat(8)
                ),
            ]
        );
        let link = "<a href=\"https://x.org/?a=1&amp;b=2\">aaaa bbbb</a>";
        assert_eq!(
            split_html(link, 5),
            vec![
                "<a href=\"https://x.org/?a=1&amp;b=2\">aaaa </a>",
                "<a href=\"https://x.org/?a=1&amp;b=2\">bbbb</a>"
            ]
        );
    }

    #[test]
    fn never_splits_entities() {
        // 3 visible characters per "&amp;x&lt;" group boundary; max 4 forces hard splits.
        let html = "&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;";
        let parts = split_html(html, 4);
        assert_eq!(
            parts,
            vec!["&amp;&amp;&amp;&amp;", "&amp;&amp;&amp;&amp;", "&amp;"]
        );
        let parts = split_html("abc&amp;def", 4);
        assert_eq!(parts, vec!["abc&amp;", "def"]);
        let parts = split_html("ab&#128512;cd", 3);
        assert_eq!(parts, vec!["ab", "&#128512;c", "d"]);
    }

    #[test]
    fn emoji_counted_as_two_units() {
        let html = "😀".repeat(5); // 10 UTF-16 units
        let parts = split_html(&html, 4);
        assert_eq!(parts, vec!["😀😀", "😀😀", "😀"]);
        // Odd budget: never split a surrogate pair.
        let parts = split_html(&html, 3);
        assert!(parts.iter().all(|p| p == "😀"));
        assert_eq!(parts.len(), 5);
        // Fits exactly in UTF-16 units although it has 5 chars / 20 bytes.
        assert_eq!(split_html(&html, 10).len(), 1);
        assert_eq!(split_html(&html, 9).len(), 2);
    }

    #[test]
    fn hard_split_keeps_emoji_sequences_together() {
        // 👍🏽 = U+1F44D U+1F3FD (4 units); family = man ZWJ woman (5 units)
        let html = "ab👍🏽";
        assert_eq!(split_html(html, 4), vec!["ab", "👍🏽"]);
        let html = "a\u{1F468}\u{200D}\u{1F469}";
        assert_eq!(split_html(html, 5), vec!["a", "\u{1F468}\u{200D}\u{1F469}"]);
    }

    #[test]
    fn unknown_and_malformed_markup_does_not_panic() {
        for html in [
            "<b>unclosed",
            "</i>stray",
            "a < b <",
            "<a href=\"x>y\">t</a>",
            "&#xZZ; &; &",
            "<b/>x",
        ] {
            let parts = split_html(html, 2);
            for p in &parts {
                assert!(visible_len(p) <= 2 || html.contains("&#xZZ;"), "{p:?}");
            }
        }
    }

    fn html_strategy() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "[a-z ]{0,12}",
            Just("\n".to_string()),
            Just("\n\n".to_string()),
            Just("&amp;".to_string()),
            Just("&lt;".to_string()),
            Just("😀".to_string()),
            Just("é".to_string()),
            Just("👍🏽".to_string()),
            Just("&#128512;".to_string()),
        ];
        let tree = leaf.prop_recursive(4, 64, 6, |inner| {
            (
                prop_oneof![
                    Just(("<b>", "</b>")),
                    Just(("<i>", "</i>")),
                    Just(("<a href=\"https://e.org/?q=1&amp;r=2\">", "</a>")),
                    Just(("<pre><code class=\"language-rust\">", "</code></pre>")),
                    Just(("<blockquote>", "</blockquote>")),
                ],
                prop::collection::vec(inner, 0..6),
            )
                .prop_map(|((open, close), kids)| format!("{open}{}{close}", kids.concat()))
        });
        prop::collection::vec(tree, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn split_html_invariants(html in html_strategy(), max in 2usize..60) {
            let parts = split_html(&html, max);
            for p in &parts {
                prop_assert!(visible_len(p) <= max, "part {:?} longer than {}", p, max);
                prop_assert!(balanced(p), "unbalanced part {:?}", p);
                prop_assert!(!html_to_plain(p).trim().is_empty(), "empty part");
            }
            let joined: String = parts.iter().map(|p| html_to_plain(p)).collect();
            prop_assert_eq!(no_ws(&joined), no_ws(&html_to_plain(&html)));
        }

        #[test]
        fn split_never_panics_on_arbitrary_input(s in ".{0,200}", max in 0usize..50) {
            let _ = split_html(&s, max);
            let _ = html_to_plain(&s);
        }

        #[test]
        fn markdown_output_balanced_and_splittable(md in "[a-z*_`#>\\-\\[\\]()~ \n]{0,200}", max in 2usize..80) {
            let html = markdown_to_html(&md);
            prop_assert!(balanced(&html), "unbalanced {:?} from {:?}", html, md);
            for p in split_html(&html, max) {
                prop_assert!(visible_len(&p) <= max);
                prop_assert!(balanced(&p));
            }
        }

        #[test]
        fn escape_round_trip(s in "\\PC{0,100}") {
            prop_assert_eq!(html_to_plain(&escape_html(&s)), s);
        }
    }
}
