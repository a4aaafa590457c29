//! The server's notion of "now", injectable so that session expiry and throttling can be tested
//! without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// Microseconds since the Unix epoch: the unit every stored time uses.
pub type Micros = i64;

#[derive(Clone)]
pub enum Clock {
    System,
    /// A clock that only moves when told to; tests share it with the server they start.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn manual_at(start: DateTime<Utc>) -> Self {
        Clock::Manual(Arc::new(AtomicI64::new(start.timestamp_micros())))
    }

    pub fn now_micros(&self) -> Micros {
        match self {
            Clock::System => Utc::now().timestamp_micros(),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        from_micros(self.now_micros())
    }

    /// Moves a manual clock forward; has no effect on the system clock.
    pub fn advance(&self, by: std::time::Duration) {
        if let Clock::Manual(t) = self {
            let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
            t.fetch_add(micros, Ordering::SeqCst);
        }
    }
}

pub fn from_micros(micros: Micros) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
