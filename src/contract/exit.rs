//! The exit codes of a trial process (`vitrun run`, `vitrun trial`): written by `main`, read
//! back by the scheduler.

use super::Status;

/// How a trial process says it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialExit {
    Finished,
    /// An error the trial recorded in the store (or could not start).
    Failed,
    Diverged,
    Pruned,
    /// Another live process holds the trial; this one did nothing.
    Busy,
    /// Stopped by Ctrl-C or SIGTERM after checkpointing what it could.
    Interrupted,
    /// A panic was caught and recorded as `crashed` (the code Rust gives an uncaught one).
    Crashed,
}

impl TrialExit {
    const CODES: [(TrialExit, u8); 7] = [
        (TrialExit::Finished, 0),
        (TrialExit::Failed, 1),
        (TrialExit::Diverged, 3),
        (TrialExit::Pruned, 4),
        (TrialExit::Busy, 5),
        (TrialExit::Interrupted, 130),
        (TrialExit::Crashed, 101),
    ];

    /// The process exit code.
    pub fn code(self) -> u8 {
        Self::CODES
            .iter()
            .find(|(e, _)| *e == self)
            .map(|(_, c)| *c)
            .expect("every exit has a code")
    }

    /// The exit of a trial that ended `status` earlier (a sweep's trial found done).
    pub fn of_done(status: Status) -> TrialExit {
        match status {
            Status::Pruned => TrialExit::Pruned,
            Status::Diverged => TrialExit::Diverged,
            _ => TrialExit::Finished,
        }
    }

    /// The exit a code stands for (`None`: a code no trial exits with on purpose).
    pub fn from_code(code: i32) -> Option<TrialExit> {
        Self::CODES
            .iter()
            .find(|(_, c)| i32::from(*c) == code)
            .map(|(e, _)| *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for (exit, code) in TrialExit::CODES {
            assert_eq!(TrialExit::from_code(i32::from(code)), Some(exit));
            assert_eq!(exit.code(), code);
        }
        assert_eq!(TrialExit::from_code(2), None);
    }
}
