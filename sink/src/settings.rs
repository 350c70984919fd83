//! What the sink derives from the configuration, validated once at start-up: which topic
//! feeds which table, the schedule, the lag trigger, and absolute catalog locations.

use std::{collections::HashMap, path::Path, time::Duration};

use hooklake_schemas::config::{CatalogType, Config, ConfigError, TableRef};

use crate::schedule::Schedule;

/// One source topic and the table it feeds.
#[derive(Debug, Clone)]
pub struct Route {
    pub source: String,
    pub topic: String,
    pub table: TableRef,
    /// `layer.folder.name`, the `table` metric label.
    pub table_label: String,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub routes: Vec<Route>,
    by_topic: HashMap<String, usize>,
    pub schedule: Schedule,
    pub lag_messages: Option<u64>,
    pub lag_age: Option<Duration>,
    pub lag_refresh: Duration,
    pub target_file_size: u64,
    pub dedupe_window: Duration,
    pub group_id: String,
    /// The catalog URI with relative SQLite paths made absolute.
    pub catalog_uri: String,
    /// The warehouse URL with relative file paths made absolute (other engines must find the files).
    pub warehouse: String,
}

impl Settings {
    /// Validates the sink's part of `config`; relative paths resolve against `base`
    /// (the working directory).
    pub fn from_config(config: &Config, base: &Path) -> Result<Self, ConfigError> {
        let routes: Vec<Route> = config
            .sources
            .iter()
            .map(|(name, s)| {
                let table = s.table_for(name);
                Route { source: name.clone(), topic: s.topic_for(name), table_label: table.to_string(), table }
            })
            .collect();
        let by_topic = routes.iter().enumerate().map(|(i, r)| (r.topic.clone(), i)).collect();
        let sink = &config.sink;
        let schedule = Schedule::parse(&sink.schedule).map_err(|e| ConfigError::invalid("sink.schedule", e))?;
        if sink.target_file_size.get() < 1 << 20 {
            return Err(ConfigError::invalid("sink.target_file_size", "must be at least 1MiB"));
        }
        if sink.lag_refresh.get() < Duration::from_secs(1) {
            return Err(ConfigError::invalid("sink.lag_refresh", "must be at least 1s"));
        }
        sql_pool_properties(config)?;
        Ok(Self {
            routes,
            by_topic,
            schedule,
            lag_messages: sink.lag_trigger.messages,
            lag_age: sink.lag_trigger.age.map(|a| a.get()),
            lag_refresh: sink.lag_refresh.get(),
            target_file_size: sink.target_file_size.get(),
            dedupe_window: sink.dedupe_window.get(),
            group_id: sink.group_id.clone(),
            catalog_uri: catalog_uri(config, base)?,
            warehouse: warehouse(&config.catalog.warehouse, base)?,
        })
    }

    pub fn route(&self, topic: &str) -> Option<&Route> {
        self.by_topic.get(topic).map(|i| &self.routes[*i])
    }

    pub fn topics(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.topic.clone()).collect()
    }
}

fn catalog_uri(config: &Config, base: &Path) -> Result<String, ConfigError> {
    let uri = config.catalog.uri.trim();
    match config.catalog.kind {
        CatalogType::Sql => {
            if let Some(path) = uri.strip_prefix("sqlite://") {
                let (path, query) = path.split_once('?').unwrap_or((path, ""));
                let path = if path.starts_with('/') { path.to_owned() } else { base.join(path).display().to_string() };
                // mode=rwc: create the database file on first use.
                let query = if query.contains("mode=") { query.to_owned() } else { format!("mode=rwc&{query}") };
                Ok(format!("sqlite://{path}?{}", query.trim_end_matches('&')))
            } else if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
                Ok(uri.to_owned())
            } else {
                Err(ConfigError::invalid("catalog.uri", "a sql catalog needs sqlite://<path> or postgres://..."))
            }
        }
        CatalogType::Rest if uri.starts_with("http://") || uri.starts_with("https://") => Ok(uri.to_owned()),
        CatalogType::Rest => Err(ConfigError::invalid("catalog.uri", "a rest catalog needs an http(s):// URL")),
    }
}

/// The SQL catalog's pool settings in `[catalog.properties]`. iceberg-catalog-sql parses
/// them with `unwrap`, so a value it cannot parse would panic the sink as it connects; a
/// pool of 0 connections would make every catalog call wait out the pool's 30 s.
fn sql_pool_properties(config: &Config) -> Result<(), ConfigError> {
    if config.catalog.kind != CatalogType::Sql {
        return Ok(());
    }
    for (key, value) in &config.catalog.properties {
        let wanted = match key.as_str() {
            "pool.max-connections" if !value.parse::<u32>().is_ok_and(|n| n > 0) => {
                "a whole number of connections, at least 1"
            }
            "pool.idle-timeout" if value.parse::<u64>().is_err() => "a whole number of seconds",
            "pool.test-before-acquire" if value.parse::<bool>().is_err() => "true or false",
            _ => continue,
        };
        return Err(ConfigError::invalid(format!("catalog.properties.{key}"), format!("must be {wanted}")));
    }
    Ok(())
}

fn warehouse(w: &str, base: &Path) -> Result<String, ConfigError> {
    let w = w.trim().trim_end_matches('/');
    if let Some(path) = w.strip_prefix("file://") {
        let abs = if path.starts_with('/') { path.to_owned() } else { base.join(path).display().to_string() };
        return Ok(format!("file://{abs}"));
    }
    if w.starts_with('/') {
        return Ok(format!("file://{w}"));
    }
    if w.contains("://") {
        return Ok(w.to_owned());
    }
    Err(ConfigError::invalid("catalog.warehouse", "use file://<path> or s3://bucket/prefix"))
}

#[cfg(test)]
mod tests {
    use hooklake_schemas::config::Env;

    use super::*;

    #[test]
    fn relative_locations_become_absolute() {
        let c = Config::from_toml(include_str!("../../hooklake.example.toml"), &Env::new()).unwrap();
        let s = Settings::from_config(&c, Path::new("/srv/hl")).unwrap();
        assert_eq!(s.catalog_uri, "sqlite:///srv/hl/lake/catalog.db?mode=rwc");
        assert_eq!(s.warehouse, "file:///srv/hl/lake/warehouse");
        assert_eq!(s.route("hooklake.orders").unwrap().table_label, "raw.shop.orders_webhooks");
        assert!(s.route("other").is_none());
    }

    #[test]
    fn bad_sink_values_name_the_key() {
        let base = "[sources.a]\nauth = { type = \"none\" }\n";
        let bad = |extra: &str| {
            let c = Config::from_toml(&format!("{base}{extra}"), &Env::new()).unwrap();
            Settings::from_config(&c, Path::new("/")).unwrap_err().to_string()
        };
        assert!(bad("[sink]\nschedule = \"whenever\"").starts_with("sink.schedule: "));
        assert!(bad("[catalog]\nuri = \"mysql://x\"").starts_with("catalog.uri: "));
        assert!(bad("[catalog]\nwarehouse = \"lake\"").starts_with("catalog.warehouse: "));
        assert!(bad("[sink]\ntarget_file_size = 1000").starts_with("sink.target_file_size: "));
        for (key, value) in
            [("pool.max-connections", "ten"), ("pool.max-connections", "0"), ("pool.idle-timeout", "-1")]
        {
            let error = bad(&format!("[catalog.properties]\n\"{key}\" = \"{value}\""));
            assert!(error.starts_with(&format!("catalog.properties.{key}: must be ")), "{error}");
        }
        let c = Config::from_toml(
            &format!(
                "{base}[catalog.properties]\n\"pool.max-connections\" = \"4\"\n\"pool.test-before-acquire\" = \"false\""
            ),
            &Env::new(),
        )
        .unwrap();
        assert!(Settings::from_config(&c, Path::new("/")).is_ok(), "values the pool can parse are taken");
    }
}
