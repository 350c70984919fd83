//! The metrics contract, `metrics.v1.json`: every metric ingest and sink export on
//! `/metrics`, with its type, help text and labels. deploy/check/contract.py checks the
//! dashboard and the alert rules against it; the services' tests and the integration
//! suite check what is exported against it with [`MetricsContract::check`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// The contract text, exactly as shipped in `metrics.v1.json`.
pub const METRICS_V1_JSON: &str = include_str!("../metrics.v1.json");

/// `metrics.v1.json`: service name (`ingest`, `sink`) → metric name → its contract.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsContract {
    pub description: String,
    pub version: u32,
    pub services: BTreeMap<String, BTreeMap<String, MetricSpec>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub help: String,
    /// Label name → its allowed values; `None` when the values are free-form (source,
    /// topic and table names).
    pub labels: BTreeMap<String, Option<LabelValues>>,
}

/// The values a label may take.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LabelValues {
    OneOf(Vec<String>),
    /// A regular expression. Only contract.py checks values against it: the workspace has
    /// no regex engine, and the one label so described (`status`) is set from a `StatusCode`.
    Pattern {
        regex: String,
    },
}

/// How much of the contract one exposition must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Every metric of the service: a registry after each metric was touched.
    All,
    /// Only what is exported must be in the contract, as the contract says: a live
    /// service, whose labelled series appear once something happened.
    Exported,
}

/// One metric family read from a Prometheus text exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Family {
    pub kind: Option<String>,
    pub help: Option<String>,
    /// The labels of each sample (histograms' `le` left out).
    pub samples: Vec<BTreeMap<String, String>>,
}

impl MetricsContract {
    /// The contract shipped with this build.
    pub fn v1() -> Self {
        serde_json::from_str(METRICS_V1_JSON).expect("metrics.v1.json is valid")
    }

    /// Every difference between `service`'s contract and `exposition` (its `/metrics`
    /// text): a metric exported but not in the contract, or in it but not exported (with
    /// [`Coverage::All`]), another type or help text, other label names, or a label value
    /// outside the allowed list.
    pub fn check(&self, service: &str, exposition: &str, coverage: Coverage) -> Vec<String> {
        let Some(specs) = self.services.get(service) else {
            return vec![format!("metrics.v1.json has no service {service}")];
        };
        let exported = parse_exposition(exposition);
        let mut problems = Vec::new();
        for (name, family) in &exported {
            match specs.get(name) {
                None => problems.push(format!("{name} is exported but not in metrics.v1.json ({service})")),
                Some(spec) => problems.extend(spec.differences(name, family)),
            }
        }
        if coverage == Coverage::All {
            for name in specs.keys().filter(|n| !exported.contains_key(*n)) {
                problems.push(format!("{name} is in metrics.v1.json ({service}) but not exported"));
            }
        }
        problems
    }
}

impl MetricSpec {
    fn differences(&self, name: &str, family: &Family) -> Vec<String> {
        let mut out = Vec::new();
        if family.kind.as_deref() != Some(self.kind.as_str()) {
            out.push(format!("{name} is a {:?}, metrics.v1.json says {}", family.kind, self.kind));
        }
        if family.help.as_deref() != Some(self.help.as_str()) {
            out.push(format!("{name} has help {:?}, metrics.v1.json says {:?}", family.help, self.help));
        }
        let names: BTreeSet<&str> = self.labels.keys().map(String::as_str).collect();
        for sample in &family.samples {
            let got: BTreeSet<&str> = sample.keys().map(String::as_str).collect();
            if got != names {
                out.push(format!("{name} has labels {got:?}, metrics.v1.json says {names:?}"));
                continue;
            }
            for (label, value) in sample {
                if let Some(Some(LabelValues::OneOf(allowed))) = self.labels.get(label)
                    && !allowed.contains(value)
                {
                    out.push(format!("{name}{{{label}=\"{value}\"}}: not a value metrics.v1.json allows"));
                }
            }
        }
        out.dedup();
        out
    }
}

/// The families of a Prometheus text exposition, by name. Histogram samples (`_bucket`,
/// `_sum`, `_count`) count under the family their `# TYPE` line names.
pub fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_owned()).or_default().help = Some(unescape(help));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_owned()).or_default().kind = Some(kind.to_owned());
        } else if !line.starts_with('#') {
            let (name, labels) = parse_sample(line);
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|b| out.get(*b).is_some_and(|f| f.kind.as_deref() == Some("histogram")))
                .unwrap_or(name);
            let mut labels = labels;
            labels.remove("le");
            let family = out.entry(base.to_owned()).or_default();
            if !family.samples.contains(&labels) {
                family.samples.push(labels);
            }
        }
    }
    out
}

/// A sample line, `name{k="v",...} value`: the name and the labels.
pub fn parse_sample(line: &str) -> (&str, BTreeMap<String, String>) {
    let mut labels = BTreeMap::new();
    let Some((name, rest)) = line.split_once('{') else {
        return (line.split_once(' ').map_or(line, |(n, _)| n), labels);
    };
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim_start_matches(',').into();
        if key.is_empty() || key.starts_with('}') || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_owned(), value);
        if chars.peek() == Some(&'}') {
            break;
        }
    }
    (name, labels)
}

/// A `# HELP` text with its escapes (`\\`, `\n`) undone.
fn unescape(text: &str) -> String {
    text.replace("\\n", "\n").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP hooklake_ingest_requests_total Webhook requests answered, by source and HTTP status
# TYPE hooklake_ingest_requests_total counter
hooklake_ingest_requests_total{source="a,\"b\"",status="200"} 3
# HELP hooklake_ingest_produce_duration_seconds Time from produce to the broker's acknowledgement
# TYPE hooklake_ingest_produce_duration_seconds histogram
hooklake_ingest_produce_duration_seconds_bucket{le="0.001"} 0
hooklake_ingest_produce_duration_seconds_sum 0
hooklake_ingest_produce_duration_seconds_count 0
"#;

    #[test]
    fn expositions_are_read_by_family() {
        let f = parse_exposition(TEXT);
        assert_eq!(f.len(), 2, "{f:?}");
        let requests = &f["hooklake_ingest_requests_total"];
        assert_eq!(requests.kind.as_deref(), Some("counter"));
        let labels = &requests.samples[0];
        assert_eq!(labels["source"], "a,\"b\"");
        assert_eq!(labels["status"], "200");
        let produce = &f["hooklake_ingest_produce_duration_seconds"];
        assert_eq!(produce.samples, vec![BTreeMap::new()]);
    }

    #[test]
    fn differences_from_the_contract_are_found() {
        let c = MetricsContract::v1();
        assert!(c.check("ingest", TEXT, Coverage::Exported).is_empty());
        let missing = c.check("ingest", TEXT, Coverage::All);
        assert!(missing.iter().any(|p| p.starts_with("hooklake_ingest_open_connections is in")), "{missing:?}");
        let wrong = TEXT.replace("status=", "code=").replace("histogram", "summary")
            + "# HELP hooklake_ingest_extra x\n# TYPE hooklake_ingest_extra gauge\nhooklake_ingest_extra 1\n"
            + "# HELP hooklake_ingest_rejected_total Requests not put on Kafka, by reason\n"
            + "# TYPE hooklake_ingest_rejected_total counter\n"
            + "hooklake_ingest_rejected_total{source=\"a\",reason=\"invalid_credential\"} 1\n";
        let problems = c.check("ingest", &wrong, Coverage::Exported);
        for expected in [
            "hooklake_ingest_requests_total has labels",
            "hooklake_ingest_produce_duration_seconds is a Some(\"summary\")",
            "hooklake_ingest_extra is exported but not in",
            "hooklake_ingest_rejected_total{reason=\"invalid_credential\"}",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(expected)), "no {expected} in {problems:?}");
        }
    }

    #[test]
    fn every_service_has_metrics_with_a_known_type() {
        let c = MetricsContract::v1();
        assert_eq!(c.services.keys().collect::<Vec<_>>(), ["ingest", "sink"]);
        for (service, metrics) in &c.services {
            for (name, spec) in metrics {
                assert!(name.starts_with(&format!("hooklake_{service}_")), "{name}");
                assert!(["counter", "gauge", "histogram"].contains(&spec.kind.as_str()), "{name}");
                assert!(!spec.help.is_empty(), "{name}");
            }
        }
    }
}
