//! Commands (`cmd`): slash-delimited, lowercase paths such as `/wasm/run`.
//!
//! A delegated command proves itself and every command below it by whole segments: `/crypto` proves
//! `/crypto/sign` but not `/cryptocurrency`, and `/` proves everything.

use std::fmt;

/// A validated command path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Command(String);

/// Why a string is not a valid command.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid command {command:?}: {reason}")]
pub struct CommandError {
    /// The rejected text.
    pub command: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Command {
    /// Parses a command: it must start with `/`, be lowercase, have no trailing `/` (except `/` itself)
    /// and no empty segments.
    pub fn parse(s: &str) -> Result<Self, CommandError> {
        let err = |reason| {
            Err(CommandError {
                command: s.to_owned(),
                reason,
            })
        };
        if !s.starts_with('/') {
            return err("must start with '/'");
        }
        if s == "/" {
            return Ok(Command(s.to_owned()));
        }
        if s.ends_with('/') {
            return err("must not end with '/'");
        }
        if s.contains("//") {
            return err("must not contain empty segments");
        }
        if s.chars().any(|c| c.is_uppercase()) {
            return err("must be lowercase");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return err("must not contain whitespace or control characters");
        }
        Ok(Command(s.to_owned()))
    }

    /// The command text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a delegation of `self` covers an invocation (or sub-delegation) of `other`.
    pub fn proves(&self, other: &Command) -> bool {
        if self.0 == "/" || self.0 == other.0 {
            return true;
        }
        // Segment prefix: `/a/b` proves `/a/b/c`, never `/a/bc`.
        other
            .0
            .strip_prefix(self.0.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Command {
        Command::parse(s).unwrap()
    }

    #[test]
    fn parse_rejects_malformed() {
        for bad in ["", "wasm/run", "/wasm/", "/Wasm", "/a//b", "/a b"] {
            assert!(Command::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in [
            "/",
            "/wasm",
            "/wasm/run",
            "/ucan/revoke",
            "/bacalhau/job/await",
        ] {
            assert_eq!(c(good).as_str(), good);
        }
    }

    #[test]
    fn attenuation_is_by_whole_segment() {
        assert!(c("/").proves(&c("/anything/at/all")));
        assert!(c("/crypto").proves(&c("/crypto")));
        assert!(c("/crypto").proves(&c("/crypto/sign")));
        assert!(c("/crypto").proves(&c("/crypto/sign/deep")));
        assert!(!c("/crypto").proves(&c("/cryptocurrency")));
        assert!(!c("/crypto/sign").proves(&c("/crypto")));
        assert!(!c("/crypto/sign").proves(&c("/")));
    }
}
