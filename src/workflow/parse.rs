//! Deterministic parser for approval replies.
//!
//! # What this module owns
//!
//! Members of a group see a numbered list of approval requests they can act on
//! (their *actionable list*, numbered `1..=n` in creation order). They answer in
//! free text. This module decides — deterministically, with a hand-written
//! tokenizer and grammar, and **never by calling a language model** — whether a
//! message is an approval reply it *fully* understands and, if so, which items to
//! approve or reject. Anything it does not fully understand is
//! [`ParseOutcome::NotApproval`] so the caller can route the message to the agent.
//! False positives (approving something by accident) are much worse than false
//! negatives, so every rule below errs towards `NotApproval`.
//!
//! The module does no I/O, keeps no state, uses no regex and compiles nothing per
//! call: one tokenizer pass over the text (at most [`MAX_CHARS`] characters and
//! [`MAX_TOKENS`] tokens), a recursive-descent pass over the tokens, then validation
//! against `items`. It must stay model-free: callers rely on it being predictable.
//!
//! # Grammar (case-insensitive)
//!
//! ```text
//! message  := prefix? please? clause (joiner clause)* tail
//! prefix   := "@name" [","|":"]            only when `addressed`; otherwise NotApproval
//!           | ("hearth"|"bot") ("," | ":")  also makes the message count as addressed
//! clause   := verb+ ["to"] targets? reason?  stacked verbs must agree: "yes, approve 1"
//! verb     := strong: approve(d) verify/verified confirm(ed) accept(ed)   -> Approve
//!                     reject(ed) deny/denied decline(d)                   -> Reject
//!           | weak:   yes ok okay 👍 -> Approve;   no 👎 -> Reject
//! targets  := nums | "all" ["of them"|"requests"] | "them all" | "everything"
//!           | "both" ["of them"] | "them both"
//!           | "it" | "this" | "that" | "them" | "the request"   (= no target; strong only)
//!           | title                                            (strong verbs only)
//! nums     := num ((","|"and"|"&"|", and")? num)*     e.g. 1, #2, 1 3, 1-3, 1–3, 1 to 3
//! num      := ["the"|"number"|"request"|"item"...] (digits | "#"digits)
//!           | first..tenth | 1st, 2nd.. | one..ten | "last"      (strong verbs only)
//! joiner   := ("," | ";" | "." | "!" | "&" | "and" | "but" | "then")*, then a verb
//! reason   := ("because"|"since"|"cause"|"cuz"|"coz"|"cos"|"bc"|"as") text
//!           | ("," | ":" | "-") text                 (strong REJECT verbs only)
//! tail     := ("," | "." | "!" | please | thanks | thank you | too | also | as well
//!              | 👍 after approve | 👎 after reject)*
//! ```
//!
//! * A reason runs to the end of the message, or up to a separator followed by the
//!   start of another clause (a strong verb, or a weak verb directly followed by a
//!   number / `both` / `all` / `everything`): `reject 2 because it's wet, approve 1`.
//! * A clause with no target ("approve", "yes", "ok 👍", "approve it") acts on the only
//!   item; with several items it is [`Refusal::WhichOne`]. In a message with several
//!   clauses every clause needs an explicit target.
//! * Titles are matched ignoring case, punctuation and articles: exact title, then the
//!   phrase as whole words of a title ("dishes" → "Wash dishes"), then the phrase's
//!   words in order ("feed cat" → "Feed the cat"), then a [`strsim`] fuzzy match
//!   (optimal-string-alignment similarity ≥ 0.8, phrases of 4+ letters) only when no other title is
//!   within 0.1 of it. Several matches give [`Refusal::AmbiguousTitle`]; "x and y"
//!   is tried as one title first, then as two. A phrase that reads like prose
//!   (starts with "of", "you", "whatever", ...; or is longer than 8 words) is not a
//!   title attempt, and an unmatched phrase of more than 4 words is `NotApproval`
//!   rather than [`Refusal::NoTitleMatch`].
//! * Weak verbs: when `addressed` is false, a message using only weak verbs needs an
//!   explicit target ("yes 1", "ok both", "yes to all"); "ok", "ok all", "no" alone are
//!   `NotApproval`. Such unaddressed weak-only messages are also never *refused*: a
//!   refusal there becomes `NotApproval`, so the bot does not butt into chat ("ok 7").
//!   A weak verb without a target takes no courtesy words: "ok thanks", "no thanks",
//!   "yes please" are `NotApproval` (they usually answer the agent, not a request).
//! * Past tense + title ("Confirmed dentist appointment") is usually news, not an
//!   instruction: `NotApproval` unless `addressed`, and never a `NoTitleMatch`
//!   refusal. Unaddressed title phrases that match nothing ("accept the challenge")
//!   are `NotApproval` too.
//! * With no actionable items: a title, or a weak verb without a target (a bare "yes"
//!   is probably an answer to the agent), is `NotApproval`; every other parsed form
//!   ("approve", "approve 1", "reject all", addressed "yes 1") is
//!   [`Refusal::NothingActionable`].
//! * Out-of-range numbers, `both` without exactly two items, unmatched/ambiguous
//!   titles and conflicts (one number both approved and rejected) refuse the whole
//!   message: nothing in it is applied.
//!
//! # The hedge rule
//!
//! Outside a reason, every token must be part of the grammar above, so hedges and
//! negations ("but later", "not", "don't", "maybe", "wait", "tomorrow", "after",
//! "should I approve 1", "approve all but 2", "approve 1 except 3") make the message
//! `NotApproval` simply because they are not grammar. The only grammatical "but" is a
//! clause joiner directly followed by a verb ("approve 1 and 3 but reject 2").
//! Free text is allowed in exactly two places, which get extra checks:
//!
//! 1. **Title phrases** are scanned for hedge words ([`HEDGES`]); any hit →
//!    `NotApproval` ("approve dishes later").
//! 2. **Reasons.** Hedge words are *allowed* in reasons introduced by "because" /
//!    "since" (and their spellings) and in comma/colon/dash reasons on a strong
//!    REJECT ("reject 1, not done properly"). Reasons introduced by "as" are scanned
//!    for hedges like titles. Comma reasons are never accepted on approvals ("yes, but
//!    later", "ok, I'll check tomorrow") nor after weak verbs ("no, wait",
//!    "no 2, it's fine"). Every reason is still `NotApproval` when it opens with a
//!    retraction ([`RETRACT`]: "wait", "actually", "but", "maybe", "except", ...,
//!    also after an interjection: "no wait"), when a comma reason opens with a
//!    number or an exception ("reject all, not 2" lists exceptions, it is not a
//!    reason), or when it has no real words ("reject 2, ok").
//!
//! A question mark or an ellipsis ("...", "…") *anywhere* — even inside a reason —
//! makes the message `NotApproval`.
//!
//! Commands (`/approve <targets>`, `/reject <targets> [reason]`) are handled by
//! [`parse_command`]; they are explicit, so they never give `NotApproval`.

use std::fmt;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// What the member wants done with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve (verify, confirm, accept) the request.
    Approve,
    /// Reject (deny, decline) the request.
    Reject,
}

/// One item of the viewer's actionable list. `number` is 1-based.
#[derive(Debug, Clone)]
pub struct ActionableItem<'a> {
    /// 1-based position in the viewer's actionable list (creation order).
    pub number: usize,
    /// Human-readable title, e.g. "Water plants" or "Delete 'Bins'".
    pub title: &'a str,
}

/// One decision applied to one or more requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAction {
    /// Approve or reject.
    pub decision: Decision,
    /// 1-based item numbers: sorted, deduplicated, all present in `items`, never empty.
    pub targets: Vec<usize>,
    /// Free-text reason given by the member ("not clean yet"), if any.
    pub reason: Option<String>,
}

/// Why an understood approval reply cannot be applied. Its [`fmt::Display`] text is a
/// short, friendly, plain-text sentence the caller can send back as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The member has nothing to approve or reject.
    NothingActionable,
    /// A number outside the member's list.
    OutOfRange {
        /// The number the member wrote.
        number: usize,
        /// How many actionable requests the member has.
        count: usize,
    },
    /// "both" used when the member does not have exactly two requests.
    BothNeedsTwo {
        /// How many actionable requests the member has.
        count: usize,
    },
    /// A title phrase matched no request.
    NoTitleMatch {
        /// The phrase as the member wrote it.
        text: String,
    },
    /// A title phrase matched several requests.
    AmbiguousTitle {
        /// The phrase as the member wrote it.
        text: String,
        /// The matching request numbers, ascending.
        numbers: Vec<usize>,
    },
    /// No target given while several requests are actionable.
    WhichOne {
        /// How many actionable requests the member has.
        count: usize,
    },
    /// The same request was both approved and rejected in one message.
    Conflict {
        /// The (smallest) request number involved.
        number: usize,
    },
    /// Command arguments that are not a target list (only from [`parse_command`]).
    UnclearTargets {
        /// The arguments, shortened.
        text: String,
    },
}

/// Result of parsing a message or command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseOutcome {
    /// Not an approval reply, or not fully understood: route the message to the agent.
    NotApproval,
    /// Fully understood and valid against `items`: apply these actions, in order.
    Resolve(Vec<ParsedAction>),
    /// Understood as an approval reply but cannot be applied: reply with the
    /// refusal's text and change nothing.
    Refuse(Refusal),
}

// ---------------------------------------------------------------------------
// Limits and word lists
// ---------------------------------------------------------------------------

/// Longer messages are never approval replies (checked in characters).
pub const MAX_CHARS: usize = 500;
/// Messages with more tokens than this are never approval replies.
pub const MAX_TOKENS: usize = 120;
/// Numbers with more digits than this are not request numbers.
const MAX_DIGITS: usize = 6;
/// Longest title phrase accepted after a verb.
const MAX_TITLE_WORDS: usize = 8;
/// An unmatched title phrase longer than this is treated as prose (NotApproval).
const MAX_REFUSABLE_TITLE_WORDS: usize = 4;
/// Most clauses in one message.
const MAX_CLAUSES: usize = 8;
/// Minimum strsim similarity for a fuzzy title match.
const FUZZY_MIN: f64 = 0.8;
/// Fuzzy candidates within this margin of the best one make the match ambiguous.
const FUZZY_MARGIN: f64 = 0.1;
/// Fuzzy matching is only tried for phrases of at least this many letters/digits.
const FUZZY_MIN_CHARS: usize = 4;

/// Hedge and negation words: a title phrase or an "as" reason containing one of
/// these is not understood.
pub const HEDGES: &[&str] = &[
    "but",
    "later",
    "not",
    "don't",
    "dont",
    "maybe",
    "wait",
    "tomorrow",
    "after",
    "afterwards",
    "perhaps",
    "probably",
    "possibly",
    "might",
    "should",
    "shall",
    "would",
    "could",
    "can't",
    "cant",
    "cannot",
    "won't",
    "wont",
    "never",
    "if",
    "unless",
    "until",
    "till",
    "til",
    "yet",
    "soon",
    "tonight",
    "hold",
    "hmm",
    "hm",
    "idk",
    "unsure",
    "except",
    "once",
    "when",
    "before",
    "no",
    "nope",
    "nah",
    "isn't",
    "isnt",
    "aren't",
    "wasn't",
    "didn't",
    "didnt",
    "doesn't",
    "doesnt",
    "haven't",
    "hasn't",
];

/// Words that, opening a reason, retract or qualify the decision ("reject 2, wait").
pub const RETRACT: &[&str] = &[
    "wait",
    "hold",
    "hang",
    "actually",
    "but",
    "maybe",
    "perhaps",
    "possibly",
    "probably",
    "jk",
    "kidding",
    "never",
    "nevermind",
    "nvm",
    "sorry",
    "oops",
    "or",
    "unless",
    "if",
    "later",
    "tomorrow",
    "hmm",
    "hm",
    "idk",
    "except",
    "excluding",
    "besides",
    "apart",
];

/// Interjections looked past when checking a reason for a retraction ("no wait").
const INTERJECTIONS: &[&str] = &["no", "oh", "um", "uh", "erm", "ah", "hmm", "ok", "okay"];

/// Words that introduce a reason. "as" is the weak one (see the hedge rule).
const REASON_INTRO: &[&str] = &["because", "since", "cause", "cuz", "coz", "cos", "bc", "as"];
/// Courtesy words allowed at the end (and "please"-like ones at the start).
const COURTESY: &[&str] = &[
    "please", "pls", "plz", "thanks", "thx", "ty", "cheers", "too", "also",
];
/// Skipped at the very start: "please approve 1".
const LEADING_SKIP: &[&str] = &["please", "pls", "plz", "also", "kindly"];
/// Skipped before numbers: "approve number 2", "approve the first one".
const NUM_FILLERS: &[&str] = &[
    "the", "number", "numbers", "nr", "request", "requests", "item", "items",
];
/// A title phrase may not start with these: it is prose, not a title.
const FUNCTION_WORDS: &[&str] = &[
    "of",
    "for",
    "on",
    "in",
    "with",
    "at",
    "from",
    "about",
    "by",
    "to",
    "i",
    "i'm",
    "i'll",
    "i'd",
    "i've",
    "im",
    "you",
    "you're",
    "we",
    "he",
    "she",
    "they",
    "me",
    "us",
    "him",
    "her",
    "my",
    "your",
    "our",
    "their",
    "his",
    "its",
    "what",
    "why",
    "how",
    "who",
    "which",
    "where",
    "so",
    "is",
    "are",
    "was",
    "were",
    "be",
    "there",
    "here",
    "whatever",
    "anything",
    "something",
    "nothing",
    "everyone",
    "everybody",
    "anyone",
    "anybody",
    "someone",
    "somebody",
    "any",
    "some",
    "every",
    "each",
    "none",
    "neither",
    "either",
    "whichever",
    "whoever",
    "other",
    "others",
    "rest",
];
/// Words in a comma reason that, followed by a target, make it an exception list.
const EXCEPT_WORDS: &[&str] = &[
    "not",
    "only",
    "just",
    "except",
    "excluding",
    "besides",
    "but",
    "apart",
    "minus",
];

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// Parses a free-text reply against the viewer's actionable `items`.
///
/// `addressed`: true in a private chat (DM), or when the group message replies to /
/// mentions the bot. See the module documentation for the grammar and the hedge rule.
/// Never panics; never calls a model.
pub fn parse_reply(text: &str, items: &[ActionableItem<'_>], addressed: bool) -> ParseOutcome {
    if text.len() > MAX_CHARS * 4 || text.chars().count() > MAX_CHARS {
        return ParseOutcome::NotApproval;
    }
    let Some(toks) = tokenize(text) else {
        return ParseOutcome::NotApproval;
    };
    if toks.is_empty()
        || toks
            .iter()
            .any(|t| matches!(t.kind, Kind::Question | Kind::Ellipsis))
    {
        return ParseOutcome::NotApproval;
    }
    let mut p = Parser {
        src: text,
        toks: &toks,
        pos: 0,
    };
    let mut addressed = addressed;
    if p.kind(0) == Some(Kind::Mention) {
        if !addressed {
            // Aimed at another member ("@dad approve 1"), not at the bot.
            return ParseOutcome::NotApproval;
        }
        p.pos = 1;
        if matches!(p.kind(1), Some(Kind::Comma | Kind::Colon)) {
            p.pos = 2;
        }
    }
    if p.word_in(p.pos, &["hearth", "bot"])
        && matches!(p.kind(p.pos + 1), Some(Kind::Comma | Kind::Colon))
    {
        p.pos += 2;
        addressed = true;
    }
    while p.word_in(p.pos, LEADING_SKIP) {
        p.pos += 1;
    }
    let Some(clauses) = p.parse_clauses() else {
        return ParseOutcome::NotApproval;
    };
    resolve_message(&p, &clauses, items, addressed)
}

/// Parses the arguments of `/approve <targets>` or `/reject <targets> [reason]`.
///
/// `args` is the text after the command. Empty `args` follow the bare-verb rule
/// (acts on the only item, else [`Refusal::WhichOne`] / [`Refusal::NothingActionable`]).
/// Targets use the same forms as replies (numbers, ranges, lists, `both`, `all`,
/// titles). For `/reject`, anything after the targets (optionally after `,` `:` `-`
/// or "because") is the reason; for `/approve` only courtesy words or a "because"
/// reason may follow. Never returns [`ParseOutcome::NotApproval`]: arguments that are
/// not understood give [`Refusal::UnclearTargets`].
pub fn parse_command(decision: Decision, args: &str, items: &[ActionableItem<'_>]) -> ParseOutcome {
    let args = args.trim();
    let numbers = item_numbers(items);
    if numbers.is_empty() {
        return ParseOutcome::Refuse(Refusal::NothingActionable);
    }
    if args.is_empty() {
        return match numbers.as_slice() {
            [only] => finish(vec![(decision, None, vec![*only])]),
            _ => ParseOutcome::Refuse(Refusal::WhichOne { count: items.len() }),
        };
    }
    let unclear = || {
        ParseOutcome::Refuse(Refusal::UnclearTargets {
            text: shorten(args),
        })
    };
    if args.chars().count() > MAX_CHARS {
        return unclear();
    }
    let Some(toks) = tokenize(args) else {
        return unclear();
    };
    let mut p = Parser {
        src: args,
        toks: &toks,
        pos: 0,
    };
    let verb = Verb {
        decision,
        strong: true,
        past: false,
    };
    let Some(target) = p.parse_targets(verb, Mode::Command) else {
        return unclear();
    };
    if target == Target::Bare && p.pos == 0 {
        // "/reject ?": no target at all (a bare target needs "it"/"this"/"them").
        return unclear();
    }
    let (resolved, rest) = match target {
        Target::Title { start, end, .. } => match p.command_title(start, end, items) {
            Ok((n, rest)) => (Ok(vec![n]), rest),
            Err(r) => (Err(Fail::Refuse(r)), end),
        },
        other => (resolve_target(&p, &other, &numbers, items), p.pos),
    };
    // What follows the targets: nothing, courtesy, or a reason.
    let reason = if p.tail_ok(rest, toks.len(), decision, true) {
        None
    } else {
        let mut i = rest;
        let intro = p.word_in(i, REASON_INTRO);
        if intro {
            i += 1;
        } else if decision == Decision::Approve {
            return unclear();
        } else if matches!(
            p.kind(i),
            Some(Kind::Comma | Kind::Colon | Kind::Dash | Kind::Semi | Kind::Period)
        ) {
            i += 1;
        }
        let Some(tok) = toks.get(i) else {
            return unclear();
        };
        if p.verb(i).is_some() {
            // "/reject 1, approve 2": mixed decisions belong in a message, not a command.
            return unclear();
        }
        let text = args[tok.start..].trim();
        if text.is_empty() {
            None
        } else {
            Some(text.to_string())
        }
    };
    match resolved {
        Ok(nums) => finish(vec![(decision, reason, nums)]),
        Err(Fail::Refuse(r)) => ParseOutcome::Refuse(r),
        Err(Fail::NotUnderstood) => unclear(),
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NothingActionable => {
                f.write_str("You have nothing to approve or reject right now.")
            }
            Refusal::OutOfRange { number, count } => match count {
                0 => write!(
                    f,
                    "There is no request {number}: you have nothing to approve or reject right now."
                ),
                1 => write!(f, "There is no request {number}: you only have request 1."),
                n => write!(f, "There is no request {number}: you have {n} (1–{n})."),
            },
            Refusal::BothNeedsTwo { count } => write!(
                f,
                "'both' needs exactly two requests; you have {count}. Say which {}.",
                if *count == 1 { "number" } else { "numbers" }
            ),
            Refusal::NoTitleMatch { text } => {
                write!(f, "No request matches '{}'.", shorten(text))
            }
            Refusal::AmbiguousTitle { text, numbers } => write!(
                f,
                "'{}' matches {}: say which number.",
                shorten(text),
                join_numbers(numbers)
            ),
            Refusal::WhichOne { count } => write!(
                f,
                "You have {count} requests: which? For example 'approve 1' or 'approve all'."
            ),
            Refusal::Conflict { number } => write!(
                f,
                "You both approved and rejected request {number}: say which you meant."
            ),
            Refusal::UnclearTargets { text } => write!(
                f,
                "I couldn't tell which requests '{}' means. Use numbers like 1, 1 3, 1-3, or 'all'.",
                shorten(text)
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Letters/digits (lower-cased in `Tok::word`), with inner apostrophes and
    /// letter-letter hyphens: "don't", "re-pot", "2nd".
    Word,
    /// ASCII digits, optionally after '#'.
    Num(usize),
    /// A digit run too long to be a request number.
    BigNum,
    Comma,
    Semi,
    Colon,
    Period,
    Bang,
    Question,
    Ellipsis,
    Amp,
    Dash,
    ThumbUp,
    ThumbDown,
    Mention,
    Quote,
    Other,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    /// Lower-cased text for `Word`; empty otherwise.
    word: String,
    /// Byte span in the source text.
    start: usize,
    end: usize,
}

type Chars<'s> = std::iter::Peekable<std::str::CharIndices<'s>>;

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '’' | 'ʼ')
}

fn is_hyphen(c: char) -> bool {
    matches!(c, '-' | '‐' | '‑')
}

/// Invisible characters and emoji modifiers: skipped entirely.
fn is_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{FE0E}' | '\u{FE0F}' | '\u{1F3FB}'..='\u{1F3FF}'
    )
}

/// Consumes the rest of a word; returns its end byte offset.
fn scan_word(chars: &mut Chars<'_>, first: char, mut end: usize) -> usize {
    let mut prev = first;
    while let Some(&(j, d)) = chars.peek() {
        if is_word_char(d) {
            chars.next();
            end = j + d.len_utf8();
            prev = d;
            continue;
        }
        let joins = is_apostrophe(d) || (is_hyphen(d) && prev.is_alphabetic());
        if joins {
            let mut look = chars.clone();
            look.next();
            let next = look
                .peek()
                .copied()
                .filter(|&(_, e)| is_word_char(e) && (is_apostrophe(d) || e.is_alphabetic()));
            if let Some((k, e)) = next {
                chars.next();
                chars.next();
                end = k + e.len_utf8();
                prev = e;
                continue;
            }
        }
        break;
    }
    end
}

fn num_kind(digits: &str) -> Kind {
    if digits.len() > MAX_DIGITS {
        return Kind::BigNum;
    }
    digits.parse::<usize>().map_or(Kind::BigNum, Kind::Num)
}

/// Splits `s` into tokens. `None` when there are more than [`MAX_TOKENS`].
fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let mut toks: Vec<Tok> = Vec::new();
    let mut chars: Chars<'_> = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() || is_ignorable(c) {
            continue;
        }
        if toks.len() >= MAX_TOKENS {
            return None;
        }
        let mut end = i + c.len_utf8();
        let mut word = String::new();
        let kind = if is_word_char(c) {
            end = scan_word(&mut chars, c, end);
            let raw = &s[i..end];
            if raw.bytes().all(|b| b.is_ascii_digit()) {
                num_kind(raw)
            } else {
                word = raw
                    .chars()
                    .flat_map(char::to_lowercase)
                    .map(|ch| if is_apostrophe(ch) { '\'' } else { ch })
                    .collect();
                Kind::Word
            }
        } else {
            match c {
                '#' if chars.peek().is_some_and(|&(_, d)| d.is_ascii_digit()) => {
                    let start = end;
                    while let Some(&(j, d)) = chars.peek() {
                        if !d.is_ascii_digit() {
                            break;
                        }
                        chars.next();
                        end = j + 1;
                    }
                    num_kind(&s[start..end])
                }
                '@' if chars.peek().is_some_and(|&(_, d)| is_word_char(d)) => {
                    if let Some((j, d)) = chars.next() {
                        end = scan_word(&mut chars, d, j + d.len_utf8());
                    }
                    Kind::Mention
                }
                '.' => {
                    let mut run = 1;
                    while let Some(&(j, '.')) = chars.peek() {
                        chars.next();
                        end = j + 1;
                        run += 1;
                    }
                    if run > 1 {
                        Kind::Ellipsis
                    } else {
                        Kind::Period
                    }
                }
                '…' => Kind::Ellipsis,
                '?' | '¿' | '？' | '‽' | '⁇' | '⁈' | '⁉' => Kind::Question,
                ',' | '，' | '、' => Kind::Comma,
                ';' | '；' => Kind::Semi,
                ':' | '：' => Kind::Colon,
                '!' | '！' | '¡' => Kind::Bang,
                '&' | '＆' => Kind::Amp,
                '-' | '‐' | '‑' | '‒' | '–' | '—' | '―' | '−' => Kind::Dash,
                '👍' => Kind::ThumbUp,
                '👎' => Kind::ThumbDown,
                '\'' | '"' | '‘' | '’' | '‚' | '“' | '”' | '„' | '«' | '»' | '`' | 'ʼ' => {
                    Kind::Quote
                }
                _ => Kind::Other,
            }
        };
        toks.push(Tok {
            kind,
            word,
            start: i,
            end,
        });
    }
    Some(toks)
}

// ---------------------------------------------------------------------------
// Word classes
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verb {
    decision: Decision,
    strong: bool,
    /// "approved", "confirmed", ...: in chat often a report, not an instruction.
    past: bool,
}

fn verb_word(w: &str) -> Option<Verb> {
    let (decision, strong) = match w {
        "approve" | "approved" | "verify" | "verified" | "confirm" | "confirmed" | "accept"
        | "accepted" => (Decision::Approve, true),
        "reject" | "rejected" | "deny" | "denied" | "decline" | "declined" => {
            (Decision::Reject, true)
        }
        "yes" | "ok" | "okay" => (Decision::Approve, false),
        "no" => (Decision::Reject, false),
        _ => return None,
    };
    let past = strong && w.ends_with('d');
    Some(Verb {
        decision,
        strong,
        past,
    })
}

fn ordinal(w: &str) -> Option<usize> {
    const WORDS: [&str; 10] = [
        "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
        "tenth",
    ];
    if let Some(i) = WORDS.iter().position(|x| *x == w) {
        return Some(i + 1);
    }
    let digits = ["st", "nd", "rd", "th"]
        .iter()
        .find_map(|s| w.strip_suffix(s))?;
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok()
}

fn number_word(w: &str) -> Option<usize> {
    const WORDS: [&str; 10] = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    WORDS.iter().position(|x| *x == w).map(|i| i + 1)
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Message,
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumRef {
    One(usize),
    Range(usize, usize),
    Last,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// No target, or "it"/"this"/"them": the only item.
    Bare,
    /// "all", "everything"; `explicit` for "to all", "all of them", "them all".
    All {
        explicit: bool,
    },
    /// "both".
    Both,
    Nums(Vec<NumRef>),
    /// Token range of a title phrase; `splits` are the "and"/"&" tokens inside it.
    Title {
        start: usize,
        end: usize,
        splits: Vec<usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReasonKind {
    /// "because", "since", ...: hedges allowed.
    Because,
    /// "as": hedges not allowed.
    As,
    /// ", reason" on a reject: hedges allowed.
    Comma,
}

#[derive(Debug, Clone)]
struct Clause {
    decision: Decision,
    strong: bool,
    past: bool,
    target: Target,
    reason: Option<String>,
}

struct Parser<'a> {
    src: &'a str,
    toks: &'a [Tok],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn kind(&self, i: usize) -> Option<Kind> {
        self.toks.get(i).map(|t| t.kind)
    }

    fn word(&self, i: usize) -> Option<&'a str> {
        let toks: &'a [Tok] = self.toks;
        match toks.get(i) {
            Some(t) if t.kind == Kind::Word => Some(t.word.as_str()),
            _ => None,
        }
    }

    fn is_word(&self, i: usize, w: &str) -> bool {
        self.word(i) == Some(w)
    }

    fn word_in(&self, i: usize, list: &[&str]) -> bool {
        self.word(i).is_some_and(|w| list.contains(&w))
    }

    fn verb(&self, i: usize) -> Option<Verb> {
        match self.kind(i)? {
            Kind::Word => verb_word(self.word(i)?),
            Kind::ThumbUp => Some(Verb {
                decision: Decision::Approve,
                strong: false,
                past: false,
            }),
            Kind::ThumbDown => Some(Verb {
                decision: Decision::Reject,
                strong: false,
                past: false,
            }),
            _ => None,
        }
    }

    /// Separator between clauses (or inside a reason, before a new clause).
    fn is_sep(&self, i: usize) -> bool {
        matches!(
            self.kind(i),
            Some(Kind::Comma | Kind::Semi | Kind::Period | Kind::Bang | Kind::Amp)
        ) || self.word_in(i, &["and", "but", "then"])
    }

    /// Does a clause unmistakably start at `k`? A strong verb, or a weak verb
    /// directly followed by an explicit target.
    fn clause_start(&self, k: usize) -> bool {
        match self.verb(k) {
            Some(v) if v.strong => true,
            Some(_) => {
                let j = if self.is_word(k + 1, "to") {
                    k + 2
                } else {
                    k + 1
                };
                matches!(self.kind(j), Some(Kind::Num(_)))
                    || self.word_in(j, &["both", "all", "everything"])
            }
            None => false,
        }
    }

    /// Separator(s) at `j` followed by a clause start.
    fn boundary_at(&self, j: usize) -> bool {
        if !self.is_sep(j) {
            return false;
        }
        let mut k = j;
        while self.is_sep(k) {
            k += 1;
        }
        self.clause_start(k)
    }

    /// Are tokens `from..to` all closing courtesy / punctuation?
    fn tail_ok(&self, from: usize, to: usize, decision: Decision, courtesy: bool) -> bool {
        let mut j = from;
        while j < to {
            match self.kind(j) {
                Some(Kind::Comma | Kind::Period | Kind::Bang) => j += 1,
                Some(Kind::ThumbUp) if decision == Decision::Approve => j += 1,
                Some(Kind::ThumbDown) if decision == Decision::Reject => j += 1,
                Some(Kind::Word) if courtesy => {
                    if self.word_in(j, COURTESY) {
                        j += 1;
                    } else if (self.is_word(j, "thank") && self.word_in(j + 1, &["you", "u"]))
                        || (self.is_word(j, "as") && self.is_word(j + 1, "well"))
                    {
                        j += 2;
                    } else {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        true
    }

    /// Does the current clause end at `j` (nothing more to read as a target)?
    fn ends_clause(&self, j: usize) -> bool {
        match self.kind(j) {
            None => true,
            Some(Kind::Word) => {
                self.word_in(j, COURTESY)
                    || self.word_in(j, REASON_INTRO)
                    || self.word_in(j, &["and", "but", "then", "thank"])
                    || self.verb(j).is_some()
            }
            Some(
                Kind::Comma | Kind::Semi | Kind::Period | Kind::Bang | Kind::Colon | Kind::Dash,
            ) => true,
            Some(Kind::ThumbUp | Kind::ThumbDown) => true,
            _ => false,
        }
    }

    fn num_like(&self, i: usize, strong: bool) -> bool {
        match self.kind(i) {
            Some(Kind::Num(_)) => true,
            Some(Kind::Word) if strong => self
                .word(i)
                .is_some_and(|w| w == "last" || ordinal(w).is_some() || number_word(w).is_some()),
            _ => false,
        }
    }

    fn skip_fillers_from(&self, mut i: usize) -> usize {
        while self.word_in(i, NUM_FILLERS) {
            i += 1;
        }
        i
    }

    /// message := clause (joiner clause)* tail
    fn parse_clauses(&mut self) -> Option<Vec<Clause>> {
        let mut clauses: Vec<Clause> = Vec::new();
        loop {
            let c = self.parse_clause()?;
            let weak_bare = !c.strong && c.target == Target::Bare;
            let decision = c.decision;
            clauses.push(c);
            if self.tail_ok(self.pos, self.toks.len(), decision, !weak_bare) {
                break;
            }
            let mut j = self.pos;
            while self.is_sep(j) {
                j += 1;
            }
            self.verb(j)?;
            self.pos = j;
            if clauses.len() >= MAX_CLAUSES {
                return None;
            }
        }
        if clauses.len() > 1 && clauses.iter().any(|c| c.target == Target::Bare) {
            return None;
        }
        Some(clauses)
    }

    /// clause := verb+ targets? reason?
    fn parse_clause(&mut self) -> Option<Clause> {
        let mut verb = self.verb(self.pos)?;
        self.pos += 1;
        // Stacked verbs of the same decision: "yes, approve 1", "ok 👍".
        loop {
            let mut j = self.pos;
            while matches!(self.kind(j), Some(Kind::Comma | Kind::Bang | Kind::Period)) {
                j += 1;
            }
            match self.verb(j) {
                Some(v) if v.decision == verb.decision => {
                    verb.strong |= v.strong;
                    verb.past |= v.past;
                    self.pos = j + 1;
                }
                _ => break,
            }
        }
        let target = self.parse_targets(verb, Mode::Message)?;
        let reason = self.parse_reason(verb)?;
        Some(Clause {
            decision: verb.decision,
            strong: verb.strong,
            past: verb.past,
            target,
            reason,
        })
    }

    fn parse_targets(&mut self, verb: Verb, mode: Mode) -> Option<Target> {
        let strong = verb.strong;
        let mut had_to = false;
        if mode == Mode::Message && self.is_word(self.pos, "to") {
            self.pos += 1;
            had_to = true;
        }
        let i = self.pos;
        let Some(tok) = self.toks.get(i) else {
            return Some(Target::Bare);
        };
        match tok.kind {
            Kind::Num(_) => return self.parse_num_list(strong).map(Target::Nums),
            Kind::BigNum => return None,
            Kind::Quote if strong => return self.parse_title(verb.decision, mode),
            Kind::Word => {}
            _ => return Some(Target::Bare),
        }
        let w = tok.word.as_str();
        match w {
            "it" | "this" | "that" if strong => {
                self.pos += 1;
                if self.word_in(self.pos, &["one", "request", "item"]) {
                    self.pos += 1;
                }
                Some(Target::Bare)
            }
            "them" | "these" | "those" => {
                self.pos += 1;
                if self.is_word(self.pos, "all") {
                    self.pos += 1;
                    Some(Target::All { explicit: true })
                } else if self.is_word(self.pos, "both") {
                    self.pos += 1;
                    Some(Target::Both)
                } else {
                    strong.then_some(Target::Bare)
                }
            }
            "all" => {
                self.pos += 1;
                let of_them = self.skip_of_them();
                Some(Target::All {
                    explicit: had_to || of_them,
                })
            }
            "everything" => {
                self.pos += 1;
                Some(Target::All { explicit: had_to })
            }
            "both" => {
                self.pos += 1;
                self.skip_of_them();
                Some(Target::Both)
            }
            _ if NUM_FILLERS.contains(&w) || self.num_like(i, strong) => {
                let j = self.skip_fillers_from(i);
                if self.num_like(j, strong) {
                    return self.parse_num_list(strong).map(Target::Nums);
                }
                if strong && j > i && self.ends_clause(j) {
                    // "approve the request"
                    self.pos = j;
                    return Some(Target::Bare);
                }
                if strong && j > i {
                    self.pos = j;
                    return self.parse_title(verb.decision, mode);
                }
                None
            }
            _ if self.ends_clause(i) => Some(Target::Bare),
            _ if strong => self.parse_title(verb.decision, mode),
            _ => None,
        }
    }

    /// Optional "of them" / "requests" after all/both. Returns whether one was read.
    fn skip_of_them(&mut self) -> bool {
        if self.is_word(self.pos, "of")
            && self.word_in(self.pos + 1, &["them", "these", "those", "it"])
        {
            self.pos += 2;
            true
        } else if self.word_in(self.pos, &["requests", "items"]) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// nums := num ((","|"and"|"&")? num)*
    fn parse_num_list(&mut self, strong: bool) -> Option<Vec<NumRef>> {
        let mut out = Vec::new();
        loop {
            self.pos = self.skip_fillers_from(self.pos);
            out.push(self.parse_num_item(strong)?);
            let mut j = self.pos;
            if self.kind(j) == Some(Kind::Comma) {
                j += 1;
            }
            if self.is_word(j, "and") || self.kind(j) == Some(Kind::Amp) {
                j += 1;
            }
            let k = self.skip_fillers_from(j);
            if self.num_like(k, strong) {
                self.pos = j;
            } else {
                break;
            }
        }
        Some(out)
    }

    fn parse_num_item(&mut self, strong: bool) -> Option<NumRef> {
        match self.kind(self.pos)? {
            Kind::Num(n) => {
                self.pos += 1;
                let j = self.pos;
                let range_sep =
                    self.kind(j) == Some(Kind::Dash) || self.word_in(j, &["to", "through", "thru"]);
                if range_sep {
                    match self.kind(j + 1) {
                        Some(Kind::Num(m)) => {
                            self.pos = j + 2;
                            if m < n {
                                return None;
                            }
                            return Some(if m == n {
                                NumRef::One(n)
                            } else {
                                NumRef::Range(n, m)
                            });
                        }
                        Some(Kind::BigNum) => return None,
                        _ => {}
                    }
                }
                Some(NumRef::One(n))
            }
            Kind::Word if strong => {
                let w = self.word(self.pos)?;
                let r = if w == "last" {
                    NumRef::Last
                } else {
                    NumRef::One(ordinal(w).or_else(|| number_word(w))?)
                };
                self.pos += 1;
                if self.word_in(self.pos, &["one", "request", "item"]) {
                    self.pos += 1;
                }
                Some(r)
            }
            _ => None,
        }
    }

    /// A free-text title phrase (strong verbs only).
    fn parse_title(&mut self, decision: Decision, mode: Mode) -> Option<Target> {
        let start = self.pos;
        let mut splits = Vec::new();
        let mut words = 0usize;
        let msg = mode == Mode::Message;
        while let Some(t) = self.toks.get(self.pos) {
            match t.kind {
                Kind::Word => {
                    let w = t.word.as_str();
                    if REASON_INTRO.contains(&w) {
                        break;
                    }
                    if msg {
                        if w == "but"
                            || w == "then"
                            || self.verb(self.pos).is_some_and(|v| v.strong)
                        {
                            break;
                        }
                        if w == "and" && self.boundary_at(self.pos) {
                            break;
                        }
                        if (COURTESY.contains(&w) || w == "thank")
                            && self.tail_ok(self.pos, self.toks.len(), decision, true)
                        {
                            break;
                        }
                    }
                    if w == "and" {
                        splits.push(self.pos);
                    } else {
                        words += 1;
                    }
                }
                Kind::Num(_) | Kind::BigNum => words += 1,
                Kind::Quote | Kind::Other => {}
                Kind::Amp => {
                    if msg && self.boundary_at(self.pos) {
                        break;
                    }
                    splits.push(self.pos);
                }
                Kind::Dash if !msg => {}
                _ => break,
            }
            self.pos += 1;
        }
        let end = self.pos;
        if words == 0 {
            return None;
        }
        if msg {
            if words > MAX_TITLE_WORDS {
                return None;
            }
            let first_word = (start..end).find_map(|k| self.word(k));
            if first_word.is_some_and(|w| FUNCTION_WORDS.contains(&w)) {
                return None;
            }
            if (start..end).any(|k| self.word_in(k, HEDGES)) {
                return None;
            }
        }
        // Only keep splits that leave a word on both sides of every split.
        let mut bounds = vec![start];
        bounds.extend(splits.iter().copied());
        bounds.push(end);
        let parts_ok = bounds.windows(2).enumerate().all(|(n, w)| {
            let from = if n == 0 { w[0] } else { w[0] + 1 };
            (from..w[1])
                .any(|k| self.word(k).is_some() || matches!(self.kind(k), Some(Kind::Num(_))))
        });
        if !parts_ok {
            splits.clear();
        }
        Some(Target::Title { start, end, splits })
    }

    /// reason := intro text | ("," | ":" | "-") text   (the latter on rejects only)
    fn parse_reason(&mut self, verb: Verb) -> Option<Option<String>> {
        let i = self.pos;
        if self.is_word(i, "as") && self.is_word(i + 1, "well") {
            return Some(None); // courtesy tail "as well"
        }
        if let Some(w) = self.word(i).filter(|w| REASON_INTRO.contains(w)) {
            self.pos += 1;
            let kind = if w == "as" {
                ReasonKind::As
            } else {
                ReasonKind::Because
            };
            let (s, e) = self.free_text(verb.decision)?;
            return self.check_reason(s, e, kind).map(Some);
        }
        if verb.decision == Decision::Reject
            && matches!(self.kind(i), Some(Kind::Comma | Kind::Colon | Kind::Dash))
        {
            if self.tail_ok(i, self.toks.len(), verb.decision, true) || self.boundary_at(i) {
                return Some(None);
            }
            if !verb.strong {
                // "no, wait" / "no 2, it's fine": weak verbs take no comma reason.
                return Some(None);
            }
            self.pos += 1;
            let (s, e) = self.free_text(verb.decision)?;
            return self.check_reason(s, e, ReasonKind::Comma).map(Some);
        }
        Some(None)
    }

    /// Reads reason text up to the end or to a clause boundary. Returns the token
    /// range without trailing courtesy/punctuation; `None` when empty.
    fn free_text(&mut self, decision: Decision) -> Option<(usize, usize)> {
        let s = self.pos;
        while self.pos < self.toks.len() && !self.boundary_at(self.pos) {
            self.pos += 1;
        }
        let mut e = self.pos;
        if let Some(k) = (s + 1..e).find(|&k| {
            matches!(self.kind(k), Some(Kind::Comma | Kind::Period | Kind::Bang))
                && self.tail_ok(k, e, decision, true)
        }) {
            e = k;
        }
        while e > s && matches!(self.kind(e - 1), Some(Kind::Period | Kind::Bang)) {
            e -= 1;
        }
        (e > s).then_some((s, e))
    }

    fn check_reason(&self, s: usize, e: usize, kind: ReasonKind) -> Option<String> {
        let has_content = (s..e).any(|k| {
            self.word(k)
                .is_some_and(|w| verb_word(w).is_none() && !COURTESY.contains(&w))
        });
        if !has_content {
            return None;
        }
        // Retraction in the first word, or after an interjection ("no wait", "oh actually").
        let mut words = (s..e).filter(|&k| self.word(k).is_some());
        let first = words.next();
        let retracts = match first {
            Some(k) if self.word_in(k, INTERJECTIONS) => {
                words.next().is_some_and(|k2| self.word_in(k2, RETRACT))
            }
            Some(k) => self.word_in(k, RETRACT),
            None => false,
        };
        if retracts {
            return None;
        }
        if kind == ReasonKind::Comma {
            if matches!(self.kind(s), Some(Kind::Num(_) | Kind::BigNum)) {
                return None;
            }
            // "reject all, not 2" is an exception list, not a reason.
            if self.word_in(s, EXCEPT_WORDS) {
                let j = s + 1;
                if self.num_like(j, true)
                    || self.word_in(j, &["both", "all", "everything", "the"])
                    || self.word_in(j, NUM_FILLERS)
                {
                    return None;
                }
            }
        }
        if kind == ReasonKind::As && (s..e).any(|k| self.word_in(k, HEDGES)) {
            return None;
        }
        let (a, b) = (self.toks.get(s)?.start, self.toks.get(e - 1)?.end);
        let text = self
            .src
            .get(a..b)?
            .trim_start_matches(|c: char| {
                c.is_whitespace() || matches!(c, ',' | ';' | ':' | '-' | '–' | '—')
            })
            .trim();
        (!text.is_empty()).then(|| text.to_string())
    }

    /// Source text of a token range.
    fn text(&self, start: usize, end: usize) -> &'a str {
        let src: &'a str = self.src;
        match (
            self.toks.get(start),
            end.checked_sub(1).and_then(|e| self.toks.get(e)),
        ) {
            (Some(a), Some(b)) if a.start <= b.end => src.get(a.start..b.end).unwrap_or(""),
            _ => "",
        }
    }

    /// Command titles: the longest leading part of the phrase that matches a title
    /// (exactly or as whole words); the remainder is left for the reason.
    fn command_title(
        &self,
        start: usize,
        end: usize,
        items: &[ActionableItem<'_>],
    ) -> Result<(usize, usize), Refusal> {
        for k in (start + 1..=end).rev() {
            if !matches!(self.kind(k - 1), Some(Kind::Word | Kind::Num(_))) {
                continue;
            }
            let phrase = clean_phrase(self.text(start, k));
            match match_title_strict(phrase, items) {
                TitleMatch::One(n) => return Ok((n, k)),
                TitleMatch::Many(numbers) => {
                    return Err(Refusal::AmbiguousTitle {
                        text: phrase.to_string(),
                        numbers,
                    });
                }
                TitleMatch::None => {}
            }
        }
        let phrase = clean_phrase(self.text(start, end));
        match match_title_fuzzy(phrase, items) {
            TitleMatch::One(n) => Ok((n, end)),
            TitleMatch::Many(numbers) => Err(Refusal::AmbiguousTitle {
                text: phrase.to_string(),
                numbers,
            }),
            TitleMatch::None => Err(Refusal::NoTitleMatch {
                text: phrase.to_string(),
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// Validation against the actionable list
// ---------------------------------------------------------------------------

enum Fail {
    /// Not understood after all: NotApproval (messages) / UnclearTargets (commands).
    NotUnderstood,
    Refuse(Refusal),
}

fn item_numbers(items: &[ActionableItem<'_>]) -> Vec<usize> {
    let mut numbers: Vec<usize> = items.iter().map(|i| i.number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
}

fn resolve_message(
    p: &Parser<'_>,
    clauses: &[Clause],
    items: &[ActionableItem<'_>],
    addressed: bool,
) -> ParseOutcome {
    let strong_any = clauses.iter().any(|c| c.strong);
    let quiet = !strong_any && !addressed; // weak verbs only, not aimed at the bot
    if quiet
        && clauses
            .iter()
            .any(|c| matches!(c.target, Target::Bare | Target::All { explicit: false }))
    {
        return ParseOutcome::NotApproval;
    }
    let is_title = |c: &Clause| matches!(c.target, Target::Title { .. });
    if !addressed && clauses.iter().any(|c| c.past && is_title(c)) {
        // "Confirmed dentist appointment" in the family chat is news, not an approval.
        return ParseOutcome::NotApproval;
    }
    let numbers = item_numbers(items);
    if numbers.is_empty() {
        let any_title = clauses
            .iter()
            .any(|c| matches!(c.target, Target::Title { .. }));
        let any_bare = clauses.iter().any(|c| c.target == Target::Bare);
        if any_title || (!strong_any && (quiet || any_bare)) {
            return ParseOutcome::NotApproval;
        }
        return ParseOutcome::Refuse(Refusal::NothingActionable);
    }
    let mut groups = Vec::with_capacity(clauses.len());
    let mut refusal = None;
    for c in clauses {
        match resolve_target(p, &c.target, &numbers, items) {
            Ok(nums) => groups.push((c.decision, c.reason.clone(), nums)),
            Err(Fail::NotUnderstood) => return ParseOutcome::NotApproval,
            // "Confirmed dentist appointment" matching nothing is news, not an approval.
            Err(Fail::Refuse(Refusal::NoTitleMatch { .. })) if c.past => {
                return ParseOutcome::NotApproval;
            }
            Err(Fail::Refuse(r)) => {
                if refusal.is_none() {
                    refusal = Some(r);
                }
            }
        }
    }
    match refusal {
        Some(_) if quiet => ParseOutcome::NotApproval,
        // Unaddressed "accept the challenge": not about a request; stay quiet.
        Some(Refusal::NoTitleMatch { .. }) if !addressed => ParseOutcome::NotApproval,
        Some(r) => ParseOutcome::Refuse(r),
        None => finish(groups),
    }
}

fn resolve_target(
    p: &Parser<'_>,
    target: &Target,
    numbers: &[usize],
    items: &[ActionableItem<'_>],
) -> Result<Vec<usize>, Fail> {
    let count = items.len();
    let valid = |n: usize| numbers.binary_search(&n).is_ok();
    let out_of_range = |n: usize| Fail::Refuse(Refusal::OutOfRange { number: n, count });
    match target {
        Target::Bare => match numbers {
            [only] => Ok(vec![*only]),
            _ => Err(Fail::Refuse(Refusal::WhichOne { count })),
        },
        Target::All { .. } => Ok(numbers.to_vec()),
        Target::Both => match numbers {
            [a, b] => Ok(vec![*a, *b]),
            _ => Err(Fail::Refuse(Refusal::BothNeedsTwo { count })),
        },
        Target::Nums(list) => {
            let mut out = Vec::new();
            for r in list {
                match *r {
                    NumRef::One(n) => {
                        if !valid(n) {
                            return Err(out_of_range(n));
                        }
                        out.push(n);
                    }
                    NumRef::Range(a, b) => {
                        if let Some(&bad) = [a, b].iter().find(|&&n| !valid(n)) {
                            return Err(out_of_range(bad));
                        }
                        out.extend(numbers.iter().copied().filter(|n| (a..=b).contains(n)));
                    }
                    NumRef::Last => out.extend(numbers.last().copied()),
                }
            }
            Ok(out)
        }
        Target::Title { start, end, splits } => {
            let whole = clean_phrase(p.text(*start, *end));
            // A phrase with "and"/"&" is only fuzzy-matched part by part.
            let whole_match = if splits.is_empty() {
                match_title(whole, items)
            } else {
                match_title_strict(whole, items)
            };
            match whole_match {
                TitleMatch::One(n) => return Ok(vec![n]),
                TitleMatch::Many(numbers) => {
                    return Err(Fail::Refuse(Refusal::AmbiguousTitle {
                        text: whole.to_string(),
                        numbers,
                    }));
                }
                TitleMatch::None if splits.is_empty() => return Err(no_title(whole)),
                TitleMatch::None => {}
            }
            let mut out = Vec::new();
            let mut from = *start;
            for &cut in splits.iter().chain(std::iter::once(end)) {
                let part = clean_phrase(p.text(from, cut));
                match match_title(part, items) {
                    TitleMatch::One(n) => out.push(n),
                    TitleMatch::Many(numbers) => {
                        return Err(Fail::Refuse(Refusal::AmbiguousTitle {
                            text: part.to_string(),
                            numbers,
                        }));
                    }
                    TitleMatch::None => return Err(no_title(part)),
                }
                from = cut + 1;
            }
            Ok(out)
        }
    }
}

fn no_title(phrase: &str) -> Fail {
    if norm_words(phrase).len() > MAX_REFUSABLE_TITLE_WORDS {
        Fail::NotUnderstood
    } else {
        Fail::Refuse(Refusal::NoTitleMatch {
            text: phrase.to_string(),
        })
    }
}

/// Merges resolved clauses into actions: same decision and reason share an action,
/// targets sorted and deduplicated, a number approved and rejected is a conflict.
fn finish(groups: Vec<(Decision, Option<String>, Vec<usize>)>) -> ParseOutcome {
    let mut approved = Vec::new();
    let mut rejected = Vec::new();
    for (d, _, nums) in &groups {
        match d {
            Decision::Approve => approved.extend_from_slice(nums),
            Decision::Reject => rejected.extend_from_slice(nums),
        }
    }
    if let Some(&n) = approved.iter().filter(|n| rejected.contains(n)).min() {
        return ParseOutcome::Refuse(Refusal::Conflict { number: n });
    }
    let mut actions: Vec<ParsedAction> = Vec::new();
    let mut seen: Vec<usize> = Vec::new();
    for (decision, reason, nums) in groups {
        let fresh: Vec<usize> = nums.into_iter().filter(|n| !seen.contains(n)).collect();
        seen.extend_from_slice(&fresh);
        if fresh.is_empty() {
            continue;
        }
        if let Some(a) = actions
            .iter_mut()
            .find(|a| a.decision == decision && a.reason == reason)
        {
            a.targets.extend(fresh);
        } else {
            actions.push(ParsedAction {
                decision,
                targets: fresh,
                reason,
            });
        }
    }
    for a in &mut actions {
        a.targets.sort_unstable();
        a.targets.dedup();
    }
    ParseOutcome::Resolve(actions)
}

// ---------------------------------------------------------------------------
// Title matching
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum TitleMatch {
    One(usize),
    Many(Vec<usize>),
    None,
}

fn from_numbers(mut numbers: Vec<usize>) -> TitleMatch {
    numbers.sort_unstable();
    numbers.dedup();
    match numbers.as_slice() {
        [] => TitleMatch::None,
        [n] => TitleMatch::One(*n),
        _ => TitleMatch::Many(numbers),
    }
}

/// Lower-cased alphanumeric words.
fn norm_words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn clean_phrase(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || !c.is_alphanumeric() && c != '&')
}

/// Exact, then whole words, then fuzzy.
fn match_title(phrase: &str, items: &[ActionableItem<'_>]) -> TitleMatch {
    match match_title_strict(phrase, items) {
        TitleMatch::None => match_title_fuzzy(phrase, items),
        m => m,
    }
}

/// Words used for title matching: [`norm_words`] without articles ("the plants",
/// "wash the dishes" vs "Wash dishes"), unless nothing else is left.
fn match_words(s: &str) -> Vec<String> {
    let words = norm_words(s);
    let kept: Vec<String> = words
        .iter()
        .filter(|w| !matches!(w.as_str(), "the" | "a" | "an"))
        .cloned()
        .collect();
    if kept.is_empty() {
        words
    } else {
        kept
    }
}

/// Is `p` a subsequence of `t` (same order, gaps allowed)?
fn is_subsequence(p: &[String], t: &[String]) -> bool {
    let mut rest = t.iter();
    p.iter().all(|w| rest.any(|x| x == w))
}

/// Exact title, then the phrase as contiguous whole words of a title, then (for
/// phrases of two or more words) as words of a title in order ("feed cat" →
/// "Feed the cat").
fn match_title_strict(phrase: &str, items: &[ActionableItem<'_>]) -> TitleMatch {
    let p = match_words(phrase);
    if p.is_empty() {
        return TitleMatch::None;
    }
    let titles: Vec<(usize, Vec<String>)> = items
        .iter()
        .map(|i| (i.number, match_words(i.title)))
        .collect();
    let exact: Vec<usize> = titles
        .iter()
        .filter(|(_, t)| *t == p)
        .map(|(n, _)| *n)
        .collect();
    if !exact.is_empty() {
        return from_numbers(exact);
    }
    if p.iter().map(|w| w.chars().count()).sum::<usize>() < 3 {
        return TitleMatch::None;
    }
    let sub: Vec<usize> = titles
        .iter()
        .filter(|(_, t)| t.windows(p.len()).any(|w| w == p.as_slice()))
        .map(|(n, _)| *n)
        .collect();
    if !sub.is_empty() || p.len() < 2 {
        return from_numbers(sub);
    }
    let ordered: Vec<usize> = titles
        .iter()
        .filter(|(_, t)| is_subsequence(&p, t))
        .map(|(n, _)| *n)
        .collect();
    from_numbers(ordered)
}

/// 1.0 for equal strings, 0.0 for nothing in common: optimal-string-alignment
/// distance (edits plus adjacent transpositions, "dsihes") over the longer length.
fn similarity(a: &str, b: &str) -> f64 {
    let (la, lb) = (a.chars().count(), b.chars().count());
    let len = la.max(lb);
    if len == 0 {
        return 1.0;
    }
    // The distance is at least the length difference: skip hopeless pairs cheaply.
    let floor = 1.0 - la.abs_diff(lb) as f64 / len as f64;
    if floor < FUZZY_MIN - FUZZY_MARGIN {
        return floor;
    }
    let distance = strsim::osa_distance(a, b);
    1.0 - distance as f64 / len as f64
}

fn match_title_fuzzy(phrase: &str, items: &[ActionableItem<'_>]) -> TitleMatch {
    let p = match_words(phrase);
    let chars: usize = p.iter().map(|w| w.chars().count()).sum();
    if p.is_empty() || p.len() > MAX_REFUSABLE_TITLE_WORDS || chars < FUZZY_MIN_CHARS {
        return TitleMatch::None;
    }
    let joined = p.join(" ");
    let scores: Vec<(usize, f64)> = items
        .iter()
        .map(|item| {
            let t = match_words(item.title);
            let whole = similarity(&joined, &t.join(" "));
            let best_window = t
                .windows(p.len())
                .map(|w| similarity(&joined, &w.join(" ")))
                .fold(whole, f64::max);
            (item.number, best_window)
        })
        .collect();
    let best = scores.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    if best < FUZZY_MIN {
        return TitleMatch::None;
    }
    let near: Vec<usize> = scores
        .iter()
        .filter(|(_, s)| *s >= best - FUZZY_MARGIN)
        .map(|(n, _)| *n)
        .collect();
    from_numbers(near)
}

// ---------------------------------------------------------------------------
// Display helpers
// ---------------------------------------------------------------------------

fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX - 1).collect();
        out.push('…');
        out
    }
}

fn join_numbers(numbers: &[usize]) -> String {
    match numbers {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let head: Vec<String> = init.iter().map(usize::to_string).collect();
            format!("{} and {last}", head.join(", "))
        }
    }
}

/// Callback data prefix of workflow buttons (`wf:a:<id>` approves, `wf:r:<id>` rejects).
pub const CALLBACK_PREFIX: &str = "wf:";

/// Parse workflow callback data: `wf:a:12` → (Decide(Approve), 12), `wf:c:12` → (Cancel, 12);
/// `None` for anything else (a client
/// may send any bytes as callback data). Lives here, beside the text parser, so the fuzz
/// targets (`fuzz/`) compile it without the rest of hearth.
pub fn parse_callback_data(data: &str) -> Option<(Tap, i64)> {
    let rest = data.strip_prefix(CALLBACK_PREFIX)?;
    let (d, id) = rest.split_once(':')?;
    let tap = match d {
        "a" => Tap::Decide(Decision::Approve),
        "r" => Tap::Decide(Decision::Reject),
        "c" => Tap::Cancel,
        _ => return None,
    };
    let id: i64 = id.parse().ok().filter(|i| *i > 0)?;
    Some((tap, id))
}

/// What a workflow button tap asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tap {
    /// Approve or reject (`wf:a:` / `wf:r:`).
    Decide(Decision),
    /// Cancel, by the requester (`wf:c:`, a confirmation's Cancel).
    Cancel,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Decision::{Approve, Reject};

    const TITLES: [&str; 25] = [
        "Water plants",
        "Wash dishes",
        "Take out bins",
        "Feed the cat",
        "Hoover lounge",
        "Mow lawn",
        "Clean bathroom",
        "Fold laundry",
        "Walk dog",
        "Buy milk",
        "Tidy garage",
        "Sweep porch",
        "Wipe counters",
        "Change sheets",
        "Empty dishwasher",
        "Sort recycling",
        "Dust shelves",
        "Clean windows",
        "Mop kitchen",
        "Weed garden",
        "Polish shoes",
        "Wash car",
        "Iron shirts",
        "Clean oven",
        "Defrost freezer",
    ];

    /// The viewer's list in a test case.
    #[derive(Debug, Clone, Copy)]
    enum L {
        /// The first n of [`TITLES`].
        N(usize),
        /// Explicit titles, numbered 1..
        T(&'static [&'static str]),
    }

    fn list(l: L) -> Vec<ActionableItem<'static>> {
        let titles: &[&'static str] = match l {
            L::N(n) => &TITLES[..n],
            L::T(t) => t,
        };
        titles
            .iter()
            .enumerate()
            .map(|(i, title)| ActionableItem {
                number: i + 1,
                title,
            })
            .collect()
    }

    /// Expected outcome, written compactly.
    #[derive(Debug, Clone)]
    enum E {
        Na,
        A(&'static [usize]),
        R(&'static [usize]),
        /// Reject with reason.
        Rr(&'static [usize], &'static str),
        /// Approve with reason.
        Ar(&'static [usize], &'static str),
        /// Several actions in order.
        Mix(&'static [(Decision, &'static [usize], Option<&'static str>)]),
        F(Refusal),
    }

    fn action(d: Decision, t: &[usize], r: Option<&str>) -> ParsedAction {
        ParsedAction {
            decision: d,
            targets: t.to_vec(),
            reason: r.map(str::to_string),
        }
    }

    fn expected(e: &E) -> ParseOutcome {
        match e {
            E::Na => ParseOutcome::NotApproval,
            E::A(t) => ParseOutcome::Resolve(vec![action(Approve, t, None)]),
            E::R(t) => ParseOutcome::Resolve(vec![action(Reject, t, None)]),
            E::Rr(t, r) => ParseOutcome::Resolve(vec![action(Reject, t, Some(r))]),
            E::Ar(t, r) => ParseOutcome::Resolve(vec![action(Approve, t, Some(r))]),
            E::Mix(parts) => {
                ParseOutcome::Resolve(parts.iter().map(|(d, t, r)| action(*d, t, *r)).collect())
            }
            E::F(r) => ParseOutcome::Refuse(r.clone()),
        }
    }

    fn oor(number: usize, count: usize) -> E {
        E::F(Refusal::OutOfRange { number, count })
    }

    fn no_title(text: &str) -> E {
        E::F(Refusal::NoTitleMatch { text: text.into() })
    }

    const CHORES: L = L::T(&["Water plants", "Wash dishes", "Feed cat"]);
    const DISHES2: L = L::T(&["Wash dishes", "Dry dishes"]);
    const SOFA: L = L::T(&["Buy the new sofa", "Wash dishes"]);
    const BINS: L = L::T(&["Water plants", "Delete 'Bins'"]);

    /// (input, list, addressed, expected)
    fn cases() -> Vec<(String, L, bool, E)> {
        use L::{N, T};
        let nothing = || E::F(Refusal::NothingActionable);
        let which = |count| E::F(Refusal::WhichOne { count });
        let raw: Vec<(&str, L, bool, E)> = vec![
            // --- the headline scenarios ---
            ("approve both", N(2), false, E::A(&[1, 2])),
            (
                "approve both",
                N(3),
                false,
                E::F(Refusal::BothNeedsTwo { count: 3 }),
            ),
            (
                "approve both",
                N(1),
                true,
                E::F(Refusal::BothNeedsTwo { count: 1 }),
            ),
            ("approve both", N(0), true, nothing()),
            ("approve 1 and 3", N(3), false, E::A(&[1, 3])),
            ("approve 1 and 3", N(2), false, oor(3, 2)),
            ("reject all", N(3), false, E::R(&[1, 2, 3])),
            ("reject all", N(0), false, nothing()),
            ("approve 7", N(3), false, oor(7, 3)),
            ("approve 0", N(3), false, oor(0, 3)),
            ("approve 1", N(0), false, nothing()),
            ("approve", N(0), false, nothing()),
            // --- verbs ---
            ("approve", N(1), false, E::A(&[1])),
            ("Approve!", N(1), false, E::A(&[1])),
            ("APPROVED.", N(1), false, E::A(&[1])),
            ("approve", N(3), false, which(3)),
            ("confirm 2", N(2), false, E::A(&[2])),
            ("verified 1", N(2), false, E::A(&[1])),
            ("accept all", N(2), false, E::A(&[1, 2])),
            ("deny 1", N(2), false, E::R(&[1])),
            ("declined 2", N(2), false, E::R(&[2])),
            ("Approve 1 AND 3", N(3), false, E::A(&[1, 3])),
            // --- weak verbs and `addressed` ---
            ("yes", N(1), true, E::A(&[1])),
            ("yes", N(1), false, E::Na),
            ("ok 👍", N(1), true, E::A(&[1])),
            ("ok 👍", N(1), false, E::Na),
            ("ok", N(1), false, E::Na),
            ("👍", N(1), true, E::A(&[1])),
            ("👍🏽", N(1), true, E::A(&[1])),
            ("👎", N(1), true, E::R(&[1])),
            ("yes", N(3), true, which(3)),
            ("ok", N(0), true, E::Na),
            ("yes 1", N(0), true, nothing()),
            ("yes 1", N(2), false, E::A(&[1])),
            ("ok both", N(2), false, E::A(&[1, 2])),
            ("no 2", N(2), false, E::R(&[2])),
            ("yes to 1", N(2), false, E::A(&[1])),
            ("yes to all", N(3), false, E::A(&[1, 2, 3])),
            ("ok all", N(3), false, E::Na),
            ("ok all", N(3), true, E::A(&[1, 2, 3])),
            ("ok 7", N(3), false, E::Na),
            ("ok 7", N(3), true, oor(7, 3)),
            ("yes both", N(3), false, E::Na),
            ("yes, approve 1", N(2), false, E::A(&[1])),
            ("no, approve 1", N(2), true, E::Na),
            ("ok thanks", N(1), true, E::Na),
            ("no thanks", N(1), true, E::Na),
            ("yes please", N(1), true, E::Na),
            ("no one", N(1), false, E::Na),
            ("no 1 is home", N(1), false, E::Na),
            // --- target forms ---
            ("approve #2", N(3), false, E::A(&[2])),
            ("approve 1, 3", N(3), false, E::A(&[1, 3])),
            ("approve 1,3", N(3), false, E::A(&[1, 3])),
            ("approve 1 & 3", N(3), false, E::A(&[1, 3])),
            ("approve 1, 2, and 4", N(4), false, E::A(&[1, 2, 4])),
            ("approve 1 2 3", N(3), false, E::A(&[1, 2, 3])),
            ("approve 1-3", N(4), false, E::A(&[1, 2, 3])),
            ("approve 1–3", N(3), false, E::A(&[1, 2, 3])),
            ("approve 1 to 3", N(5), false, E::A(&[1, 2, 3])),
            ("approve 2-5", N(3), false, oor(5, 3)),
            ("approve 3-1", N(3), false, E::Na),
            ("approve 99999999999", N(3), false, E::Na),
            ("approve number 2", N(3), false, E::A(&[2])),
            ("approve request 1", N(3), false, E::A(&[1])),
            ("approve requests 1 and 2", N(3), false, E::A(&[1, 2])),
            ("approve them all", N(3), false, E::A(&[1, 2, 3])),
            ("approve all of them", N(3), false, E::A(&[1, 2, 3])),
            ("approve everything", N(2), false, E::A(&[1, 2])),
            ("approve them both", N(2), false, E::A(&[1, 2])),
            ("approve it", N(1), false, E::A(&[1])),
            ("approve it", N(2), false, which(2)),
            ("approve the request", N(1), false, E::A(&[1])),
            ("approve the first one", N(2), false, E::A(&[1])),
            ("approve the last one", N(3), false, E::A(&[3])),
            ("approve 2nd", N(3), false, E::A(&[2])),
            ("approve one and three", N(3), false, E::A(&[1, 3])),
            ("approve 2, approve 2", N(2), false, E::A(&[2])),
            // --- titles ---
            ("approve dishes", CHORES, false, E::A(&[2])),
            ("approve the dishes", CHORES, false, E::A(&[2])),
            ("approve WATER PLANTS", CHORES, false, E::A(&[1])),
            ("approve dishs", CHORES, false, E::A(&[2])),
            (
                "approve Dishes",
                DISHES2,
                false,
                E::F(Refusal::AmbiguousTitle {
                    text: "Dishes".into(),
                    numbers: vec![1, 2],
                }),
            ),
            ("approve sofa", CHORES, true, no_title("sofa")),
            ("approve sofa", CHORES, false, E::Na),
            ("accept the challenge", CHORES, false, E::Na),
            ("Confirmed dentist appointment", CHORES, false, E::Na),
            ("Confirmed dentist appointment", CHORES, true, E::Na),
            (
                "Confirmed dentist appointment",
                T(&["Book dentist appointment"]),
                false,
                E::Na,
            ),
            (
                "confirmed dentist appointment",
                T(&["Book dentist appointment"]),
                true,
                E::A(&[1]),
            ),
            ("approve wash the dishes", CHORES, false, E::A(&[2])),
            ("approve feed cat", N(4), false, E::A(&[4])),
            (
                "approve the dishes and the plants",
                CHORES,
                false,
                E::A(&[1, 2]),
            ),
            ("approve dishes & feed cat", CHORES, false, E::A(&[2, 3])),
            ("approve dishes, plants", CHORES, true, E::Na),
            ("approve delete bins", BINS, false, E::A(&[2])),
            ("approve 'Delete Bins'", BINS, false, E::A(&[2])),
            (
                "approve wash dishes and water plants",
                CHORES,
                false,
                E::A(&[1, 2]),
            ),
            (
                "approve salt and pepper",
                T(&["Buy salt and pepper", "Wash dishes"]),
                false,
                E::A(&[1]),
            ),
            (
                "reject dishes, still greasy",
                CHORES,
                false,
                E::Rr(&[2], "still greasy"),
            ),
            (
                "approve dishes but reject plants",
                CHORES,
                false,
                E::Mix(&[(Approve, &[2], None), (Reject, &[1], None)]),
            ),
            ("yes dishes", CHORES, true, E::Na),
            ("approve dishes", N(0), true, E::Na),
            ("approve dishes later", CHORES, true, E::Na),
            ("approve whatever you think is best", CHORES, true, E::Na),
            ("approve the new sofa", SOFA, false, E::A(&[1])),
            // --- mixed decisions and reasons ---
            (
                "approve 1, reject 2",
                N(2),
                false,
                E::Mix(&[(Approve, &[1], None), (Reject, &[2], None)]),
            ),
            (
                "approve 1 reject 2",
                N(2),
                false,
                E::Mix(&[(Approve, &[1], None), (Reject, &[2], None)]),
            ),
            (
                "approve 1; reject 2.",
                N(2),
                false,
                E::Mix(&[(Approve, &[1], None), (Reject, &[2], None)]),
            ),
            (
                "approve 1 and 3 but reject 2",
                N(3),
                false,
                E::Mix(&[(Approve, &[1, 3], None), (Reject, &[2], None)]),
            ),
            (
                "reject 2 because it's still dirty, approve 1",
                N(2),
                false,
                E::Mix(&[
                    (Reject, &[2], Some("it's still dirty")),
                    (Approve, &[1], None),
                ]),
            ),
            (
                "yes to 1, no to 2",
                N(2),
                false,
                E::Mix(&[(Approve, &[1], None), (Reject, &[2], None)]),
            ),
            (
                "reject 1 since it's not done, yes 2",
                N(2),
                false,
                E::Mix(&[(Reject, &[1], Some("it's not done")), (Approve, &[2], None)]),
            ),
            (
                "reject 1 because smelly, reject 2 because wet",
                N(2),
                false,
                E::Mix(&[(Reject, &[1], Some("smelly")), (Reject, &[2], Some("wet"))]),
            ),
            (
                "reject 2, not clean yet",
                N(2),
                false,
                E::Rr(&[2], "not clean yet"),
            ),
            (
                "reject 2 because the floor is wet",
                N(2),
                false,
                E::Rr(&[2], "the floor is wet"),
            ),
            (
                "reject 1, not done properly",
                N(1),
                false,
                E::Rr(&[1], "not done properly"),
            ),
            (
                "reject 2 - still dirty",
                N(2),
                false,
                E::Rr(&[2], "still dirty"),
            ),
            (
                "reject 2: still dirty!",
                N(2),
                false,
                E::Rr(&[2], "still dirty"),
            ),
            (
                "reject because it's broken",
                N(1),
                false,
                E::Rr(&[1], "it's broken"),
            ),
            ("reject, not clean", N(1), false, E::Rr(&[1], "not clean")),
            ("reject 2, thanks", N(2), false, E::R(&[2])),
            ("no 2, it's fine", N(2), true, E::Na),
            (
                "no 2 because it's dirty",
                N(2),
                false,
                E::Rr(&[2], "it's dirty"),
            ),
            (
                "reject 2, no one did it",
                N(2),
                false,
                E::Rr(&[2], "no one did it"),
            ),
            (
                "reject all because no one did anything",
                N(2),
                false,
                E::Rr(&[1, 2], "no one did anything"),
            ),
            ("reject 2, no wait", N(2), true, E::Na),
            ("no to all", N(2), false, E::R(&[1, 2])),
            (
                "approve 1 because it looks great",
                N(1),
                false,
                E::Ar(&[1], "it looks great"),
            ),
            (
                "approve 1 because the rest can wait",
                N(1),
                false,
                E::Ar(&[1], "the rest can wait"),
            ),
            ("approve 1 as soon as possible", N(1), false, E::Na),
            (
                "approve 1, reject 1",
                N(2),
                false,
                E::F(Refusal::Conflict { number: 1 }),
            ),
            (
                "approve all, reject 2",
                N(3),
                false,
                E::F(Refusal::Conflict { number: 2 }),
            ),
            ("approve 1, 7", N(3), false, oor(7, 3)),
            ("approve 1, reject 9", N(3), false, oor(9, 3)),
            // --- courtesy, mentions, addressing ---
            ("@hearth_bot approve 1", N(2), true, E::A(&[1])),
            ("@hearth_bot, yes", N(1), true, E::A(&[1])),
            ("@alice approve 1", N(2), false, E::Na),
            ("hearth, approve both", N(2), false, E::A(&[1, 2])),
            ("Hearth: yes", N(1), false, E::A(&[1])),
            (
                "bot, reject 1 because wrong",
                N(1),
                false,
                E::Rr(&[1], "wrong"),
            ),
            ("please approve 2", N(2), false, E::A(&[2])),
            ("approve 2 please", N(2), false, E::A(&[2])),
            ("approve 1, thanks!", N(1), false, E::A(&[1])),
            ("approve 1 as well", N(1), false, E::A(&[1])),
            ("approve 1 👍", N(1), false, E::A(&[1])),
            // --- must be NotApproval ---
            ("I approve of the new sofa", N(0), false, E::Na),
            ("I approve of the new sofa", SOFA, true, E::Na),
            ("approve of the new sofa", SOFA, true, E::Na),
            ("yes, but later", N(1), true, E::Na),
            ("yes but not now", N(1), true, E::Na),
            ("ok, I'll check tomorrow", N(1), true, E::Na),
            ("no idea", N(1), true, E::Na),
            ("no, wait", N(1), true, E::Na),
            ("no, not clean", N(1), true, E::Na),
            ("approve? not sure", N(1), true, E::Na),
            ("should I approve 1?", N(1), true, E::Na),
            ("don't approve 2", N(2), true, E::Na),
            ("do not approve 2", N(2), true, E::Na),
            ("not yet", N(1), true, E::Na),
            ("ok so what's for dinner", N(1), true, E::Na),
            ("yes please remind me tomorrow", N(1), true, E::Na),
            ("who approved 1?", N(1), true, E::Na),
            ("", N(1), true, E::Na),
            ("   \n\t ", N(1), true, E::Na),
            ("日本語のテキスト 🙂 ∑ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", N(2), true, E::Na),
            ("approve all but 2", N(3), true, E::Na),
            ("approve all except 2", N(3), true, E::Na),
            ("reject all, not 2", N(3), true, E::Na),
            ("reject all, except the dishes", N(3), true, E::Na),
            ("reject 1, wait", N(1), true, E::Na),
            ("reject 1, actually no", N(1), true, E::Na),
            ("reject 2, ok", N(2), true, E::Na),
            ("reject 2, approve 1 later", N(2), true, E::Na),
            ("approve 1 later", N(1), true, E::Na),
            ("approve 1 tomorrow", N(1), true, E::Na),
            ("approve 1 after lunch", N(1), true, E::Na),
            ("approve 1 if it's clean", N(1), true, E::Na),
            ("maybe approve 1", N(1), true, E::Na),
            ("approve 1...", N(1), true, E::Na),
            ("approve 1 🙂", N(1), true, E::Na),
            ("approve 1, great job", N(1), true, E::Na),
            ("approve 1/2", N(2), true, E::Na),
            ("approve 1 but not 2", N(2), true, E::Na),
            ("approve, reject 2", N(2), true, E::Na),
        ];
        let mut v: Vec<(String, L, bool, E)> = raw
            .into_iter()
            .map(|(s, l, a, e)| (s.to_string(), l, a, e))
            .collect();
        v.push(("approve 1 ".repeat(500), N(3), true, E::Na));
        v.push(("😀".repeat(5000), N(3), true, E::Na));
        v.push((
            format!("reject 2 because {}", "x".repeat(600)),
            N(3),
            true,
            E::Na,
        ));
        v
    }

    #[test]
    fn phrasing_table() {
        let cases = cases();
        assert!(cases.len() >= 70, "table has only {} rows", cases.len());
        let mut failures = Vec::new();
        for (input, l, addressed, e) in &cases {
            let items = list(*l);
            let got = parse_reply(input, &items, *addressed);
            let want = expected(e);
            if got != want {
                let shown: String = input.chars().take(60).collect();
                failures.push(format!(
                    "{shown:?} ({l:?}, addressed={addressed}):\n    want {want:?}\n    got  {got:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn commands() {
        use L::N;
        let c = |d, args: &str, l: L| parse_command(d, args, &list(l));
        let unclear = |t: &str| ParseOutcome::Refuse(Refusal::UnclearTargets { text: t.into() });
        assert_eq!(c(Approve, "", N(1)), expected(&E::A(&[1])));
        assert_eq!(c(Reject, "  ", N(1)), expected(&E::R(&[1])));
        assert_eq!(
            c(Approve, "", N(3)),
            expected(&E::F(Refusal::WhichOne { count: 3 }))
        );
        assert_eq!(
            c(Approve, "", N(0)),
            expected(&E::F(Refusal::NothingActionable))
        );
        assert_eq!(
            c(Approve, "1", N(0)),
            expected(&E::F(Refusal::NothingActionable))
        );
        assert_eq!(c(Approve, "1 3", N(3)), expected(&E::A(&[1, 3])));
        assert_eq!(c(Approve, "#2, #3", N(3)), expected(&E::A(&[2, 3])));
        assert_eq!(c(Approve, "1-3", N(3)), expected(&E::A(&[1, 2, 3])));
        assert_eq!(c(Approve, "both", N(2)), expected(&E::A(&[1, 2])));
        assert_eq!(
            c(Approve, "all", N(20)),
            ParseOutcome::Resolve(vec![action(Approve, &(1..=20).collect::<Vec<_>>(), None)])
        );
        assert_eq!(c(Approve, "7", N(3)), expected(&oor(7, 3)));
        assert_eq!(c(Approve, "it", N(1)), expected(&E::A(&[1])));
        assert_eq!(c(Approve, "dishes", CHORES), expected(&E::A(&[2])));
        assert_eq!(c(Approve, "dishes thanks", CHORES), expected(&E::A(&[2])));
        assert_eq!(
            c(Approve, "xyz abc", CHORES),
            expected(&no_title("xyz abc"))
        );
        assert_eq!(
            c(Reject, "2 not clean", N(2)),
            expected(&E::Rr(&[2], "not clean"))
        );
        assert_eq!(
            c(Reject, "2, not clean", N(2)),
            expected(&E::Rr(&[2], "not clean"))
        );
        assert_eq!(
            c(Reject, "2 because wet", N(2)),
            expected(&E::Rr(&[2], "wet"))
        );
        assert_eq!(
            c(Reject, "all because broken", N(2)),
            expected(&E::Rr(&[1, 2], "broken"))
        );
        assert_eq!(
            c(Reject, "dishes still greasy", CHORES),
            expected(&E::Rr(&[2], "still greasy"))
        );
        assert_eq!(
            c(Approve, "1 because clean", N(1)),
            expected(&E::Ar(&[1], "clean"))
        );
        assert_eq!(c(Approve, "1 later", N(3)), unclear("1 later"));
        assert_eq!(c(Approve, "?", N(3)), unclear("?"));
        assert_eq!(c(Approve, "1, reject 2", N(3)), unclear("1, reject 2"));
        assert_eq!(c(Reject, "1, approve 2", N(3)), unclear("1, approve 2"));
        assert!(matches!(
            c(Approve, &"9 ".repeat(400), N(3)),
            ParseOutcome::Refuse(Refusal::UnclearTargets { .. })
        ));
    }

    #[test]
    fn refusal_texts() {
        let t = |r: Refusal| r.to_string();
        assert_eq!(
            t(Refusal::NothingActionable),
            "You have nothing to approve or reject right now."
        );
        assert_eq!(
            t(Refusal::OutOfRange {
                number: 7,
                count: 3
            }),
            "There is no request 7: you have 3 (1–3)."
        );
        assert_eq!(
            t(Refusal::OutOfRange {
                number: 2,
                count: 1
            }),
            "There is no request 2: you only have request 1."
        );
        assert_eq!(
            t(Refusal::BothNeedsTwo { count: 3 }),
            "'both' needs exactly two requests; you have 3. Say which numbers."
        );
        assert_eq!(
            t(Refusal::NoTitleMatch { text: "xyz".into() }),
            "No request matches 'xyz'."
        );
        assert_eq!(
            t(Refusal::AmbiguousTitle {
                text: "dishes".into(),
                numbers: vec![1, 3]
            }),
            "'dishes' matches 1 and 3: say which number."
        );
        assert_eq!(
            t(Refusal::AmbiguousTitle {
                text: "wash".into(),
                numbers: vec![1, 2, 5]
            }),
            "'wash' matches 1, 2 and 5: say which number."
        );
        assert_eq!(
            t(Refusal::WhichOne { count: 3 }),
            "You have 3 requests: which? For example 'approve 1' or 'approve all'."
        );
        assert_eq!(
            t(Refusal::Conflict { number: 2 }),
            "You both approved and rejected request 2: say which you meant."
        );
        assert!(
            t(Refusal::NoTitleMatch {
                text: "y".repeat(300)
            })
            .chars()
            .count()
                < 80
        );
    }

    /// Invariants every outcome must satisfy.
    fn check_outcome(
        out: &ParseOutcome,
        items: &[ActionableItem<'_>],
    ) -> Result<(), TestCaseError> {
        if let ParseOutcome::Resolve(actions) = out {
            prop_assert!(!actions.is_empty());
            let mut approved = Vec::new();
            let mut rejected = Vec::new();
            for a in actions {
                prop_assert!(!a.targets.is_empty());
                prop_assert!(
                    a.targets.windows(2).all(|w| w[0] < w[1]),
                    "not sorted/deduped"
                );
                for &n in &a.targets {
                    prop_assert!(items.iter().any(|i| i.number == n), "invalid target {}", n);
                }
                match a.decision {
                    Approve => approved.extend_from_slice(&a.targets),
                    Reject => rejected.extend_from_slice(&a.targets),
                }
            }
            prop_assert!(
                !approved.iter().any(|n| rejected.contains(n)),
                "conflict resolved"
            );
        }
        Ok(())
    }

    const VOCAB: &[&str] = &[
        "approve",
        "reject",
        "yes",
        "ok",
        "no",
        "👍",
        "👎",
        "all",
        "both",
        "it",
        "them",
        "and",
        "but",
        "because",
        "since",
        "as",
        "not",
        "later",
        "1",
        "2",
        "3",
        "7",
        "#2",
        "1-3",
        "0",
        ",",
        ".",
        "!",
        "?",
        ":",
        "-",
        "&",
        "to",
        "the",
        "first",
        "last",
        "one",
        "dishes",
        "plants",
        "wash",
        "please",
        "thanks",
        "@hearth_bot",
        "hearth,",
        "wait",
        "except",
        "of",
        "well",
        "number",
        "request",
        "x",
        "🙂",
        "…",
        "deny",
        "confirmed",
        "everything",
        "then",
        "99999999",
    ];

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,600}", n in 0usize..25, addressed: bool) {
            let items = list(L::N(n));
            check_outcome(&parse_reply(&s, &items, addressed), &items)?;
            for d in [Approve, Reject] {
                let out = parse_command(d, &s, &items);
                prop_assert_ne!(&out, &ParseOutcome::NotApproval);
                check_outcome(&out, &items)?;
            }
        }

        #[test]
        fn any_string_never_panics(s in any::<String>(), n in 0usize..25, addressed: bool) {
            let items = list(L::N(n));
            check_outcome(&parse_reply(&s, &items, addressed), &items)?;
            check_outcome(&parse_command(Reject, &s, &items), &items)?;
        }

        #[test]
        fn long_unicode_is_not_approval(s in "\\PC{501,6000}", n in 0usize..25, addressed: bool) {
            let items = list(L::N(n));
            prop_assert_eq!(parse_reply(&s, &items, addressed), ParseOutcome::NotApproval);
        }

        #[test]
        fn grammar_soup_keeps_invariants(
            words in prop::collection::vec(prop::sample::select(VOCAB), 0..24),
            n in 0usize..25,
            addressed: bool,
        ) {
            let s = words.join(" ");
            let items = list(L::N(n));
            check_outcome(&parse_reply(&s, &items, addressed), &items)?;
            check_outcome(&parse_command(Approve, &s, &items), &items)?;
        }

        #[test]
        fn approve_number(k in 0usize..40, n in 1usize..25) {
            let items = list(L::N(n));
            let out = parse_reply(&format!("approve {k}"), &items, false);
            if (1..=n).contains(&k) {
                prop_assert_eq!(out, ParseOutcome::Resolve(vec![action(Approve, &[k], None)]));
            } else {
                prop_assert_eq!(out, ParseOutcome::Refuse(Refusal::OutOfRange { number: k, count: n }));
            }
        }
    }
}
