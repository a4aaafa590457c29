//! Login throttling: failures are counted per account and per client address over a window;
//! past the limit, that key is refused for a while, then counting starts afresh. A lock-out always
//! ends, so an attacker can delay the real owner but never lock them out for good.

use crate::config::ServeConfig;

/// The stored state of one throttle key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub failures: i32,
    pub window_start: i64,
    pub locked_until: Option<i64>,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_failures: u32,
    pub window_micros: i64,
    pub lockout_micros: i64,
}

impl Limits {
    pub fn for_account(c: &ServeConfig) -> Limits {
        Limits::new(c.login_max_failures, c.login_window_secs, c.login_lockout_secs)
    }

    pub fn for_address(c: &ServeConfig) -> Limits {
        Limits::new(c.login_max_failures_per_address, c.login_window_secs, c.login_lockout_secs)
    }

    fn new(max_failures: u32, window_secs: u64, lockout_secs: u64) -> Limits {
        let micros = |s: u64| i64::try_from(s).unwrap_or(i64::MAX / 1_000_000) * 1_000_000;
        Limits {
            max_failures: max_failures.max(1),
            window_micros: micros(window_secs),
            lockout_micros: micros(lockout_secs),
        }
    }
}

pub fn account_key(email: &str) -> String {
    format!("account:{email}")
}

pub fn address_key(address: &str) -> String {
    format!("address:{address}")
}

/// Seconds until the key may try again, if it is locked now.
pub fn locked_for(state: Option<&Throttle>, now: i64) -> Option<u64> {
    let until = state?.locked_until?;
    (until > now).then(|| u64::try_from((until - now + 999_999) / 1_000_000).unwrap_or(1))
}

/// The state after one more failure, and whether this failure imposed a lock-out.
pub fn after_failure(state: Option<&Throttle>, now: i64, limits: Limits) -> (Throttle, bool) {
    let (failures, window_start) = match state {
        Some(s) if s.locked_until.is_none_or(|u| u <= now) && now - s.window_start <= limits.window_micros => {
            (s.failures + 1, s.window_start)
        }
        _ => (1, now),
    };
    if u32::try_from(failures).unwrap_or(u32::MAX) >= limits.max_failures {
        (Throttle { failures: 0, window_start: now, locked_until: Some(now + limits.lockout_micros) }, true)
    } else {
        (Throttle { failures, window_start, locked_until: None }, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_failures: 3, window_micros: 100, lockout_micros: 50 };

    #[test]
    fn third_failure_in_window_locks_then_lock_expires() {
        let (s1, l1) = after_failure(None, 0, LIMITS);
        let (s2, l2) = after_failure(Some(&s1), 10, LIMITS);
        let (s3, l3) = after_failure(Some(&s2), 20, LIMITS);
        assert_eq!((l1, l2, l3), (false, false, true));
        assert_eq!(locked_for(Some(&s3), 30), Some(1));
        assert_eq!(locked_for(Some(&s3), 70), None);
        let (s4, l4) = after_failure(Some(&s3), 80, LIMITS);
        assert_eq!((s4.failures, l4), (1, false));
    }

    #[test]
    fn failures_outside_the_window_start_a_new_count() {
        let (s1, _) = after_failure(None, 0, LIMITS);
        let (s2, _) = after_failure(Some(&s1), 10, LIMITS);
        let (s3, locked) = after_failure(Some(&s2), 500, LIMITS);
        assert_eq!((s3.failures, locked), (1, false));
    }
}
