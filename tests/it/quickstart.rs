//! The README quickstart, as a user runs it: `hooklake dev` in a directory holding
//! hooklake.example.toml, webhooks from the banner's curl lines, `hooklake send` and the
//! Python svix library, then the example analyses with `hooklake query`. Restarting dev
//! keeps what the broker acknowledged but nobody loaded yet.

use hooklake_tests::{dev::DevDir, http, python, unix_now};
use serde_json::{Value, json};

/// The example configuration's Standard Webhooks secret (source `nectar`).
const NECTAR_SECRET: &str = "whsec_ZGV2LW5lY3Rhci1zaWduaW5nLXNlY3JldC0zMmI=";

const ORDERS: &str = "raw.shop.orders_webhooks";
const NECTAR: &str = "raw.nectar.events";

fn order(id: &str, email: &str, total: f64, items: Value) -> String {
    json!({"event_type": "order.created", "order_id": id, "customer": {"email": email}, "total": total, "items": items})
        .to_string()
}

/// Posts `body` to nectar signed by the svix library with message id `id`; the status.
async fn post_svix(ingest: &str, id: &str, body: &str) -> u16 {
    let headers = python::sign(&json!([{
        "lib": "svix", "secret": NECTAR_SECRET, "msg_id": id, "timestamp": unix_now(), "payload": body,
    }]))
    .await;
    let mut request =
        http::client().post(format!("{ingest}/webhook/nectar")).header("content-type", "application/json");
    for (k, v) in &headers[0] {
        request = request.header(k, v.as_str().expect("header text"));
    }
    request.body(body.to_owned()).send().await.expect("POST").status().as_u16()
}

/// The curl line the banner printed for `source`.
fn banner_curl(banner: &str, source: &str) -> String {
    banner
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("curl ") && l.contains(&format!("/webhook/{source} ")))
        .unwrap_or_else(|| panic!("no curl line for {source} in the banner:\n{banner}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quickstart_works_as_written() {
    let user = DevDir::new();
    let dev = user.start(&["--schedule", "off"]).await;
    let banner = dev.stdout();
    assert!(banner.contains(&format!("POST {}/webhook/<source>", user.ingest)), "{banner}");
    assert!(banner.contains(&format!("→ table {ORDERS}")) && banner.contains(&format!("→ table {NECTAR}")), "{banner}");

    // 1. The banner's curl lines work pasted into a shell (the nectar one is signed).
    for source in ["orders", "nectar"] {
        let line = banner_curl(&banner, source);
        let out = tokio::process::Command::new("sh").arg("-c").arg(&line).output().await.expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("HTTP/1.1 200"), "{source}: {line}\n→ {text}");
    }

    // 2. hooklake send: three orders (API key) and five sample events (Standard Webhooks).
    let orders = [
        ("o-1", "ada@example.com", 12.5, json!([{"sku": "A", "qty": 1}])),
        ("o-2", "bob@example.com", 99.0, json!([{"sku": "B", "qty": 2}, {"sku": "C", "qty": 1}])),
        ("o-3", "cy@example.com", 0.25, json!([])),
    ];
    for (id, email, total, items) in &orders {
        let out = user.run(&["send", "orders", "--data", &order(id, email, *total, items.clone())]).await;
        assert!(out.success && out.stdout.contains("200: 1"), "send: {}\n{}", out.stdout, out.stderr);
    }
    let out = user.run(&["send", "nectar", "--count", "5", "--rate", "50"]).await;
    assert!(out.success && out.stdout.contains("200: 5"), "send: {}\n{}", out.stdout, out.stderr);

    // 3. The Python svix library, as a sender would sign; one webhook delivered twice.
    let readings = [("msg_r1", "m-1", 1.5), ("msg_r2", "m-2", 0.75), ("msg_r1", "m-1", 1.5)];
    for (id, meter, kwh) in readings {
        let body = json!({"type": "meter.reading", "data": {"meter_id": meter, "kwh": kwh}}).to_string();
        assert_eq!(post_svix(&user.ingest, id, &body).await, 200);
    }

    // 4. A run, then the analyses.
    let run = dev.run_now().await;
    assert_eq!(run["state"], "succeeded", "{run}");

    let by_type = user
        .query_json(&format!(
            "SELECT event_type, count(*) AS events, min(webhook_received_at) AS first_seen, \
             max(webhook_received_at) AS last_seen FROM {NECTAR} GROUP BY event_type ORDER BY event_type"
        ))
        .await;
    let counts: Vec<(&str, i64)> =
        by_type.iter().map(|r| (r["event_type"].as_str().unwrap(), r["events"].as_i64().unwrap())).collect();
    assert_eq!(counts, [("hooklake.test", 5), ("meter.reading", 2), ("nectar.created", 1)], "{by_type:?}");
    for r in &by_type {
        assert!(r["first_seen"].as_str().unwrap() <= r["last_seen"].as_str().unwrap(), "{r}");
    }

    let readings = user
        .query_json(&format!(
            "SELECT json_get_str(payload, 'data', 'meter_id') AS meter, json_get_float(payload, 'data', 'kwh') AS kwh \
             FROM {NECTAR} WHERE event_type = 'meter.reading' ORDER BY meter"
        ))
        .await;
    assert_eq!(readings, vec![json!({"meter": "m-1", "kwh": 1.5}), json!({"meter": "m-2", "kwh": 0.75})]);

    let recent = user
        .query_json(&format!(
            "SELECT count(*) AS n FROM {ORDERS} WHERE webhook_received_at > now() - INTERVAL '7 days'"
        ))
        .await;
    assert_eq!(recent, vec![json!({"n": 4})], "three orders and the banner's curl");

    let typed = user
        .query_json(&format!(
            "CREATE VIEW orders AS SELECT json_get_str(payload, 'order_id') AS order_id, \
             json_get_str(payload, 'customer', 'email') AS customer_email, \
             json_get_float(payload, 'total') AS total, json_get_json(payload, 'items') AS items \
             FROM {ORDERS} WHERE event_type = 'order.created'; SELECT * FROM orders ORDER BY order_id"
        ))
        .await;
    let expected: Vec<Value> = orders
        .iter()
        .map(|(id, email, total, items)| {
            json!({"order_id": id, "customer_email": email, "total": total, "items": items.to_string()})
        })
        .collect();
    assert_eq!(typed, expected);

    // The aligned table: header and values in columns.
    let table =
        user.run(&["query", &format!("SELECT event_type, count(*) AS n FROM {ORDERS} GROUP BY 1 ORDER BY 1")]).await;
    assert!(table.success, "{}", table.stderr);
    assert!(
        table.stdout.contains("| event_type     | n |") && table.stdout.contains("| order.created  | 3 |"),
        "{}",
        table.stdout
    );

    // 5. Acknowledged, not yet loaded, then the process dies: the broker keeps them.
    for (id, email, total, items) in
        [("o-4", "di@example.com", 5.0, json!([])), ("o-5", "ed@example.com", 6.0, json!([]))]
    {
        let out = user.run(&["send", "orders", "--data", &order(id, email, total, items)]).await;
        assert!(out.success, "{}", out.stderr);
    }
    dev.kill().await;

    let dev = user.start(&["--schedule", "off"]).await;
    let run = dev.run_now().await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let ids = user
        .query_json(&format!(
            "SELECT json_get_str(payload, 'order_id') AS id FROM {ORDERS} WHERE event_type = 'order.created' ORDER BY id"
        ))
        .await;
    let ids: Vec<&str> = ids.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["o-1", "o-2", "o-3", "o-4", "o-5"]);

    // 6. Ctrl-C loads what is left before stopping.
    let out = user.run(&["send", "orders", "--count", "2"]).await;
    assert!(out.success, "{}", out.stderr);
    let (clean, output) = dev.interrupt().await;
    assert!(clean, "hooklake dev exited non-zero after Ctrl-C:\n{output}");
    assert!(output.contains("loading what is left"), "{output}");
    let total = user.query_json(&format!("SELECT count(*) AS n FROM {ORDERS}")).await;
    assert_eq!(total, vec![json!({"n": 8})], "4 + 2 + 2");
}

#[tokio::test]
async fn query_errors_are_clear_and_exit_non_zero() {
    let user = DevDir::new();
    let unknown = user.run(&["query", "SELECT * FROM raw.shop.nope"]).await;
    assert!(!unknown.success);
    assert!(unknown.stderr.contains("raw.shop.nope") && unknown.stderr.contains("not found"), "{}", unknown.stderr);
    assert!(unknown.stderr.contains("tables: none yet"), "{}", unknown.stderr);

    let bad = user.run(&["query", "SELEC count(*) FROM raw.shop.orders_webhooks"]).await;
    assert!(!bad.success);
    assert!(bad.stderr.contains("bad SQL") && bad.stderr.contains("SELEC"), "{}", bad.stderr);

    let missing = user.run(&["query", "--config", "nope.toml", "SELECT 1"]).await;
    assert!(!missing.success);
    assert!(missing.stderr.contains("nope.toml"), "{}", missing.stderr);
}
