//! The bounded soak that scripts/soak.sh runs (ignored in the ordinary test run): the
//! pipeline of the fault tests under traffic for `SOAK_SECONDS` (default 600), with one
//! fault at a time injected at random moments — the sink killed and restarted, the broker
//! killed and restarted, the warehouse or the catalog unavailable for a few seconds,
//! ingest stopped and restarted, a second sink replica joining and leaving, ingest's
//! connections flooded by clients that stall (during which webhooks must still be answered
//! 200). Then traffic
//! stops, the sink catches up, and the figures are printed; a lost or duplicated row, or
//! an offset out of place, fails it. `SOAK_SEED` replays a run's choice of faults.
//! `SOAK_CATALOG=postgres` puts the catalog on PostgreSQL behind a relay, whose faults
//! replace the SQLite catalog's lock: the catalog cut off for seconds, and a table
//! commit cut off at its `COMMIT`, after PostgreSQL committed it or before.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use hooklake_tests::{
    faults::{TableDirs, freeze, lock_catalog},
    metrics,
    sink::SinkService,
    traffic::Traffic,
};

use super::{
    LOAD,
    rig::{MAX_CONNECTIONS, Rig},
};

const FAULTS: [&str; 7] = [
    "sink killed",
    "broker killed",
    "warehouse unavailable",
    "catalog locked",
    "ingest stopped",
    "replica joined and left",
    "connections flooded",
];
/// With a PostgreSQL catalog, "catalog locked" gives way to these three.
const POSTGRES_FAULTS: [&str; 9] = [
    "sink killed",
    "broker killed",
    "warehouse unavailable",
    "catalog cut off",
    "commit answer lost",
    "commit broken",
    "ingest stopped",
    "replica joined and left",
    "connections flooded",
];

/// xorshift64*: reproducible from its seed, no dependency for it.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    /// A duration of `from..to` seconds, in tenths.
    fn secs(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from * 1000 + self.below((to - from) * 10) * 100)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "minutes long: scripts/soak.sh runs it"]
async fn soak() {
    let seconds = env_u64("SOAK_SECONDS").unwrap_or(600);
    let seed = env_u64("SOAK_SEED").unwrap_or_else(hooklake_tests::unix_now).max(1);
    let postgres = match std::env::var("SOAK_CATALOG").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("SOAK_CATALOG={other}: sqlite or postgres"),
    };
    let faults: &[&str] = if postgres { &POSTGRES_FAULTS } else { &FAULTS };
    println!(
        "soak: {seconds} s, seed {seed} (SOAK_SEED={seed} replays the faults), the catalog on {}",
        if postgres { "PostgreSQL" } else { "SQLite" }
    );
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut rig = if postgres { Rig::start_on_postgres(true).await } else { Rig::start(true).await };
    let mut sink = rig.sink().await;
    let traffic = rig.traffic("soak", LOAD);
    traffic.wait_accepted(100, Duration::from_secs(60)).await;
    let mut injected: BTreeMap<&str, u32> = BTreeMap::new();
    let until = started + Duration::from_secs(seconds);
    while Instant::now() < until {
        tokio::time::sleep(rng.secs(2, 8)).await;
        let kind = faults[rng.below(faults.len() as u64) as usize];
        println!("[{:>4}s] {kind}", started.elapsed().as_secs());
        sink = inject(kind, &mut rig, sink, &traffic, &mut rng).await;
        *injected.entry(kind).or_default() += 1;
    }
    let report = traffic.stop().await;
    println!("[{:>4}s] traffic stopped; waiting for the sink to catch up", started.elapsed().as_secs());
    let audit = rig.audit(&report, &[&sink]).await;
    let total: u32 = injected.values().sum();
    println!("webhooks sent:    {}", report.sent());
    println!("answered 200:     {}", report.accepted.len());
    println!("answers:          {:?}", report.answers);
    println!("faults injected:  {total} {injected:?}");
    println!("rows in table:    {}", audit.rows);
    println!("rows lost:        {}", audit.lost.len());
    println!("rows duplicated:  {}", audit.duplicated);
    println!("loaded though not answered 200: {}", audit.loaded_though_refused);
    println!("second copies dropped as duplicates (resends): {}", audit.copies_dropped);
    println!("offset problems:  {}", if audit.offsets.is_empty() { "none".into() } else { audit.offsets.join("; ") });
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    rig.assert_clean(&audit, &report, "soak");
}

/// Injects one fault of `kind` and waits until it is over; returns the sink service
/// (a new one when it was killed).
async fn inject(kind: &str, rig: &mut Rig, sink: SinkService, traffic: &Traffic, rng: &mut Rng) -> SinkService {
    match kind {
        "sink killed" => {
            sink.kill().await;
            return rig.sink().await;
        }
        "broker killed" => {
            tokio::task::block_in_place(|| rig.broker().kill());
            tokio::time::sleep(rng.secs(2, 8)).await;
            tokio::task::block_in_place(|| rig.broker().restart());
        }
        "warehouse unavailable" => {
            if let Some(dirs) = TableDirs::find(&rig.warehouse()) {
                let folders = if rng.below(2) == 0 { dirs.data } else { vec![dirs.metadata] };
                let _frozen = freeze(&folders);
                tokio::time::sleep(rng.secs(2, 5)).await;
            }
        }
        "catalog locked" => lock_catalog(&rig.catalog_db(), rng.secs(1, 4)).await,
        "catalog cut off" => {
            rig.cut_catalog().await;
            tokio::time::sleep(rng.secs(1, 6)).await;
            rig.restore_catalog().await;
        }
        // Each is consumed by the next table commit; a run fails with it within seconds.
        "commit answer lost" => {
            rig.lose_next_commit_answer();
            tokio::time::sleep(rng.secs(2, 4)).await;
        }
        "commit broken" => {
            rig.break_next_commit();
            tokio::time::sleep(rng.secs(2, 4)).await;
        }
        "ingest stopped" => {
            assert!(rig.ingest.terminate().await, "ingest exits 0 on SIGTERM:\n{}", rig.ingest.log());
            tokio::time::sleep(rng.secs(1, 3)).await;
            rig.ingest.restart().await;
        }
        // Twice the cap: the rest wait in the backlog, and get in as ingest closes the ones
        // holding slots after `at_cap_timeout` (1 s). The traffic goes on meanwhile.
        "connections flooded" => {
            let flood = rig.flood(2 * MAX_CONNECTIONS).await;
            traffic.wait_accepted(20, Duration::from_secs(20)).await;
            tokio::time::sleep(rng.secs(2, 6)).await;
            drop(flood);
            let text = hooklake_tests::http::get_text(&format!("{}/metrics", rig.ingest.admin())).await;
            let closed = metrics::value(&text, "hooklake_ingest_connections_closed_total", &[("reason", "at_cap")]);
            let cut = metrics::value(
                &text,
                "hooklake_ingest_rejected_total",
                &[("source", "keys"), ("reason", "body_timeout")],
            );
            println!("       since ingest started: {closed:?} connections closed at the cap, {cut:?} bodies cut (408)");
        }
        "replica joined and left" => {
            let replica = rig.sink().await;
            tokio::time::sleep(rng.secs(5, 15)).await;
            replica.stop().await;
        }
        other => unreachable!("no fault {other}"),
    }
    sink
}
