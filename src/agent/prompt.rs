//! The system prompt: `prompts/system.md`, a minijinja template rendered per turn with the chat's
//! name, members, local time, context sections (approvals, chores …) and the recent conversation.

use std::path::Path;

use minijinja::Environment;
use serde::Serialize;

/// The template shipped with hearth (used when `prompts/system.md` is not on disk).
pub const BUILTIN_SYSTEM: &str = include_str!("../../prompts/system.md");

/// A titled block of the prompt, e.g. `REQUESTS YOU CAN ACTION` with numbered lines.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub body: String,
}

/// One member as the prompt lists them.
#[derive(Debug, Clone, Serialize)]
pub struct PromptMember {
    pub name: String,
    pub username: Option<String>,
    pub admin: bool,
}

/// Everything the template may use.
#[derive(Debug, Clone, Serialize)]
pub struct PromptVars {
    pub bot_name: String,
    pub private: bool,
    pub chat_title: String,
    pub user_name: String,
    /// Local time with zone, e.g. "Sat 21 Nov 2026 14:05 Europe/London".
    pub now: String,
    pub members: Vec<PromptMember>,
    pub sections: Vec<Section>,
    pub conversation: Vec<String>,
    pub silent_ok: bool,
}

/// A compiled system prompt template.
pub struct Prompt {
    env: Environment<'static>,
}

/// The template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
#[error("prompt template: {0}")]
pub struct PromptError(String);

impl Prompt {
    /// Load `dir/system.md`, or the built-in template when the file is absent.
    /// Errors: the file exists but is not a valid template.
    pub fn load(dir: &Path) -> Result<Prompt, PromptError> {
        let path = dir.join("system.md");
        let src = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(_) => BUILTIN_SYSTEM.to_string(),
        };
        Self::from_source(src)
    }

    /// Compile a template from source text.
    pub fn from_source(src: String) -> Result<Prompt, PromptError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_template_owned("system", src)
            .map_err(|e| PromptError(e.to_string()))?;
        Ok(Prompt { env })
    }

    /// The built-in template.
    pub fn builtin() -> Prompt {
        Self::from_source(BUILTIN_SYSTEM.to_string()).expect("built-in prompt compiles")
    }

    /// Render the system prompt.
    pub fn render(&self, vars: &PromptVars) -> Result<String, PromptError> {
        let t = self
            .env
            .get_template("system")
            .map_err(|e| PromptError(e.to_string()))?;
        t.render(vars).map_err(|e| PromptError(e.to_string()))
    }
}
