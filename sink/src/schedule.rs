//! When scheduled runs happen: `every <duration>`, `hourly`, `daily`, a cron expression
//! (5 fields, UTC), or `off`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;

#[derive(Debug, Clone)]
pub enum Schedule {
    Off,
    Every(Duration),
    Cron(Box<Cron>),
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "off" | "never" | "" => return Ok(Self::Off),
            "hourly" => return Self::parse("0 * * * *"),
            "daily" => return Self::parse("0 0 * * *"),
            _ => {}
        }
        if let Some(d) = t.strip_prefix("every ") {
            let d = humantime::parse_duration(d.trim()).map_err(|e| format!("`{t}`: {e}"))?;
            if d < Duration::from_secs(1) {
                return Err(format!("`{t}`: the interval must be at least 1s"));
            }
            return Ok(Self::Every(d));
        }
        let cron: Cron = t.parse().map_err(|e| {
            format!("`{t}` is not `every <duration>`, `hourly`, `daily`, `off` or a cron expression: {e}")
        })?;
        Ok(Self::Cron(Box::new(cron)))
    }

    /// The next time a run is due after `now`; `None` when off.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Off => None,
            Self::Every(d) => Some(now + chrono::Duration::from_std(*d).ok()?),
            Self::Cron(c) => c.find_next_occurrence(&now, false).ok(),
        }
    }

    /// The nominal interval, for "oldest unloaded event older than twice the schedule".
    pub fn interval(&self) -> Option<Duration> {
        match self {
            Self::Off => None,
            Self::Every(d) => Some(*d),
            Self::Cron(c) => {
                let now = Utc::now();
                let a = c.find_next_occurrence(&now, false).ok()?;
                let b = c.find_next_occurrence(&a, false).ok()?;
                (b - a).to_std().ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn schedules_parse_and_step() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 10, 7, 30).unwrap();
        let every = Schedule::parse("every 15m").unwrap();
        assert_eq!(every.next_after(now), Some(now + chrono::Duration::minutes(15)));
        let hourly = Schedule::parse("hourly").unwrap();
        assert_eq!(hourly.next_after(now), Some(Utc.with_ymd_and_hms(2026, 11, 24, 11, 0, 0).unwrap()));
        let daily = Schedule::parse("daily").unwrap();
        assert_eq!(daily.next_after(now), Some(Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()));
        let cron = Schedule::parse("*/10 * * * *").unwrap();
        assert_eq!(cron.next_after(now), Some(Utc.with_ymd_and_hms(2026, 11, 24, 10, 10, 0).unwrap()));
        assert_eq!(cron.interval(), Some(Duration::from_secs(600)));
        assert!(Schedule::parse("off").unwrap().next_after(now).is_none());
        assert!(Schedule::parse("sometimes").is_err());
        assert!(Schedule::parse("every 0s").is_err());
    }
}
