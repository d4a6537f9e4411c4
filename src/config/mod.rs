//! Flag validation shared by the model and the training configuration, and the one table
//! of the seed's flags ([`flags`]) that the CLI, the page's form and validation read.

pub mod flags;

use std::fmt;

use serde::{Deserialize, Serialize};

/// A refused setting, named by the seed's flag so that the form and the CLI can point at it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigError {
    pub flag: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(flag: &str, message: impl Into<String>) -> Self {
        Self {
            flag: flag.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{}: {}", self.flag, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Refuses a whole-number flag outside `range`.
pub fn check_range(
    flag: &str,
    value: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            flag,
            format!(
                "must be between {} and {}, got {value}",
                range.start(),
                range.end()
            ),
        ))
    }
}
