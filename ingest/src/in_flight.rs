//! The in-flight limits: `ingest.max_in_flight` requests and `ingest.max_in_flight_bytes`
//! of request bodies. A request never waits for room: one that finds none is answered 503
//! `overloaded` at once, so each limit is a counter that a request adds to, if it fits,
//! and takes back from when it is done.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A capacity and how much of it the requests in flight hold.
#[derive(Debug)]
pub struct Budget {
    capacity: usize,
    used: AtomicUsize,
}

impl Budget {
    pub const fn new(capacity: usize) -> Self {
        Self { capacity, used: AtomicUsize::new(0) }
    }

    /// Takes `amount`, or nothing when the requests in flight leave less than that.
    pub fn try_take(&self, amount: usize) -> Option<Taken<'_>> {
        let mut share = self.share();
        share.try_grow(amount).then_some(share)
    }

    /// A share of nothing, to grow with [`Taken::try_grow`] as a request's body arrives.
    pub fn share(&self) -> Taken<'_> {
        Taken { budget: self, amount: 0 }
    }

    /// How much is free now. Only a hint: other requests may take it a moment later.
    pub fn available(&self) -> usize {
        self.capacity.saturating_sub(self.in_use())
    }

    /// How much the requests in flight hold now (for `/metrics`).
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// A request's share of a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Taken<'a> {
    budget: &'a Budget,
    amount: usize,
}

impl Taken<'_> {
    /// Adds `amount` to the share if the budget has room for it; false (and nothing taken)
    /// when it has not.
    pub fn try_grow(&mut self, amount: usize) -> bool {
        let budget = self.budget;
        let grown = budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(amount).filter(|&total| total <= budget.capacity)
            })
            .is_ok();
        if grown {
            self.amount += amount;
        }
        grown
    }

    /// Gives back all but `keep` (nothing when the share is `keep` or less).
    pub fn shrink_to(&mut self, keep: usize) {
        if keep < self.amount {
            self.budget.used.fetch_sub(self.amount - keep, Ordering::AcqRel);
            self.amount = keep;
        }
    }

    #[cfg(test)]
    fn amount(&self) -> usize {
        self.amount
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.amount, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn takes_what_fits_and_gets_it_back() {
        let b = Budget::new(100);
        let first = b.try_take(60).unwrap();
        assert!(b.try_take(41).is_none(), "60 + 41 is past 100");
        let mut second = b.try_take(40).unwrap();
        assert_eq!(b.in_use(), 100);
        assert!(b.try_take(1).is_none());
        assert!(b.try_take(0).is_some(), "nothing always fits");
        second.shrink_to(10);
        assert_eq!((b.in_use(), second.amount()), (70, 10));
        second.shrink_to(20);
        assert_eq!((b.in_use(), second.amount()), (70, 10), "shrinking never takes more");
        drop(first);
        assert_eq!(b.in_use(), 10);
        drop(second);
        assert_eq!(b.in_use(), 0);
        assert!(b.try_take(101).is_none() && b.try_take(100).is_some());
    }

    #[test]
    fn a_share_grows_while_there_is_room() {
        let b = Budget::new(100);
        let other = b.try_take(30).unwrap();
        let mut share = b.share();
        assert_eq!((b.in_use(), b.available()), (30, 70));
        assert!(share.try_grow(50));
        assert!(!share.try_grow(21), "30 + 50 + 21 is past 100");
        assert_eq!((b.in_use(), share.amount()), (80, 50), "a refused growth takes nothing");
        assert!(share.try_grow(20));
        assert_eq!(b.available(), 0);
        share.shrink_to(5);
        drop(other);
        assert_eq!((b.in_use(), b.available()), (5, 95));
        drop(share);
        assert_eq!(b.in_use(), 0);
    }

    /// Threads taking and giving back at once never hold more than the capacity together,
    /// and leave nothing behind.
    #[test]
    fn concurrent_takers_stay_within_the_capacity() {
        let b = Arc::new(Budget::new(1000));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (b, peak) = (b.clone(), peak.clone());
                std::thread::spawn(move || {
                    let mut taken = 0usize;
                    for i in 0..50_000usize {
                        if let Some(mut share) = b.try_take(1 + (i * 7 + t) % 300) {
                            peak.fetch_max(b.in_use(), Ordering::Relaxed);
                            share.shrink_to(i % 50);
                            taken += 1;
                        }
                    }
                    taken
                })
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(taken > 1000, "{taken}");
        assert!(peak.load(Ordering::Relaxed) <= 1000, "{peak:?}");
        assert_eq!(b.in_use(), 0);
    }
}
