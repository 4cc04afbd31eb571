//! Refused requests in the log, without flooding it: each key (a reply
//! address, a caller) gets its own line at most once a minute, and a
//! sender that varies the key with every request cannot grow the server's
//! memory: past [`REMEMBERED`] keys, refusals are summed up once a minute.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long a key stays quiet in the log after its line.
const QUIET_FOR: Duration = Duration::from_secs(60);

/// How many distinct keys are remembered at once.
const REMEMBERED: usize = 1024;

/// Which refusals to log.
#[derive(Debug, Default)]
pub(super) struct RefusalLog(Mutex<Refusals>);

#[derive(Debug, Default)]
struct Refusals {
    /// When each key was last logged.
    logged: HashMap<String, Instant>,
    /// Refusals of keys not remembered, since `unlisted_since`.
    unlisted: u64,
    unlisted_since: Option<Instant>,
}

/// What to log for a refusal.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Note {
    /// A line of its own for this key.
    Line,
    /// One line for this many refusals of keys too many to log each, over
    /// the last minute.
    Summary(u64),
    /// Nothing: logged lately.
    Quiet,
}

impl RefusalLog {
    /// Notes a refusal for `key` and says what to log.
    pub(super) fn note(&self, key: &str) -> Note {
        let now = Instant::now();
        let mut refusals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = refusals.logged.get(key)
            && now.duration_since(*last) < QUIET_FOR
        {
            return Note::Quiet;
        }
        if refusals.logged.len() >= REMEMBERED {
            refusals
                .logged
                .retain(|_, last| now.duration_since(*last) < QUIET_FOR);
        }
        if refusals.logged.len() < REMEMBERED {
            refusals.logged.insert(key.to_owned(), now);
            return Note::Line;
        }
        refusals.unlisted += 1;
        let since = *refusals.unlisted_since.get_or_insert(now);
        if now.duration_since(since) >= QUIET_FOR {
            let count = std::mem::take(&mut refusals.unlisted);
            refusals.unlisted_since = Some(now);
            return Note::Summary(count);
        }
        Note::Quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_logged_once_a_minute_and_memory_is_bounded() {
        let log = RefusalLog::default();
        assert_eq!(log.note("a"), Note::Line);
        assert_eq!(log.note("a"), Note::Quiet);
        for n in 0..(REMEMBERED + 10) {
            log.note(&format!("victim-{n}"));
        }
        let refusals = log.0.lock().unwrap();
        assert_eq!(refusals.logged.len(), REMEMBERED);
        assert_eq!(refusals.unlisted, 11);
    }
}
