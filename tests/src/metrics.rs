//! Reading Prometheus text exposition in assertions, and holding it to the metrics
//! contract (schemas/metrics.v1.json).

use std::collections::{BTreeMap, BTreeSet};

use hooklake_schemas::metrics::{Coverage, MetricsContract, parse_exposition, parse_sample};

/// The value of the sample `name{labels}` (labels given as `k="v"` pairs in any order).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    samples(text, name).into_iter().find_map(|(got, v)| (got == want).then_some(v))
}

/// Every sample of `name`: its labels and its value.
pub fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (n, labels) = parse_sample(line);
            let value = line.rsplit_once(' ')?.1.parse().ok()?;
            (n == name).then_some((labels, value))
        })
        .collect()
}

/// Every metric family name and its label names (histograms' `le` left out).
pub fn families(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    parse_exposition(text)
        .into_iter()
        .map(|(name, family)| (name, family.samples.into_iter().flat_map(|s| s.into_keys()).collect()))
        .collect()
}

/// Fails unless `service`'s `/metrics` text is what schemas/metrics.v1.json says: names,
/// types, help, labels and listed label values; with [`Coverage::All`], every metric.
pub fn assert_contract(service: &str, text: &str, coverage: Coverage) {
    let problems = MetricsContract::v1().check(service, text, coverage);
    assert!(problems.is_empty(), "{service} /metrics differs from schemas/metrics.v1.json: {problems:#?}\n{text}");
}
