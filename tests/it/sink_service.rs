//! `hooklake sink` as a service: manual runs over its admin API, the schedule and lag
//! triggers, the lag gauges between runs, dead letters, a catalog that is not there yet
//! at start-up — and every metric the Grafana dashboard and the alert rules use is
//! exported by the running services.

use std::time::Duration;

use hooklake_schemas::metrics::Coverage;
use hooklake_tests::{
    broker::{Broker, TestBroker},
    eventually, free_port, kafka,
    lake::TestLake,
    metrics, python,
    sink::{self, SinkService},
    tools,
};

use crate::sink_common::{Pipeline, sorted};

/// `hooklake_sink_lag_messages` of `topic`, summed over its partitions (absent counts 0).
fn lag_messages(text: &str, topic: &str) -> f64 {
    (0..2)
        .filter_map(|p| {
            metrics::value(text, "hooklake_sink_lag_messages", &[("topic", topic), ("partition", &p.to_string())])
        })
        .sum()
}

fn runs(text: &str, trigger: &str, outcome: &str) -> f64 {
    metrics::value(text, "hooklake_sink_runs_total", &[("trigger", trigger), ("outcome", outcome)]).unwrap_or(0.0)
}

fn rows_written(text: &str, table: &str) -> f64 {
    metrics::value(text, "hooklake_sink_rows_written_total", &[("table", table)]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_run_dead_letters_an_undecodable_record_and_goes_on() {
    let p = Pipeline::start(TestLake::sqlite()).await;
    let ids = p.post_keys("ok", 2).await;
    // A record no hooklake ingest wrote: neither encoding decodes it.
    kafka::produce_raw(&p.broker.bootstrap(), &p.keys_topic(), "junk", "this is not avro").await;
    let ids = [ids, p.post_keys("ok2", 1).await].concat();

    let sink = SinkService::start(&p.config, p.admin_port).await;
    let queued = sink.request_run().await;
    let run_id = queued["run_id"].as_str().expect("run_id").to_owned();
    let done = sink.wait_run(&run_id, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["trigger"], "manual");
    assert_eq!(done["dead_letters"], 1, "{done}");
    assert_eq!(done["rows"], 3, "{done}");

    let text = sink.metrics().await;
    assert_eq!(metrics::value(&text, "hooklake_sink_dlq_records_total", &[("topic", &p.keys_topic())]), Some(1.0));
    assert_eq!(runs(&text, "manual", "success"), 1.0);
    assert_eq!(rows_written(&text, &p.keys_table()), 3.0);
    assert_eq!(kafka::record_count(&p.broker.bootstrap(), &format!("{}.dlq", p.keys_topic())), 1);
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), sorted(ids));

    // An unknown run id is a 404 with a JSON reason.
    let r = hooklake_tests::http::client().get(format!("{}/runs/nope", sink.admin)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(sink.stop().await, "the sink stops cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn lag_gauges_rise_while_the_sink_is_idle_and_fall_after_a_run() {
    let p = Pipeline::start(TestLake::sqlite()).await;
    let sink = SinkService::start(&p.config, p.admin_port).await;
    let topic = p.keys_topic();
    p.post_keys("lag", 7).await;
    eventually(Duration::from_secs(30), "lag_messages = 7", || async {
        (lag_messages(&sink.metrics().await, &topic) == 7.0).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "lag_seconds ≥ 2", || async {
        let v = metrics::value(&sink.metrics().await, "hooklake_sink_lag_seconds", &[("topic", &topic)])?;
        (v >= 2.0).then_some(())
    })
    .await;
    let text = sink.metrics().await;
    assert_eq!(
        runs(&text, "manual", "success") + runs(&text, "schedule", "success") + runs(&text, "lag", "success"),
        0.0
    );

    let run = sink.request_run().await;
    let done = sink.wait_run(run["run_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let text = sink.metrics().await;
    assert_eq!(lag_messages(&text, &topic), 0.0, "lag after the run:\n{text}");
    assert_eq!(metrics::value(&text, "hooklake_sink_lag_seconds", &[("topic", &topic)]), Some(0.0));
    assert!(
        metrics::value(&text, "hooklake_sink_last_success_timestamp_seconds", &[("table", &p.keys_table())]).unwrap()
            > 0.0
    );
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schedule_starts_runs() {
    let p = Pipeline::start_with(TestLake::sqlite(), "every 2s", None).await;
    let ids = p.post_keys("sched", 3).await;
    let sink = SinkService::start(&p.config, p.admin_port).await;
    let table = p.keys_table();
    eventually(Duration::from_secs(60), "a scheduled run loading 3 rows", || async {
        let text = sink.metrics().await;
        (runs(&text, "schedule", "success") >= 1.0 && rows_written(&text, &table) == 3.0).then_some(())
    })
    .await;
    assert_eq!(runs(&sink.metrics().await, "manual", "success"), 0.0);
    assert_eq!(p.lake.read(&table).await.message_ids(), sorted(ids));
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lag_trigger_starts_a_run_over_its_threshold() {
    let p = Pipeline::start_with(TestLake::sqlite(), "off", Some(5)).await;
    let sink = SinkService::start(&p.config, p.admin_port).await;
    let topic = p.keys_topic();
    let mut ids = p.post_keys("under", 4).await;
    // Below the threshold: the gauges see the records, no run starts.
    eventually(Duration::from_secs(30), "lag_messages = 4", || async {
        (lag_messages(&sink.metrics().await, &topic) == 4.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs(&sink.metrics().await, "lag", "success"), 0.0, "no run below the threshold");

    ids.extend(p.post_keys("over", 2).await);
    eventually(Duration::from_secs(60), "a lag-triggered run loading 6 rows", || async {
        let text = sink.metrics().await;
        (runs(&text, "lag", "success") >= 1.0 && rows_written(&text, &p.keys_table()) == 6.0).then_some(())
    })
    .await;
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), sorted(ids));
    sink.stop().await;
}

/// The dashboard and the alert rules only use what the services export: every metric and
/// label that deploy/metrics_used.py finds in them is on a live `/metrics`. And the live
/// services export what schemas/metrics.v1.json says: the sink after a run every metric;
/// ingest no metric outside it (librdkafka's gauges come with its first statistics report:
/// tests/it/ingest_kafka_stats.rs checks them).
#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let p = Pipeline::start(TestLake::sqlite()).await;
    p.post_keys("m", 3).await;
    p.post_key("m-00000", "{\"dup\":true}").await;
    // A rejection, so the reason label is exported with a value.
    let r = hooklake_tests::http::client()
        .post(p.ingest.url("keys"))
        .header("content-type", "application/json")
        .header("x-api-key", "wrong")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    let sink = SinkService::start(&p.config, p.admin_port).await;
    let run = sink.request_run().await;
    let done = sink.wait_run(run["run_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");

    // librdkafka's per-broker and per-topic gauges appear with its first statistics report
    // after traffic (every 5 s by default).
    let ingest_text = eventually(Duration::from_secs(30), "librdkafka's statistics", || async {
        let text = p.ingest.metrics().await;
        text.contains("hooklake_ingest_kafka_batch_avg_messages{").then_some(text)
    })
    .await;
    let sink_text = sink.metrics().await;
    metrics::assert_contract("ingest", &ingest_text, Coverage::Exported);
    metrics::assert_contract("sink", &sink_text, Coverage::All);
    let mut exported = metrics::families(&ingest_text);
    exported.extend(metrics::families(&sink_text));
    let script = tools::repo_root().join("deploy/metrics_used.py");
    let used = python::run(script.to_str().unwrap(), &[], "", Duration::from_secs(60)).await;
    let used: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&used).expect("metrics_used.py JSON");
    assert!(used.len() >= 10, "metrics_used.py found too little: {used:?}");
    let mut missing = Vec::new();
    for (name, labels) in &used {
        match exported.get(name) {
            None => missing.push(format!("{name} (not exported)")),
            Some(have) => {
                for label in labels.as_array().unwrap().iter().map(|l| l.as_str().unwrap()) {
                    let is_histogram_le = label == "le";
                    if !is_histogram_le && !have.contains(label) {
                        missing.push(format!("{name}{{{label}}}"));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "used by deploy/ but not exported: {missing:?}\nexported: {exported:?}");
    sink.stop().await;
}

/// A table whose offsets are past the end of its topic (the topic was deleted and
/// recreated) makes runs fail with a reason and a gauge, and the table is left alone:
/// loading the new topic from its start would skip or duplicate records silently.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_ahead_of_its_recreated_topic_fails_runs_loudly() {
    // Its own broker: tansu's topic deletion disturbs the other tests' topics.
    let p = Pipeline::start_on(TestBroker::Own(Broker::start()), TestLake::sqlite(), "off", None).await;
    let ids = p.post_keys("before", 6).await;
    let sink = SinkService::start(&p.config, p.admin_port).await;
    let run = sink.request_run().await;
    let done = sink.wait_run(run["run_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let topic = p.keys_topic();
    let ahead = |text: &str| metrics::value(text, "hooklake_sink_offsets_ahead_partitions", &[("topic", &topic)]);
    assert_eq!(ahead(&sink.metrics().await), Some(0.0));

    kafka::recreate_topic(&p.broker.bootstrap(), &topic, 2).await;
    let run = sink.request_run().await;
    let done = sink.wait_run(run["run_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["state"], "failed", "{done}");
    let error = done["error"].as_str().unwrap_or_default();
    assert!(error.contains("ahead of the topic") && error.contains(&topic), "{error}");
    assert!(ahead(&sink.metrics().await).unwrap_or(0.0) >= 1.0, "{}", sink.metrics().await);
    assert_eq!(runs(&sink.metrics().await, "manual", "failure"), 1.0);
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), sorted(ids), "the table is untouched");
    assert!(sink.stop().await);
}

/// A table whose dead letters cannot reach their DLQ (missing, and the sink may not
/// create topics) keeps its offsets while the other tables commit; the run fails with
/// the reason. With `kafka.create_topics` on, the sink creates the DLQ itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_dlq_holds_back_only_its_table_and_the_sink_creates_it() {
    let p = Pipeline::start(TestLake::sqlite()).await;
    let brokers = p.broker.bootstrap();
    let ids = p.post_keys("ok", 2).await;
    // The sink reads `std` from a topic that has no DLQ (ingest created only its own).
    let bare = format!("{}.bare", p.prefix);
    kafka::create_topic(&brokers, &bare, 2).await;
    kafka::produce_raw(&brokers, &bare, "junk", "this is not avro").await;
    let bare_std = p.test_config.clone().with_source("std", |s| s.topic(&bare));
    let creates = sink::write_config(&p.lake.path(), &bare_std.to_toml());
    let no_create = sink::write_config(&p.lake.path(), &bare_std.create_topics(false).to_toml());

    let sink = SinkService::start(&no_create, p.admin_port).await;
    let run = sink.request_run().await;
    let done = sink.wait_run(run["run_id"].as_str().unwrap(), Duration::from_secs(180)).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(done["error"].as_str().unwrap_or_default().contains(&format!("{bare}.dlq")), "{done}");
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), sorted(ids.clone()), "the other table committed");
    let std = p.lake.read(&p.std_table()).await;
    for partition in 0..2 {
        let offset = std.property(&format!("hooklake.offset.{bare}.{partition}"));
        assert!(offset.is_none(), "the blocked table kept its offsets: {offset:?}");
    }
    assert!(sink.stop().await);

    let sink = SinkService::start(&creates, p.admin_port).await;
    let run = sink.request_run().await;
    let done = sink.wait_run(run["run_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["dead_letters"], 1, "{done}");
    assert_eq!(kafka::record_count(&brokers, &format!("{bare}.dlq")), 1);
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), sorted(ids), "nothing loaded twice");
    assert!(sink.stop().await);
}

/// A sink started while its catalog (PostgreSQL) cannot be reached stays up and waits:
/// `/livez` answers, `/readyz`, `/metrics` and `POST /runs` answer 503 with the reason
/// (never the catalog's password), ingest keeps taking webhooks, and once the catalog can
/// be reached the sink becomes ready and loads everything taken meanwhile, once. Before,
/// the process exited and waited for its orchestrator's restart back-off. A catalog that
/// goes away between runs fails the run that finds it gone; the next run after it comes
/// back loads the rest, nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_unreachable_at_start_or_between_runs_is_waited_for_and_loses_nothing() {
    let p = Pipeline::start(TestLake::postgres()).await;
    // The catalog's database, reached through a port where nothing listens yet.
    let database = p.lake.uri.rsplit('/').next().expect("a database in the URI").to_owned();
    let port = free_port();
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let uri = format!("postgres://postgres:{password}@127.0.0.1:{port}/{database}");
    let config = sink::write_config(&p.lake.path(), &p.test_config.clone().set(&["catalog", "uri"], uri).to_toml());
    // A plain TCP relay from that port to the PostgreSQL server: the catalog reachable.
    let relay = || tools::delay_proxy(port, 5432, Duration::ZERO, None);
    let before = p.post_keys("before", 3).await;

    let log = p.lake.path().join("sink.log");
    let sink = SinkService::start_waiting(&config, p.admin_port, Some(&log)).await;
    let http = hooklake_tests::http::client();
    let readyz = format!("{}/readyz", sink.admin);
    let ready_is = |want: u16| {
        let (http, readyz) = (http.clone(), readyz.clone());
        async move {
            eventually(Duration::from_secs(90), &format!("/readyz {want}"), || async {
                let r = http.get(&readyz).send().await.ok()?;
                let status = r.status().as_u16();
                let body = r.text().await.ok()?;
                (status == want && (want == 200 || body.contains("catalog"))).then_some(body)
            })
            .await
        }
    };
    let not_ready = ready_is(503).await;
    assert!(not_ready.starts_with("not ready: starting: "), "{not_ready}");
    let run = http.post(format!("{}/runs", sink.admin)).send().await.expect("POST /runs");
    assert_eq!(run.status().as_u16(), 503, "no run is queued before the sink has started");
    assert!(run.headers().contains_key("retry-after"));
    let body: serde_json::Value = run.json().await.expect("a JSON reason");
    assert_eq!(body["error"], "starting", "{body}");
    let scrape = http.get(format!("{}/metrics", sink.admin)).send().await.expect("GET /metrics");
    assert_eq!(scrape.status().as_u16(), 503, "a failed scrape is what HooklakeTargetDown sees");
    let waiting = p.post_keys("waiting", 2).await;
    // A replica told to stop while it waits stops at once, cleanly.
    let replica = SinkService::start_waiting(&config, free_port(), None).await;
    assert!(replica.stop().await, "a waiting sink stops cleanly on SIGTERM");

    let mut catalog = relay().await;
    ready_is(200).await;
    let run = sink.request_run().await;
    let done = sink.wait_run(run["run_id"].as_str().expect("run_id"), Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["rows"], 5, "{done}");
    assert_eq!(runs(&sink.metrics().await, "manual", "success"), 1.0);

    // The catalog goes away between runs, and comes back.
    catalog.kill().await.expect("the relay stops");
    let outage = p.post_keys("outage", 2).await;
    let gone = ready_is(503).await;
    // A probe answers within its own bound (3 s), not the SQL pool's 30 s.
    let asked = std::time::Instant::now();
    let probe = http.get(&readyz).send().await.expect("GET /readyz");
    assert_eq!(probe.status().as_u16(), 503);
    assert!(asked.elapsed() < Duration::from_secs(10), "/readyz took {:?} with the catalog gone", asked.elapsed());
    let run = sink.request_run().await;
    let failed = sink.wait_run(run["run_id"].as_str().expect("run_id"), Duration::from_secs(120)).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let _catalog = relay().await;
    ready_is(200).await;
    let run = sink.request_run().await;
    let done = sink.wait_run(run["run_id"].as_str().expect("run_id"), Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["rows"], 2, "{done}");
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), sorted([before, waiting, outage].concat()));
    let text = sink.metrics().await;
    assert_eq!((runs(&text, "manual", "success"), runs(&text, "manual", "failure")), (2.0, 1.0));

    let logged = sink.log();
    assert!(logged.contains("the sink cannot start yet"), "each failed attempt is logged:\n{logged}");
    for (what, text) in
        [("/readyz", &not_ready), ("/readyz", &gone), ("the failed run", &failed.to_string()), ("the log", &logged)]
    {
        assert!(!text.contains(&password), "{what} shows the catalog's password");
    }
    assert!(sink.stop().await, "the sink stops cleanly on SIGTERM");
}

/// A table commit whose connection to the catalog (PostgreSQL) breaks at its `COMMIT`:
/// the sink cannot know the outcome, so its run fails, whichever it was. Once the server
/// committed and only the answer was lost: the table holds the rows and refers to their
/// files, and the next run starts after them. Once the connection broke before the
/// `COMMIT` reached the server: the server rolled the commit back, and the next run
/// loads those rows. Every row is in the table once. (Before hooklake's patch to
/// iceberg-catalog-sql, the second run reported success with rows the table did not
/// hold: the catalog ignored its COMMIT's error.)
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_cut_off_at_its_commit_statement_fails_its_run_and_loses_nothing() {
    let p = Pipeline::start(TestLake::postgres()).await;
    let port = free_port();
    let uri = p.lake.uri_through(port);
    let config = sink::write_config(&p.lake.path(), &p.test_config.clone().set(&["catalog", "uri"], uri).to_toml());
    let relay = tools::delay_proxy(port, 5432, Duration::ZERO, None).await;
    let log = p.lake.path().join("sink.log");
    let sink = SinkService::start_logged(&config, p.admin_port, Some(&log)).await;
    let run_to_end = |want: &'static str| {
        let sink = &sink;
        async move {
            let run = sink.request_run().await;
            let done = sink.wait_run(run["run_id"].as_str().expect("run_id"), Duration::from_secs(120)).await;
            assert_eq!(done["state"], want, "{done}");
            done
        }
    };
    let metadata = || p.lake.metadata_location(&p.keys_table());
    let first = p.post_keys("first", 3).await;
    assert_eq!(run_to_end("succeeded").await["rows"], 3);
    let committed = metadata();
    assert!(committed.ends_with(".metadata.json"), "{committed}");

    // The server commits; the answer is lost.
    let answer_lost = p.post_keys("answer-lost", 4).await;
    tools::signal_proxy(&relay, "-USR2");
    let failed = run_to_end("failed").await;
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("catalog: commit")), "{failed}");
    assert_ne!(metadata(), committed, "the commit whose answer was lost landed");
    let committed = metadata();
    // Every file the table refers to is there: pyiceberg reads them all.
    let loaded = sorted([first.clone(), answer_lost.clone()].concat());
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), loaded);

    // The connection breaks before the COMMIT reaches the server: rolled back.
    let rolled_back = p.post_keys("rolled-back", 2).await;
    tools::signal_proxy(&relay, "-HUP");
    let failed = run_to_end("failed").await;
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("catalog: commit")), "{failed}");
    assert_eq!(metadata(), committed, "the commit was rolled back");
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), loaded);

    let after = p.post_keys("after", 1).await;
    let done = run_to_end("succeeded").await;
    assert_eq!(done["rows"], 3, "the rolled-back rows and the new one, not the landed ones again: {done}");
    assert_eq!(
        p.lake.read(&p.keys_table()).await.message_ids(),
        sorted([first, answer_lost, rolled_back, after].concat())
    );
    let text = sink.metrics().await;
    assert_eq!((runs(&text, "manual", "success"), runs(&text, "manual", "failure")), (2.0, 2.0));
    assert!(sink.stop().await, "the sink stops cleanly on SIGTERM");
}
