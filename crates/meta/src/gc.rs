//! What a collector decides about one queued blob, from the facts both backends read the same
//! way (docs/gc.md). Only the decision lives here; each backend reads the facts and applies the
//! verdict in its own transactions.

/// What a look at a queued blob decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Referenced, or no longer a live blob: leave the queue (a later event queues it again).
    Drop,
    /// Linked or pinned within the grace period: look again at this time.
    Defer(i64),
    /// Unused for a whole grace period: may be marked, or swept if already marked.
    Eligible,
}

/// The facts about one queued blob that a verdict depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    /// The blob row exists and is not being deleted.
    pub live: bool,
    /// A manifest references it.
    pub referenced: bool,
    /// When it was last linked into a repository (uploaded, mounted, touched), if it is.
    pub newest_link: Option<i64>,
    /// An upload is about to publish it.
    pub pinned: bool,
}

impl Facts {
    pub(crate) fn verdict(&self, now_ms: i64, grace_ms: i64) -> Verdict {
        if !self.live || self.referenced {
            Verdict::Drop
        } else if let Some(t) = self.newest_link.filter(|t| *t > now_ms - grace_ms) {
            Verdict::Defer(t + grace_ms)
        } else if self.pinned {
            Verdict::Defer(now_ms + grace_ms)
        } else {
            Verdict::Eligible
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: i64 = 1_000;
    const NOW: i64 = 10_000;

    fn facts(live: bool, referenced: bool, newest_link: Option<i64>, pinned: bool) -> Facts {
        Facts {
            live,
            referenced,
            newest_link,
            pinned,
        }
    }

    #[test]
    fn referenced_or_gone_blobs_leave_the_queue() {
        assert_eq!(
            facts(true, true, None, false).verdict(NOW, GRACE),
            Verdict::Drop
        );
        assert_eq!(
            facts(false, false, None, true).verdict(NOW, GRACE),
            Verdict::Drop
        );
    }

    #[test]
    fn recent_links_and_pins_defer() {
        let recent = facts(true, false, Some(NOW - 10), false);
        assert_eq!(recent.verdict(NOW, GRACE), Verdict::Defer(NOW - 10 + GRACE));
        let pinned = facts(true, false, Some(NOW - 5 * GRACE), true);
        assert_eq!(pinned.verdict(NOW, GRACE), Verdict::Defer(NOW + GRACE));
    }

    #[test]
    fn unused_for_a_grace_period_is_eligible() {
        let old = facts(true, false, Some(NOW - GRACE), false);
        assert_eq!(old.verdict(NOW, GRACE), Verdict::Eligible);
        assert_eq!(
            facts(true, false, None, false).verdict(NOW, GRACE),
            Verdict::Eligible
        );
    }
}
