//! `docs/configuration.md` against the code: every key the code has is documented, every
//! documented key exists, and every documented default is the code's (the method is
//! described at the top of that file). `hooklake.example.toml` mentions every key of the
//! plain sections.

use std::collections::BTreeSet;

use super::*;

const REFERENCE: &str = include_str!("../../../docs/configuration.md");
const EXAMPLE: &str = include_str!("../../../hooklake.example.toml");

/// A key no section has, to make serde list the ones it has.
const PROBE: &str = "__not_a_key__";
/// The source every section's TOML is framed with.
const SOURCE: &str = "[sources.s]\nauth = { type = \"none\" }\n";

#[derive(Debug, PartialEq, Eq)]
enum DefaultCell {
    Required,
    Unset,
    /// A TOML value, `<name>` already replaced by the test source's name.
    Value(String),
}

#[derive(Debug)]
struct Row {
    key: String,
    kind: String,
    default: DefaultCell,
}

/// One table of the reference: `### `[section]``, or `### `[sources.<name>.auth]` with `type = "x"``.
#[derive(Debug)]
struct Section {
    id: String,
    scheme: Option<String>,
    rows: Vec<Row>,
}

/// The text between the first two backticks of `s`, and what follows.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let (_, rest) = s.split_once('`')?;
    rest.split_once('`')
}

fn parse_reference() -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut open = false;
    for line in REFERENCE.lines() {
        if line.starts_with('#') {
            open = false;
            let Some(heading) = line.strip_prefix("### ") else { continue };
            if let Some((id, rest)) = quoted(heading).filter(|_| heading.starts_with('`')) {
                let scheme = quoted(rest).and_then(|(t, _)| t.strip_prefix("type = \"")?.strip_suffix('"'));
                sections.push(Section { id: id.to_owned(), scheme: scheme.map(str::to_owned), rows: Vec::new() });
                open = true;
            }
            continue;
        }
        let Some(row) = line.strip_prefix("| `").filter(|_| open) else { continue };
        let cells: Vec<&str> = row.splitn(4, '|').map(str::trim).collect();
        let [key, kind, default, _] = cells[..] else { panic!("a row needs 4 cells: {line}") };
        let default = match default {
            "required" => DefaultCell::Required,
            "none" => DefaultCell::Unset,
            other => {
                let value = other.strip_prefix('`').and_then(|v| v.strip_suffix('`'));
                let value = value.unwrap_or_else(|| panic!("a default is required, none or `<TOML>`: {line}"));
                DefaultCell::Value(value.replace("<name>", "s"))
            }
        };
        let key = key.strip_suffix('`').unwrap_or_else(|| panic!("a key is written `key`: {line}")).to_owned();
        sections.last_mut().expect("rows follow a heading").rows.push(Row { key, kind: kind.to_owned(), default });
    }
    sections
}

/// The TOML of a configuration whose section `s` holds `body`.
fn frame(s: &Section, body: &str) -> String {
    match (s.id.as_str(), &s.scheme) {
        ("[sources.<name>]", _) => format!("[sources.s]\n{body}"),
        ("[sources.<name>.table]", _) => format!("{SOURCE}[sources.s.table]\n{body}"),
        ("[sources.<name>.auth]", Some(scheme)) => format!("[sources.s.auth]\ntype = \"{scheme}\"\n{body}"),
        (id, _) if KNOWN.contains(&id) => format!("{SOURCE}{id}\n{body}"),
        (id, _) => panic!("this test does not know section {id}: add it to KNOWN and `frame`"),
    }
}

/// The sections the test can frame, besides the auth schemes.
const KNOWN: &[&str] = &[
    "[kafka]",
    "[schema_registry]",
    "[catalog]",
    "[ingest]",
    "[sink]",
    "[sink.lag_trigger]",
    "[sources.<name>]",
    "[sources.<name>.table]",
];

/// The section as parsed, `Debug`-formatted. Sources show what the defaults lead to (the
/// topic, table and headers used), since their fields stay unset when left out.
fn view(s: &Section, c: &Config) -> String {
    let source = || &c.sources["s"];
    match s.id.as_str() {
        "[kafka]" => format!("{:?}", c.kafka),
        "[schema_registry]" => format!("{:?}", c.schema_registry),
        "[catalog]" => format!("{:?}", c.catalog),
        "[ingest]" => format!("{:?}", c.ingest),
        "[sink]" => format!("{:?}", c.sink),
        "[sink.lag_trigger]" => format!("{:?}", c.sink.lag_trigger),
        "[sources.<name>]" => format!(
            "{:?}",
            (
                source().topic_for("s"),
                source().table_for("s"),
                source().forwarded_headers(),
                &source().id_header,
                &source().event_type_pointer,
                &source().auth
            )
        ),
        "[sources.<name>.table]" => format!("{:?}", source().table),
        _ => format!("{:?}", source().auth),
    }
}

/// The section's own fields, `Debug`-formatted (for keys that stay unset).
fn raw(s: &Section, c: &Config) -> String {
    match s.id.as_str() {
        "[sources.<name>]" => format!("{:?}", c.sources["s"]),
        _ => view(s, c),
    }
}

/// A value for a required key, by its documented type.
fn sample(row: &Row) -> &'static str {
    match row.kind.as_str() {
        "string" => "\"sample\"",
        "secret list" => "[\"whsec_c2FtcGxl\"]",
        "table" if row.key == "auth" => "{ type = \"none\" }",
        other => panic!("no sample value for a required `{}` of type {other}", row.key),
    }
}

fn parse(text: &str) -> Result<Config, String> {
    Config::from_toml(text, &Env::new()).map_err(|e| e.to_string())
}

/// The names serde lists after "expected" in an unknown-field or unknown-variant error.
fn expected_names(error: &str) -> BTreeSet<String> {
    let (_, list) = error.split_once("expected").unwrap_or_else(|| panic!("no list of names in: {error}"));
    list.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn documented_keys(s: &Section) -> BTreeSet<String> {
    s.rows.iter().map(|r| r.key.clone()).collect()
}

fn required_body(s: &Section, except: Option<&str>) -> String {
    s.rows
        .iter()
        .filter(|r| r.default == DefaultCell::Required && Some(r.key.as_str()) != except)
        .map(|r| format!("{} = {}\n", r.key, sample(r)))
        .collect()
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let sections = parse_reference();
    for s in &sections {
        let keys = match parse(&frame(s, &format!("{PROBE} = 1\n"))) {
            // A scheme without fields (`none`) takes no key at all.
            Err(e) if e.contains("there are no fields") => BTreeSet::new(),
            Err(e) => expected_names(&e),
            Ok(_) => panic!("{}: an unknown key was accepted", s.id),
        };
        assert_eq!(documented_keys(s), keys, "{} {:?}: documented keys vs the code's", s.id, s.scheme);
        for r in s.rows.iter().filter(|r| r.kind == "table") {
            let nested = s.id.replace(']', &format!(".{}]", r.key));
            assert!(
                sections.iter().any(|n| n.id == nested),
                "{}: the table `{}` needs a section {nested}",
                s.id,
                r.key
            );
        }
    }
    let ids: BTreeSet<&str> = sections.iter().filter(|s| s.scheme.is_none()).map(|s| s.id.as_str()).collect();
    let known: BTreeSet<&str> = KNOWN.iter().copied().collect();
    assert_eq!(ids, known, "documented sections vs the ones this test frames");
    let top = expected_names(&parse(&format!("{PROBE} = 1\n{SOURCE}")).unwrap_err());
    let documented_top: BTreeSet<String> =
        ids.iter().map(|id| id.trim_matches(['[', ']']).split('.').next().unwrap().to_owned()).collect();
    assert_eq!(documented_top, top, "top-level sections");
    let err = parse(&format!("[sources.s.auth]\ntype = \"{PROBE}\"\n")).unwrap_err();
    let schemes: BTreeSet<String> = sections.iter().filter_map(|s| s.scheme.clone()).collect();
    assert_eq!(schemes, expected_names(&err), "documented auth schemes vs the code's");
}

#[test]
fn documented_config_defaults_are_the_codes() {
    for s in &parse_reference() {
        let bare_text = frame(s, &required_body(s, None));
        let bare = parse(&bare_text).unwrap_or_else(|e| panic!("{}: {e}\n{bare_text}", s.id));
        for r in &s.rows {
            match &r.default {
                DefaultCell::Value(value) => {
                    let text = frame(s, &format!("{}{} = {value}\n", required_body(s, None), r.key));
                    let set = parse(&text).unwrap_or_else(|e| panic!("{} `{}`: {e}\n{text}", s.id, r.key));
                    assert_eq!(view(s, &set), view(s, &bare), "{} `{}`: the documented default differs", s.id, r.key);
                }
                DefaultCell::Unset => {
                    let fields = raw(s, &bare);
                    assert!(
                        fields.contains(&format!(" {}: None", r.key)),
                        "{} `{}` is not unset: {fields}",
                        s.id,
                        r.key
                    );
                }
                DefaultCell::Required => {
                    let err = parse(&frame(s, &required_body(s, Some(&r.key)))).map(drop).unwrap_err();
                    assert!(err.contains(&format!("missing field `{}`", r.key)), "{} `{}`: {err}", s.id, r.key);
                }
            }
        }
    }
}

#[test]
fn the_example_config_mentions_every_key_of_the_plain_sections() {
    let lines: Vec<&str> = EXAMPLE.lines().map(|l| l.trim_start_matches(['#', ' '])).collect();
    for s in parse_reference()
        .iter()
        .filter(|s| ["[kafka]", "[schema_registry]", "[catalog]", "[ingest]", "[sink]"].contains(&s.id.as_str()))
    {
        let table = s.id.trim_end_matches(']');
        for r in &s.rows {
            let set = |l: &&str| l.strip_prefix(r.key.as_str()).is_some_and(|rest| rest.trim_start().starts_with('='));
            let header = format!("{table}.{}]", r.key);
            assert!(
                lines.iter().any(|l| set(l) || l.starts_with(&header)),
                "hooklake.example.toml does not mention {}.{}",
                s.id,
                r.key
            );
        }
    }
}
