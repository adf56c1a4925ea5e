//! Small shared pieces of the phrase parsers: tokens, numbers, ordinals,
//! weekday names, times of day and duration amounts.

use chrono::{NaiveTime, Weekday};

use super::error::{clip, Field, ScheduleError};

/// A lowercase word of the input with its byte span in the original text.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub text: String,
    pub start: usize,
}

/// Split on whitespace and commas, lowercase, drop trailing sentence
/// punctuation (`.`, `!`, `?`, `;`) and turn `&` into `and`.
pub(crate) fn tokenize(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let push = |from: usize, to: usize, out: &mut Vec<Token>| {
        let raw = &s[from..to];
        let mut text = raw.to_lowercase();
        while text.len() > 1 && text.ends_with(['.', '!', '?', ';']) {
            text.pop();
        }
        if text == "&" {
            text = "and".to_string();
        }
        out.push(Token { text, start: from });
    };
    for (i, c) in s.char_indices() {
        if c.is_whitespace() || c == ',' {
            if let Some(b) = start.take() {
                push(b, i, &mut out);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(b) = start {
        push(b, s.len(), &mut out);
    }
    out
}

/// Lowercase words of `s` (see [`tokenize`]).
pub(crate) fn words(s: &str) -> Vec<String> {
    tokenize(s).into_iter().map(|t| t.text).collect()
}

const UNITS: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [(&str, u64); 8] = [
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];

/// A count written as digits (`3`) or words (`three`, `twenty-five`, `a`, `an`).
pub(crate) fn count(tok: &str) -> Option<u64> {
    if !tok.is_empty() && tok.bytes().all(|b| b.is_ascii_digit()) {
        return tok.parse().ok();
    }
    number_word(tok)
}

fn number_word(tok: &str) -> Option<u64> {
    if tok == "a" || tok == "an" {
        return Some(1);
    }
    if let Some(i) = UNITS.iter().position(|w| *w == tok) {
        return Some(i as u64);
    }
    if let Some((_, v)) = TENS.iter().find(|(w, _)| *w == tok) {
        return Some(*v);
    }
    let (tens, unit) = tok.split_once('-')?;
    let (_, t) = TENS.iter().find(|(w, _)| *w == tens)?;
    let u = UNITS[1..10].iter().position(|w| *w == unit)? as u64 + 1;
    Some(t + u)
}

const ORDINAL_UNITS: [&str; 20] = [
    "zeroth",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
];

/// An ordinal written as `1st`, `22nd`, `3rd`, `15th` or in words up to
/// `thirty-first`. The suffix is not checked against the number (`2th` is 2).
pub(crate) fn ordinal(tok: &str) -> Option<u64> {
    let digits = tok.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
        let suffix = &tok[digits.len()..];
        return if ["st", "nd", "rd", "th"].contains(&suffix) {
            digits.parse().ok()
        } else {
            None
        };
    }
    if let Some(i) = ORDINAL_UNITS.iter().position(|w| *w == tok) {
        return (i > 0).then_some(i as u64);
    }
    match tok {
        "twentieth" => return Some(20),
        "thirtieth" => return Some(30),
        _ => {}
    }
    let (tens, unit) = tok.split_once('-')?;
    let t = match tens {
        "twenty" => 20,
        "thirty" => 30,
        _ => return None,
    };
    let u = ORDINAL_UNITS[1..10].iter().position(|w| *w == unit)? as u64 + 1;
    Some(t + u)
}

/// A weekday name or abbreviation; the flag says whether it was plural
/// (`mondays`), which reads as "every Monday" on its own.
pub(crate) fn weekday(tok: &str) -> Option<(Weekday, bool)> {
    let (day, plural) = match tok {
        "mon" | "monday" => (Weekday::Mon, false),
        "tue" | "tues" | "tuesday" => (Weekday::Tue, false),
        "wed" | "weds" | "wednesday" => (Weekday::Wed, false),
        "thu" | "thur" | "thurs" | "thursday" => (Weekday::Thu, false),
        "fri" | "friday" => (Weekday::Fri, false),
        "sat" | "saturday" => (Weekday::Sat, false),
        "sun" | "sunday" => (Weekday::Sun, false),
        "mondays" => (Weekday::Mon, true),
        "tuesdays" => (Weekday::Tue, true),
        "wednesdays" => (Weekday::Wed, true),
        "thursdays" => (Weekday::Thu, true),
        "fridays" => (Weekday::Fri, true),
        "saturdays" => (Weekday::Sat, true),
        "sundays" => (Weekday::Sun, true),
        _ => return None,
    };
    Some((day, plural))
}

fn meridiem(tok: &str) -> Option<bool> {
    match tok {
        "am" | "a.m" | "a.m." => Some(false),
        "pm" | "p.m" | "p.m." => Some(true),
        _ => None,
    }
}

/// Read a time of day at the start of `toks`; returns it and how many tokens it
/// used. Forms: `19:00`, `7:30`, `19.30`, `7pm`, `7 pm`, `7:30pm`, `7:30 p.m.`,
/// `noon`, `midday`, `midnight`, and — only with `bare_hour` (after "at") — a
/// plain hour `8` meaning 08:00 (also `8 o'clock`).
///
/// `Ok(None)`: not a time at all. `Err(reason)`: looks like a time but is out
/// of range (`25:00`, `13pm`, `7:75`).
pub(crate) fn time_prefix(
    toks: &[&str],
    bare_hour: bool,
) -> Result<Option<(NaiveTime, usize)>, String> {
    let Some(&first) = toks.first() else {
        return Ok(None);
    };
    match first {
        "noon" | "midday" => return Ok(Some((NaiveTime::MIN + chrono::TimeDelta::hours(12), 1))),
        "midnight" => return Ok(Some((NaiveTime::MIN, 1))),
        _ => {}
    }
    let mut used = 1;
    let (num, pm) = if let Some(n) = first.strip_suffix("am").or(first.strip_suffix("a.m")) {
        (n, Some(false))
    } else if let Some(n) = first.strip_suffix("pm").or(first.strip_suffix("p.m")) {
        (n, Some(true))
    } else if let Some(pm) = toks.get(1).and_then(|t| meridiem(t)) {
        used = 2;
        (first, Some(pm))
    } else {
        (first, None)
    };
    if num.is_empty()
        || !num
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b':' || b == b'.')
    {
        return Ok(None);
    }
    if !num.as_bytes()[0].is_ascii_digit() {
        return Ok(None);
    }
    let sep = num.find([':', '.']);
    let oclock = pm.is_none() && sep.is_none() && toks.get(1) == Some(&"o'clock");
    if sep.is_none() && pm.is_none() && !bare_hour && !oclock {
        return Ok(None);
    }
    if oclock {
        used = 2;
    }
    let bad = || {
        format!(
            "'{}' is not a valid time of day",
            clip(&toks[..used].join(" "))
        )
    };
    let (h, m) = match sep {
        None => (num, "00"),
        Some(i) => (&num[..i], &num[i + 1..]),
    };
    if h.is_empty()
        || h.len() > 2
        || m.len() != 2
        || !h.bytes().all(|b| b.is_ascii_digit())
        || !m.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let (mut h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if let Some(pm) = pm {
        if !(1..=12).contains(&h) {
            return Err(bad());
        }
        h %= 12;
        if pm {
            h += 12;
        }
    }
    let t = NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)?;
    Ok(Some((t, used)))
}

/// Parse a time of day on its own: `19:00`, `7pm`, `7:30 pm`, `8` (08:00),
/// `noon`, `midnight`. The result is local wall-clock time (no zone).
///
/// # Errors
/// [`ScheduleError::Invalid`] for an out-of-range time (`time: '25:00' is not a
/// valid time of day`), [`ScheduleError::Unparsed`] for anything else.
pub fn parse_time_of_day(s: &str) -> Result<NaiveTime, ScheduleError> {
    let w = words(s);
    let toks: Vec<&str> = w.iter().map(String::as_str).collect();
    let toks = match toks.first() {
        Some(&"at") => &toks[1..],
        _ => &toks[..],
    };
    match time_prefix(toks, true) {
        Ok(Some((t, used))) if used == toks.len() => Ok(t),
        Ok(_) => Err(ScheduleError::unparsed(Field::Time, s)),
        Err(reason) => Err(ScheduleError::invalid(Field::Time, reason)),
    }
}

/// Find a time of day at the start (`at 18:30 every day`, `7pm daily`) or the
/// end (`daily at 8`, `every monday 19:00`) of `toks`. Returns the time and the
/// remaining tokens. A bare hour is accepted only after `at`.
pub(crate) fn split_time<'a, 'b>(
    toks: &'a [&'b str],
) -> Result<(Option<NaiveTime>, &'a [&'b str]), String> {
    // Leading.
    let (skip, bare) = if toks.first() == Some(&"at") {
        (1, true)
    } else {
        (0, false)
    };
    if let Some((t, used)) = time_prefix(&toks[skip..], bare)? {
        return Ok((Some(t), &toks[skip + used..]));
    }
    // Trailing: try the shortest tail first so "19:00" is not swallowed by
    // something longer.
    for start in (0..toks.len()).rev() {
        let (from, bare) = if start > 0 && toks[start - 1] == "at" {
            (start - 1, true)
        } else {
            (start, false)
        };
        match time_prefix(&toks[start..], bare) {
            Ok(Some((t, used))) if start + used == toks.len() => {
                return Ok((Some(t), &toks[..from]));
            }
            Ok(_) => {}
            Err(reason) => {
                // Only an out-of-range time that would end the phrase counts.
                let tail = match toks.get(start + 1) {
                    Some(&n) if meridiem(n).is_some() || n == "o'clock" => 2,
                    _ => 1,
                };
                if start + tail == toks.len() {
                    return Err(reason);
                }
            }
        }
    }
    Ok((None, toks))
}

/// Time unit of a duration amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    fn from_word(w: &str) -> Option<Unit> {
        Some(match w {
            "s" | "sec" | "secs" | "second" | "seconds" => Unit::Second,
            "m" | "min" | "mins" | "minute" | "minutes" => Unit::Minute,
            "h" | "hr" | "hrs" | "hour" | "hours" => Unit::Hour,
            "d" | "day" | "days" => Unit::Day,
            "w" | "wk" | "wks" | "week" | "weeks" => Unit::Week,
            "mo" | "month" | "months" => Unit::Month,
            "y" | "yr" | "yrs" | "year" | "years" => Unit::Year,
            _ => return None,
        })
    }

    /// Length in seconds; months and years are nominal (30 d, 365 d).
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
            Unit::Week => 604_800,
            Unit::Month => 30 * 86_400,
            Unit::Year => 365 * 86_400,
        }
    }
}

/// A non-negative decimal amount `whole + num/den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Amount {
    pub whole: u64,
    pub num: u64,
    pub den: u64,
}

impl Amount {
    fn int(whole: u64) -> Amount {
        Amount {
            whole,
            num: 0,
            den: 1,
        }
    }

    pub fn is_integer(&self) -> bool {
        self.num == 0
    }

    /// `self × unit` in whole seconds (fractions of a second dropped); `None` on overflow.
    pub fn times(&self, unit_secs: u64) -> Option<u64> {
        let whole = self.whole.checked_mul(unit_secs)?;
        let frac = self.num.checked_mul(unit_secs)? / self.den;
        whole.checked_add(frac)
    }
}

enum Lex<'a> {
    Num(Amount),
    Word(&'a str),
}

fn lex(s: &str) -> Option<Vec<Lex<'_>>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() || c == b',' || c == b'+' {
            i += 1;
        } else if c.is_ascii_digit() {
            let st = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let whole: u64 = s[st..i].parse().ok()?;
            let mut amount = Amount::int(whole);
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                let fs = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let digits = &s[fs..i.min(fs + 9)];
                amount.num = digits.parse().ok()?;
                amount.den = 10u64.pow(digits.len() as u32);
            }
            out.push(Lex::Num(amount));
        } else if c.is_ascii_alphabetic() {
            let st = i;
            while i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'-') {
                i += 1;
            }
            out.push(Lex::Word(&s[st..i]));
        } else {
            return None;
        }
    }
    Some(out)
}

/// Parse a sum of amounts with units: `1h30m`, `25 minutes`, `2 hours and 15
/// minutes`, `1.5h`, `two weeks`, `half an hour`, `an hour`; a leading bare
/// unit means one of it (`hour`). `s` must already be lowercase.
pub(crate) fn duration_parts(s: &str) -> Option<Vec<(Amount, Unit)>> {
    let lexed = lex(s)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < lexed.len() {
        if !out.is_empty() {
            if let Lex::Word("and") = lexed[i] {
                i += 1;
            }
        }
        let amount = match lexed.get(i)? {
            Lex::Num(a) => {
                i += 1;
                *a
            }
            Lex::Word("half") => {
                i += 1;
                if let Some(Lex::Word("a" | "an")) = lexed.get(i) {
                    i += 1;
                }
                Amount {
                    whole: 0,
                    num: 1,
                    den: 2,
                }
            }
            Lex::Word(w) => match number_word(w) {
                Some(n) => {
                    i += 1;
                    Amount::int(n)
                }
                None if out.is_empty() => Amount::int(1),
                None => return None,
            },
        };
        let Lex::Word(w) = lexed.get(i)? else {
            return None;
        };
        out.push((amount, Unit::from_word(w)?));
        i += 1;
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn time_of_day_table() {
        let ok = [
            ("19:00", t(19, 0)),
            ("7:05", t(7, 5)),
            ("07:30", t(7, 30)),
            ("19.30", t(19, 30)),
            ("7pm", t(19, 0)),
            ("7 pm", t(19, 0)),
            ("7:30 pm", t(19, 30)),
            ("7:30PM", t(19, 30)),
            ("7:30 p.m.", t(19, 30)),
            ("12am", t(0, 0)),
            ("12pm", t(12, 0)),
            ("12:15 am", t(0, 15)),
            ("9am", t(9, 0)),
            ("8", t(8, 0)),
            ("at 8", t(8, 0)),
            ("0", t(0, 0)),
            ("23", t(23, 0)),
            ("8 o'clock", t(8, 0)),
            ("noon", t(12, 0)),
            ("Midnight", t(0, 0)),
            ("midday", t(12, 0)),
        ];
        for (input, want) in ok {
            assert_eq!(parse_time_of_day(input), Ok(want), "{input}");
        }
        let bad = [
            ("25:00", "time: '25:00' is not a valid time of day"),
            ("13pm", "time: '13pm' is not a valid time of day"),
            ("0am", "time: '0am' is not a valid time of day"),
            ("7:75", "time: '7:75' is not a valid time of day"),
            ("7:5", "time: '7:5' is not a valid time of day"),
            ("24", "time: '24' is not a valid time of day"),
            ("123:00", "time: '123:00' is not a valid time of day"),
            ("soon", "time: could not understand 'soon'"),
            ("", "time: could not understand ''"),
            ("7 pm sharp", "time: could not understand '7 pm sharp'"),
        ];
        for (input, msg) in bad {
            assert_eq!(
                parse_time_of_day(input).unwrap_err().to_string(),
                msg,
                "{input}"
            );
        }
    }

    #[test]
    fn numbers_and_ordinals() {
        for (w, n) in [
            ("3", 3),
            ("three", 3),
            ("twenty-five", 25),
            ("an", 1),
            ("ten", 10),
        ] {
            assert_eq!(count(w), Some(n), "{w}");
        }
        assert_eq!(count("blue"), None);
        for (w, n) in [
            ("1st", 1),
            ("2nd", 2),
            ("31st", 31),
            ("first", 1),
            ("fifteenth", 15),
            ("twentieth", 20),
            ("twenty-second", 22),
            ("thirty-first", 31),
        ] {
            assert_eq!(ordinal(w), Some(n), "{w}");
        }
        for w in ["1", "1x", "zeroth", "thirty", "st"] {
            assert_eq!(ordinal(w), None, "{w}");
        }
    }

    #[test]
    fn duration_parts_table() {
        let secs = |s: &str| -> Option<u64> {
            duration_parts(s).map(|p| p.iter().map(|(a, u)| a.times(u.seconds()).unwrap()).sum())
        };
        let cases = [
            ("1h30m", Some(5400)),
            ("1h 30m", Some(5400)),
            ("1 hour and 30 minutes", Some(5400)),
            ("25m", Some(1500)),
            ("90 seconds", Some(90)),
            ("1.5h", Some(5400)),
            ("half an hour", Some(1800)),
            ("an hour", Some(3600)),
            ("hour", Some(3600)),
            ("two weeks", Some(1_209_600)),
            ("3 days", Some(259_200)),
            ("", None),
            ("blue moon", None),
            ("3", None),
            ("m 5", None),
            ("5 5m", None),
            ("1h-30m", None),
        ];
        for (input, want) in cases {
            assert_eq!(secs(input), want, "{input}");
        }
    }

    #[test]
    fn tokenize_keeps_spans() {
        let s = "Water plants, every 3 days.";
        let toks = tokenize(s);
        let texts: Vec<&str> = toks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["water", "plants", "every", "3", "days"]);
        assert_eq!(&s[toks[2].start..], "every 3 days.");
    }
}
