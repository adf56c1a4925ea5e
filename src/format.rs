//! Text formatting for chat output (placeholder until the full module lands).
/// Escape &, <, > for Telegram HTML.
pub fn escape_html(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            c => o.push(c),
        }
    }
    o
}

/// Strip tags and unescape entities (placeholder).
pub fn html_to_plain(s: &str) -> String {
    let mut o = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => o.push(c),
            _ => {}
        }
    }
    o.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Markdown → Telegram HTML (placeholder: escapes only).
pub fn markdown_to_html(md: &str) -> String {
    escape_html(md)
}

/// Telegram's message limit (placeholder).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Split (placeholder).
pub fn split_html(html: &str, _max: usize) -> Vec<String> {
    vec![html.to_string()]
}
