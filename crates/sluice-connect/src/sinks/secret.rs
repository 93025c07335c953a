//! [`Secret`]: a password or access key that never prints.

use std::fmt;

/// A password or access key. `Debug` and `Display` show `***` (or `""` when empty, so a
/// missing secret is still visible in a dump); only [`Secret::expose`] gives the value, for
/// the connection that needs it and for the API response that returns it (GetConnector
/// returns the `Config` as it was given, secrets included, as the cloud service does).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself. Call it only where the secret is used or deliberately returned.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("***")
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s} {s:#?}"), "*** *** ***");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }
}
