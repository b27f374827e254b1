//! Records that hold between two dates (counterparties, parties): one rule for when they are in
//! effect and for ending one early.

use crate::Timestamp;

/// Whether a record from `from` until `until` (exclusive; none: open-ended) holds at `at`.
pub fn in_effect(from: Timestamp, until: Option<Timestamp>, at: Timestamp) -> bool {
    from <= at && until.is_none_or(|u| at < u)
}

/// The end date of such a record ended at `now`: now, or its own earlier end, and never before
/// it began.
pub fn ended_until(from: Timestamp, until: Option<Timestamp>, now: Timestamp) -> Timestamp {
    until.map_or(now, |u| u.min(now)).max(from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn holds_from_its_start_until_its_end_and_ends_no_earlier_than_it_began() {
        let (from, until) = (datetime!(2026-12-01 00:00 UTC), datetime!(2026-12-10 00:00 UTC));
        assert!(in_effect(from, Some(until), from) && !in_effect(from, Some(until), until));
        assert!(in_effect(from, None, datetime!(2030-01-01 00:00 UTC)));
        assert!(!in_effect(from, None, datetime!(2026-11-30 00:00 UTC)));
        let now = datetime!(2026-12-05 00:00 UTC);
        assert_eq!(ended_until(from, Some(until), now), now);
        assert_eq!(ended_until(from, Some(now), until), now, "an earlier end stands");
        assert_eq!(ended_until(until, None, now), until, "a record not begun yet ends as it begins");
    }
}
