//! The progress bar of `hooklake sink --once` (and of `hooklake dev`'s last run) on a
//! terminal: records of the backlog loaded so far.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug)]
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar on stderr when it is a terminal; hidden otherwise (logs and CI stay clean).
    pub fn on_terminal() -> Self {
        let target =
            if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} loading {wide_bar} {human_pos}/{human_len} records ({per_sec}, {eta} left)",
            )
            .expect("a valid template"),
        );
        Self(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl hooklake_sink::Progress for Bar {
    fn planned(&self, records: u64) {
        self.0.set_length(records);
        self.0.set_position(0);
        // Draw now, and keep the spinner turning while the first fetch is on its way.
        self.0.tick();
        self.0.enable_steady_tick(std::time::Duration::from_millis(200));
    }

    fn advanced(&self, records: u64) {
        self.0.inc(records);
    }
}
