//! One type for every secret the program holds in memory: database
//! passwords, database URLs that carry one, OpenPGP session keys.
//!
//! Its `Debug` shows no part of the value, so a secret inside any struct
//! that derives `Debug` (a parsed command line, a restore target, an error)
//! cannot reach a log line or a panic message; and its memory is
//! overwritten with zeros when it is dropped (`zeroize`), so a freed buffer
//! does not keep it for the rest of the process's life. The value is read
//! only through [`Secret::expose`], which makes each use visible in review.

use zeroize::Zeroizing;

/// A secret string: redacted in `Debug`, zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The value itself, for the one place that must hand it on.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    /// For command-line arguments (clap parses through `FromStr`).
    fn from_str(value: &str) -> Result<Secret, Self::Err> {
        Ok(Secret::from(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_nothing_of_the_value() {
        let secret = Secret::from("hunter2-and-more");
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(secret.expose(), "hunter2-and-more");
    }
}
