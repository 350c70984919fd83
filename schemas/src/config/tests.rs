use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const EXAMPLE: &str = include_str!("../../../hooklake.example.toml");

const MINIMAL: &str = r#"
[sources.orders]
auth = { type = "api_key", keys = ["${ORDERS_KEY}"] }
"#;

#[test]
fn the_example_file_loads() {
    let c = Config::from_toml(EXAMPLE, &Env::new()).unwrap();
    assert_eq!(c.sources.len(), 2);
    assert_eq!(c.sources["orders"].topic_for("orders"), "hooklake.orders");
    assert_eq!(c.sources["nectar"].topic_for("nectar"), "hooklake.nectar");
    assert_eq!(c.sources["nectar"].table_for("nectar").to_string(), "raw.nectar.events");
    assert_eq!(c.ingest.max_body_bytes.get(), 1 << 20);
    assert_eq!(c.sink.target_file_size.get(), 128 << 20);
}

#[test]
fn defaults_follow_the_design() {
    let c = Config::from_toml(MINIMAL, &env(&[("ORDERS_KEY", "k")])).unwrap();
    assert_eq!(c.kafka.brokers, "localhost:9092");
    assert_eq!(c.ingest.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.ingest.admin_listen.to_string(), "0.0.0.0:9090");
    assert_eq!(c.ingest.response_deadline.get().as_secs(), 10);
    assert_eq!(c.sink.admin_listen.to_string(), "0.0.0.0:9091");
    assert_eq!(c.sink.schedule, "every 15m");
    assert_eq!(c.sink.dedupe_window.get().as_secs(), 86_400);
    assert_eq!(c.catalog.uri, "sqlite://lake/catalog.db");
    assert_eq!(c.sources["orders"].table_for("orders").to_string(), "raw.webhooks.orders");
    match &c.sources["orders"].auth {
        AuthConfig::ApiKey { header, keys } => {
            assert_eq!(header, "x-api-key");
            assert_eq!(keys[0].expose(), "k");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unknown_keys_are_errors_that_name_the_key() {
    let err = Config::from_toml(&format!("{MINIMAL}\n[ingest]\nmax_body = 5\n"), &env(&[("ORDERS_KEY", "k")]))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("ingest.max_body: unknown field `max_body`"), "{err}");
    let err =
        Config::from_toml("[sources.a]\nauth = { type = \"api_key\", keys = [\"x\"], colour = \"red\" }", &Env::new())
            .unwrap_err()
            .to_string();
    assert!(err.contains("sources.a.auth") && err.contains("colour"), "{err}");
    // Also next to `type = "none"`, where a forgotten key would otherwise leave a source open.
    let err = Config::from_toml("[sources.a]\nauth = { type = \"none\", keys = [\"x\"] }", &Env::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("sources.a.auth") && err.contains("keys"), "{err}");
}

#[test]
fn invalid_values_name_the_key() {
    let e = env(&[("ORDERS_KEY", "k")]);
    let err = Config::from_toml(&format!("{MINIMAL}\n[ingest]\nresponse_deadline = \"soon\"\n"), &e).unwrap_err();
    assert!(err.to_string().starts_with("ingest.response_deadline: "), "{err}");
    let err = Config::from_toml(&format!("{MINIMAL}\n[sink]\ntarget_file_size = \"12 parsecs\"\n"), &e).unwrap_err();
    assert!(err.to_string().starts_with("sink.target_file_size: "), "{err}");
    let err = Config::from_toml("[sources.\"bad name\"]\nauth = { type = \"none\" }", &e).unwrap_err();
    assert!(err.to_string().starts_with("sources.bad name: "), "{err}");
    let err = Config::from_toml("[sources.a]\nauth = { type = \"github\", secrets = [] }", &e).unwrap_err();
    assert_eq!(err.to_string(), "sources.a.auth.secrets: at least one is needed");
    let err = Config::from_toml("[sources.a]\nauth = { type = \"sometimes\" }", &e).unwrap_err();
    assert!(err.to_string().starts_with("sources.a.auth.type: unknown variant `sometimes`"), "{err}");
    let err = Config::from_toml("[sources.a]\n", &e).unwrap_err();
    assert!(err.to_string().contains("missing field `auth`"), "{err}");
    let err = Config::from_toml(
        "[sources.a]\nauth = { type = \"api_key\", keys = [\"k\"] }\nforward_headers = [\"X-API-Key\"]",
        &e,
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("sources.a.forward_headers: `x-api-key` carries credentials"), "{err}");
}

#[test]
fn missing_secret_variables_name_key_and_variable() {
    let err = Config::from_toml(MINIMAL, &Env::new()).unwrap_err();
    assert_eq!(err.to_string(), "sources.orders.auth.keys[0]: environment variable ORDERS_KEY is not set");
}

#[test]
fn environment_overrides_win_over_the_file() {
    let e = env(&[
        ("ORDERS_KEY", "k"),
        ("HOOKLAKE__KAFKA__BROKERS", "kafka-1:9092,kafka-2:9092"),
        ("HOOKLAKE__INGEST__MAX_BODY_BYTES", "2048"),
        ("HOOKLAKE__SOURCES__ORDERS__TOPIC", "shop.orders"),
    ]);
    let c = Config::from_toml(MINIMAL, &e).unwrap();
    assert_eq!(c.kafka.brokers, "kafka-1:9092,kafka-2:9092");
    assert_eq!(c.ingest.max_body_bytes.get(), 2048);
    assert_eq!(c.sources["orders"].topic_for("orders"), "shop.orders");
}

#[test]
fn worker_threads_default_to_one_per_cpu_and_are_at_least_one() {
    let e = env(&[("ORDERS_KEY", "k"), ("HOOKLAKE__INGEST__WORKER_THREADS", "3")]);
    assert_eq!(Config::from_toml(MINIMAL, &e).unwrap().ingest.worker_threads, Some(3));
    let e = env(&[("ORDERS_KEY", "k")]);
    assert_eq!(Config::from_toml(MINIMAL, &e).unwrap().ingest.worker_threads, None);
    let err = Config::from_toml(&format!("{MINIMAL}\n[ingest]\nworker_threads = 0\n"), &e).unwrap_err();
    assert!(err.to_string().starts_with("ingest.worker_threads: must be at least 1"), "{err}");
}

#[test]
fn connection_limits_have_defaults_and_are_validated() {
    let e = env(&[("ORDERS_KEY", "k")]);
    let c = Config::from_toml(MINIMAL, &e).unwrap();
    assert_eq!(c.ingest.header_read_timeout.get().as_secs(), 10);
    assert_eq!(c.ingest.at_cap_timeout.get().as_secs(), 2);
    assert_eq!((c.ingest.max_connections, c.ingest.max_in_flight, c.ingest.max_in_flight()), (1024, None, 1024));
    assert_eq!(c.ingest.max_in_flight_bytes.get(), 256 << 20);
    for (line, key) in [
        ("header_read_timeout = \"100ms\"", "ingest.header_read_timeout: must be at least 1s"),
        ("max_connections = 0", "ingest.max_connections: must be at least 1"),
        ("at_cap_timeout = \"50ms\"", "ingest.at_cap_timeout: must be at least 100ms"),
        ("at_cap_timeout = \"11s\"", "ingest.at_cap_timeout: must be at least 100ms and at most"),
        ("header_read_timeout = \"1s\"", "ingest.at_cap_timeout: must be at least 100ms and at most"),
        ("max_in_flight = 0", "ingest.max_in_flight: must be at least 1"),
        ("max_connections = 10\nmax_in_flight = 11", "ingest.max_in_flight: must be at least 1"),
        ("max_in_flight_bytes = \"512KiB\"", "ingest.max_in_flight_bytes: must be at least ingest.max_body_bytes"),
        ("max_body_bytes = 100\nmax_in_flight_bytes = 99", "ingest.max_in_flight_bytes: must be at least"),
        ("max_in_flight_bytes = \"2048GiB\"", "ingest.max_in_flight_bytes: must be at least"),
    ] {
        let err = Config::from_toml(&format!("{MINIMAL}\n[ingest]\n{line}\n"), &e).unwrap_err();
        assert!(err.to_string().starts_with(key), "{line}: {err}");
    }
    // Unset, `max_in_flight` follows a lower `max_connections`.
    let c = Config::from_toml(&format!("{MINIMAL}\n[ingest]\nmax_connections = 10\n"), &e).unwrap();
    assert_eq!(c.ingest.max_in_flight(), 10);
}

#[test]
fn debug_output_never_holds_secrets() {
    let text = r#"
[kafka.properties]
"sasl.password" = "kafka-pw-123"
[catalog]
uri = "postgres://hook:pg-pw-456@db/lake"
[catalog.properties]
"s3.secret-access-key" = "s3-secret-789"
[schema_registry]
url = "http://sr:8081"
password = "sr-pw-000"
[sources.orders]
auth = { type = "api_key", keys = ["key-abc", "key-def"] }
[sources.nectar]
auth = { type = "standard_webhooks", secrets = ["whsec_c2VjcmV0LXh5eg=="] }
"#;
    let c = Config::from_toml(text, &Env::new()).unwrap();
    let debug = format!("{c:?} {c:#?}");
    for secret in ["kafka-pw-123", "pg-pw-456", "s3-secret-789", "sr-pw-000", "key-abc", "key-def", "c2VjcmV0LXh5eg"] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug output");
    }
    assert!(debug.contains("postgres://hook:***@db/lake"));
}

#[test]
fn syntax_errors_give_the_line_and_the_problem_not_the_lines_text() {
    let text = "[sources.a]\nauth = { type = \"github\", secrets = [\"x\"] }\nsecret = \"s3cr3t-value\n";
    let err = Config::from_toml(text, &Env::new()).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax(_)), "{err:?}");
    let err = err.to_string();
    assert!(!err.contains("s3cr3t"), "the secret leaked: {err}");
    assert!(err.starts_with("invalid TOML at line 3, column "), "{err}");
    assert!(err.contains("string"), "the kind of problem: {err}");
    // An inline table on one line, the way sources carry their secrets.
    let text = "[sources.a]\nauth = { type = \"api_key\", keys = [\"k3y-s3cr3t\" }\n";
    let err = Config::from_toml(text, &Env::new()).unwrap_err().to_string();
    assert!(!err.contains("k3y-s3cr3t") && err.starts_with("invalid TOML at line 2, column "), "{err}");
}

#[test]
fn type_errors_hide_values_from_the_environment() {
    let secret = "s3cr3t-value";
    let cases = [
        ("[kafka]\ntopic_partitions = \"${V}\"", secret, "kafka.topic_partitions: invalid type: string"),
        ("[ingest]\nresponse_deadline = \"${V}\"", "10s3cr3t", "ingest.response_deadline: `***` is not a duration"),
        ("[ingest]\nmax_body_bytes = \"${V}\"", "12 s3cr3t", "ingest.max_body_bytes: "),
        ("[catalog]\ntype = \"${V}\"", secret, "catalog.type: unknown variant `***`"),
        ("[ingest]\nlisten = \"${V}\"", secret, "ingest.listen: "),
        ("[kafka]\nbrokers = [\"${V}\"]", secret, "kafka.brokers: invalid type: sequence"),
        ("[ingest]\nresponse_deadline = \"1m ${V}\"", "s3cr3t", "ingest.response_deadline: `***` is not a duration"),
    ];
    for (extra, value, expected) in cases {
        let text = format!("{MINIMAL}\n{extra}\n");
        let err = Config::from_toml(&text, &env(&[("ORDERS_KEY", "k"), ("V", value)])).unwrap_err().to_string();
        assert!(!err.contains("s3cr3t"), "the value leaked: {err}");
        assert!(err.starts_with(expected), "{extra}: {err}");
    }
    // Overrides may carry secrets too.
    for (name, value) in
        [("HOOKLAKE__KAFKA__TOPIC_PARTITIONS", "\"s3cr3t\""), ("HOOKLAKE__INGEST__RETRY_AFTER", secret)]
    {
        let err = Config::from_toml(MINIMAL, &env(&[("ORDERS_KEY", "k"), (name, value)])).unwrap_err().to_string();
        assert!(!err.contains("s3cr3t") && err.contains("***"), "{name}: {err}");
    }
    // Values written in the file itself are still shown: they help find the mistake.
    let err =
        Config::from_toml(&format!("{MINIMAL}\n[kafka]\ntopic_partitions = \"three\"\n"), &env(&[("ORDERS_KEY", "k")]))
            .unwrap_err()
            .to_string();
    assert!(err.contains("\"three\""), "{err}");
}

#[test]
fn librdkafka_refusing_a_property_does_not_echo_its_value() {
    let text = format!("[kafka.properties]\n\"compression.codec\" = \"${{CODEC}}\"\n{MINIMAL}");
    let c = Config::from_toml(&text, &env(&[("ORDERS_KEY", "k"), ("CODEC", "s3cr3t-codec")])).unwrap();
    let mut client = rdkafka::ClientConfig::new();
    for (k, v) in c.kafka.client_properties() {
        client.set(k, v);
    }
    let refused = client.create::<rdkafka::producer::BaseProducer>().err().expect("an unknown codec is refused");
    assert!(refused.to_string().contains("s3cr3t-codec"), "librdkafka quotes the value: {refused}");
    let redacted = c.kafka.redact_error(refused).to_string();
    assert!(!redacted.contains("s3cr3t-codec") && redacted.contains("compression.codec"), "{redacted}");
}
