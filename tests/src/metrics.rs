//! Reading Prometheus text exposition in assertions.

/// The value of the sample `name{labels}` (labels given as `k="v"` pairs in any order).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let got = rest.trim_end_matches('}');
        let all = labels.iter().all(|(k, v)| got.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        let same_count = labels.len() == got.split(',').filter(|p| !p.is_empty()).count();
        (all && same_count).then(|| value.parse().ok()).flatten()
    })
}

/// Every metric family name and its label names, from `# TYPE` lines and samples.
pub fn families(text: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            out.entry(name.to_owned()).or_default();
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            let base = if out.contains_key(base) { base } else { name };
            let entry = out.entry(base.to_owned()).or_default();
            for pair in labels.trim_end_matches('}').split(',').filter(|p| !p.is_empty()) {
                if let Some((k, _)) = pair.split_once('=')
                    && k != "le"
                {
                    entry.insert(k.to_owned());
                }
            }
        }
    }
    out
}
