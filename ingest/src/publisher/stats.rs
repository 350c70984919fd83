//! The client context of each producer generation: it keeps librdkafka's last statistics
//! report (every `statistics.interval.ms`), which `/metrics` turns into gauges
//! ([`crate::metrics::KafkaMetrics`]).

use std::sync::{Arc, Mutex};

use rdkafka::{ClientContext, Statistics};

/// Cloned into the producer; the clone in [`super::generations::Generation`] reads what
/// the producer's callback stored.
#[derive(Debug, Clone, Default)]
pub struct StatsContext {
    last: Arc<Mutex<Option<Arc<Statistics>>>>,
}

impl StatsContext {
    /// The last report, if one arrived yet.
    pub fn last(&self) -> Option<Arc<Statistics>> {
        self.last.lock().expect("not poisoned").clone()
    }
}

impl ClientContext for StatsContext {
    /// Runs on librdkafka's polling thread; the default would log the whole report.
    fn stats(&self, statistics: Statistics) {
        *self.last.lock().expect("not poisoned") = Some(Arc::new(statistics));
    }
}
