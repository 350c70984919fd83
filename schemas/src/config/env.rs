//! The two environment layers of the configuration: `HOOKLAKE__SECTION__KEY` overrides
//! and `${ENV_NAME}` references inside string values.
//!
//! Both work on the parsed TOML tree before it is typed, so that every error can name
//! the key it is about. The environment is passed in as a value (see [`Env`]) rather than
//! read from the process, so tests never need `set_var`.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::ConfigError;

/// A snapshot of environment variables.
pub type Env = BTreeMap<String, String>;

/// Strings the environment put into the configuration, with the key they went to
/// (`sources.a.auth.keys[0]`): the values a configuration error must not print.
pub type FromEnv = Vec<(String, String)>;

/// The prefix of override variables: `HOOKLAKE__KAFKA__BROKERS=host:9092`.
pub const OVERRIDE_PREFIX: &str = "HOOKLAKE__";

/// Applies every `HOOKLAKE__A__B__C=value` to `a.b.c`. The value is read as a TOML value
/// when it is one (`true`, `3`, `["a", "b"]`, `{ type = "none" }`), else as a string;
/// quote it (`'"123"'`) to force a string. The strings set are added to `from_env`.
pub fn apply_overrides(root: &mut Table, env: &Env, from_env: &mut FromEnv) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(OVERRIDE_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::invalid(name, "an override needs non-empty key segments"));
        }
        let value = parse_scalar(raw);
        strings_in(&value, &path.join("."), from_env);
        set_path(root, &path, value).map_err(|msg| ConfigError::invalid(name, msg))?;
    }
    Ok(())
}

/// Every string inside `value`, under `key` (an override sets a whole subtree).
fn strings_in(value: &Value, key: &str, out: &mut FromEnv) {
    match value {
        Value::String(s) => out.push((key.to_owned(), s.clone())),
        Value::Array(items) => items.iter().for_each(|v| strings_in(v, key, out)),
        Value::Table(table) => table.values().for_each(|v| strings_in(v, key, out)),
        _ => {}
    }
}

fn parse_scalar(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

fn set_path(root: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut table = root;
    for key in parents {
        let entry = table.entry(key.clone()).or_insert_with(|| Value::Table(Table::new()));
        table = entry.as_table_mut().ok_or_else(|| format!("`{key}` is not a table, it cannot hold `{last}`"))?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

/// Replaces every `${NAME}` inside string values with the variable's value. A missing
/// variable is an error naming the key (never the value around it). The variables' values
/// and the strings they end up in are added to `from_env`.
pub fn expand_references(value: &mut Value, key: &str, env: &Env, from_env: &mut FromEnv) -> Result<(), ConfigError> {
    match value {
        Value::String(s) if s.contains("${") => {
            *s = expand(s, key, env, from_env)?;
            from_env.push((key.to_owned(), s.clone()));
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_references(item, &format!("{key}[{i}]"), env, from_env)?;
            }
        }
        Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let child = if key.is_empty() { k.clone() } else { format!("{key}.{k}") };
                expand_references(v, &child, env, from_env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(s: &str, key: &str, env: &Env, from_env: &mut FromEnv) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after.find('}').filter(|&end| is_var_name(&after[..end]));
        match name_len {
            Some(end) => {
                let name = &after[..end];
                let v = env
                    .get(name)
                    .ok_or_else(|| ConfigError::MissingEnv { key: key.to_owned(), var: name.to_owned() })?;
                out.push_str(v);
                from_env.push((key.to_owned(), v.clone()));
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_create_nested_keys_and_parse_toml_values() {
        let mut root: Table = toml::from_str("[kafka]\nbrokers = \"a:1\"").unwrap();
        let e = env(&[
            ("HOOKLAKE__KAFKA__BROKERS", "b:2"),
            ("HOOKLAKE__INGEST__MAX_BODY_BYTES", "2048"),
            ("HOOKLAKE_NOT_AN_OVERRIDE", "x"),
        ]);
        apply_overrides(&mut root, &e, &mut Vec::new()).unwrap();
        assert_eq!(root["kafka"]["brokers"].as_str(), Some("b:2"));
        assert_eq!(root["ingest"]["max_body_bytes"].as_integer(), Some(2048));
        assert_eq!(root.len(), 2);
    }

    #[test]
    fn references_expand_inside_strings_and_name_the_key_when_missing() {
        let mut v = Value::Table(toml::from_str("uri = \"postgres://u:${PW}@h/db\"\nk = [\"${NOPE}\"]").unwrap());
        let err = expand_references(&mut v, "", &env(&[("PW", "s3cret")]), &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "k[0]: environment variable NOPE is not set");
        let mut v = Value::Table(toml::from_str("uri = \"postgres://u:${PW}@h/db ${not a ref}\"").unwrap());
        let mut from_env = Vec::new();
        expand_references(&mut v, "", &env(&[("PW", "s3cret")]), &mut from_env).unwrap();
        let uri = |v: &str| ("uri".to_owned(), v.to_owned());
        assert_eq!(from_env, [uri("s3cret"), uri("postgres://u:s3cret@h/db ${not a ref}")]);
        assert_eq!(v["uri"].as_str(), Some("postgres://u:s3cret@h/db ${not a ref}"));
    }
}
