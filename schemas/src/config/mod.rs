//! hooklake's configuration: one TOML file, then `HOOKLAKE__SECTION__KEY` environment
//! overrides, then `${ENV_NAME}` references. It is loaded and validated once at start-up
//! and passed down as a value. Unknown keys and invalid values are errors naming the key.
//! Every key is documented in `docs/configuration.md` (a test checks it against the code)
//! and set or mentioned in `hooklake.example.toml` at the repository root.

mod env;
mod sections;
mod values;

use std::path::Path;

pub use env::{Env, OVERRIDE_PREFIX};
pub use sections::*;
pub use values::{ByteSize, HumanDuration, Secret};

/// A configuration that cannot be used. The message names the key (or the line), never a
/// secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse: its position and the kind of problem, not the line's text.
    #[error("{0}")]
    Syntax(String),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("{key}: environment variable {var} is not set")]
    MissingEnv { key: String, var: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), message: message.into() }
    }
}

impl Config {
    /// Reads `path`, applies the environment and validates.
    pub fn load(path: &Path, env: &Env) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_toml(&text, env)
    }

    /// Parses TOML text, applies the environment and validates.
    pub fn from_toml(text: &str, env: &Env) -> Result<Self, ConfigError> {
        let mut root: toml::Table = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        // Every string the environment puts into the tree: typed errors quote the value
        // they choke on, and these may be secrets.
        let mut from_env = Vec::new();
        env::apply_overrides(&mut root, env, &mut from_env)?;
        let mut root = toml::Value::Table(root);
        env::expand_references(&mut root, "", env, &mut from_env)?;
        let config: Config = serde_path_to_error::deserialize(root).map_err(|e| {
            let key = e.path().to_string();
            // toml appends "in `<table>`" on a second line; the key already says where.
            let message = e.into_inner().to_string();
            let message = redact(message.lines().next().unwrap_or_default(), &key, &from_env);
            ConfigError::invalid(if key == "." { "config".into() } else { key }, message)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The process environment as an [`Env`] value.
    pub fn process_env() -> Env {
        std::env::vars().collect()
    }
}

/// A TOML syntax error as line, column and toml's description. toml's own `Display`
/// quotes the source line, which may hold an inline secret (`secret = "s3cr3t` with its
/// closing quote missing), so it is not used.
fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let Some(span) = e.span() else { return ConfigError::Syntax(format!("invalid TOML: {}", e.message())) };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    ConfigError::Syntax(format!("invalid TOML at line {line}, column {column}: {}", e.message()))
}

/// `message`, an error at `key`, with the values the environment put at or under that
/// key (or above it) replaced by `***`: quoted (`"v"` as serde quotes, `` `v` `` as ours
/// do) wherever they are, and unquoted when at least 4 characters long (shorter ones
/// would also match ordinary words of the message). Longer values go first, so that a
/// value holding another is hidden whole.
fn redact(message: &str, key: &str, from_env: &env::FromEnv) -> String {
    let mut values: Vec<&str> =
        from_env.iter().filter(|(k, v)| !v.is_empty() && related(key, k)).map(|(_, v)| v.as_str()).collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = message.to_owned();
    for v in values {
        out = out.replace(&format!("{v:?}"), "\"***\"").replace(&format!("`{v}`"), "`***`");
        if v.chars().count() >= 4 {
            out = out.replace(v, "***");
        }
    }
    out
}

/// Whether keys `a` and `b` are the same, or one holds the other.
fn related(a: &str, b: &str) -> bool {
    let holds = |outer: &str, inner: &str| {
        outer == "." || inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    a == b || holds(a, b) || holds(b, a)
}

#[cfg(test)]
mod documented;
#[cfg(test)]
mod tests;
