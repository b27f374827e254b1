//! Exit codes. Scripts can rely on these (documented in the README).

use std::fmt;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Something unexpected (a server error, an I/O failure).
    Failure = 1,
    /// Bad command line (clap uses 2 as well).
    Usage = 2,
    /// The input was refused as invalid (HTTP 400/413).
    Invalid = 3,
    /// Not authenticated, or the role may not do this (HTTP 401/403).
    Denied = 4,
    /// No such account, key, operator or entry (HTTP 404).
    NotFound = 5,
    /// Conflicts with the current state: duplicate, illegal transition (HTTP 409).
    Conflict = 6,
    /// Refused by the key policy (HTTP 422); the message names the rule.
    Policy = 7,
    /// The audit log or a proof failed verification.
    AuditFailed = 8,
    /// The server could not be reached.
    Unreachable = 9,
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

pub fn code_of(err: &anyhow::Error) -> ExitCode {
    let exit = err.downcast_ref::<Failure>().map_or(Exit::Failure, |f| f.exit);
    ExitCode::from(exit as u8)
}
