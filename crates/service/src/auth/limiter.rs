//! Login rate limiting: failed attempts counted per account and per source address in fixed
//! windows. In memory, per node; an attacker spreading guesses over N nodes gets N times the
//! budget, which stays small.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Limiter {
    max_failures: u32,
    window: Duration,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Past this many tracked keys, expired windows are dropped.
const PRUNE_AT: usize = 10_000;

impl Limiter {
    pub fn new(max_failures: u32, window: Duration) -> Limiter {
        Limiter {
            max_failures,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `keys` may try again, if any of them used up its failures.
    pub fn blocked(&self, keys: &[&str]) -> Option<u64> {
        let now = Instant::now();
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|k| counts.get(*k))
            .filter(|(start, n)| *n >= self.max_failures && now < *start + self.window)
            .map(|(start, _)| (*start + self.window - now).as_secs().max(1))
            .max()
    }

    pub fn failed(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() > PRUNE_AT {
            let window = self.window;
            counts.retain(|_, (start, _)| now < *start + window);
        }
        for k in keys {
            let e = counts.entry((*k).to_string()).or_insert((now, 0));
            if now >= e.0 + self.window {
                *e = (now, 0);
            }
            e.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_budget_block_until_the_window_ends() {
        let l = Limiter::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            l.failed(&["acct:a", "src:1"]);
        }
        assert_eq!(l.blocked(&["acct:a", "src:1"]), None);
        l.failed(&["acct:a", "src:1"]);
        assert!(l.blocked(&["acct:a"]).is_some());
        assert!(
            l.blocked(&["acct:b", "src:1"]).is_some(),
            "the source is blocked too"
        );
        assert_eq!(l.blocked(&["acct:b", "src:2"]), None);
        let short = Limiter::new(1, Duration::from_millis(0));
        short.failed(&["k"]);
        assert_eq!(
            short.blocked(&["k"]),
            None,
            "an ended window blocks nothing"
        );
    }
}
