//! hooklake's configuration: one TOML file, then `HOOKLAKE__SECTION__KEY` environment
//! overrides, then `${ENV_NAME}` references. It is loaded and validated once at start-up
//! and passed down as a value. Unknown keys and invalid values are errors naming the key.
//! Every key is documented in `hooklake.example.toml` at the repository root.

mod env;
mod sections;
mod values;

use std::path::Path;

pub use env::{Env, OVERRIDE_PREFIX};
pub use sections::*;
pub use values::{ByteSize, HumanDuration, Secret};

/// A configuration that cannot be used. The message names the key, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
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
        let mut root: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        env::apply_overrides(&mut root, env)?;
        let mut root = toml::Value::Table(root);
        env::expand_references(&mut root, "", env)?;
        let config: Config = serde_path_to_error::deserialize(root).map_err(|e| {
            let key = e.path().to_string();
            // toml appends "in `<table>`" on a second line; the key already says where.
            let message = e.into_inner().to_string();
            let message = message.lines().next().unwrap_or_default().to_owned();
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

#[cfg(test)]
mod tests;
