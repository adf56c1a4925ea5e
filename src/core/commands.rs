//! Slash commands: parsing (`/name@bot args`) and the foundation commands. Domain commands call
//! their services from here; the list in [`COMMANDS`] is what `setMyCommands` publishes.

/// (command, description) as shown in Telegram's command menu and in /help.
pub const COMMANDS: &[(&str, &str)] = &[
    ("help", "What I can do"),
    ("members", "Who is in this group"),
    (
        "timezone",
        "Show or set the group's time zone, e.g. /timezone Europe/London",
    ),
];

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Lower-case name without the slash, e.g. "done".
    pub name: String,
    /// The rest of the text, trimmed.
    pub args: String,
}

/// Parse `/name[@bot] args`. Returns `None` for non-commands and for commands addressed to
/// another bot (`/help@otherbot`).
pub fn parse(text: &str, bot_username: &str) -> Option<Command> {
    let t = text.trim_start();
    let rest = t.strip_prefix('/')?;
    let (head, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let (name, target) = match head.split_once('@') {
        Some((n, b)) => (n, Some(b)),
        None => (head, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    if let Some(b) = target {
        if !b.eq_ignore_ascii_case(bot_username) {
            return None;
        }
    }
    Some(Command {
        name: name.to_ascii_lowercase(),
        args: args.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let c = parse("/done dishes now", "hearth_bot").unwrap();
        assert_eq!((c.name.as_str(), c.args.as_str()), ("done", "dishes now"));
        let c = parse("/Help@Hearth_Bot", "hearth_bot").unwrap();
        assert_eq!(c.name, "help");
        assert!(parse("/help@other_bot", "hearth_bot").is_none());
        assert!(parse("hello /help", "hearth_bot").is_none());
        assert!(parse("/", "hearth_bot").is_none());
        assert!(parse("/💥", "hearth_bot").is_none());
    }
}
