//! What is wrong with a config, as a value: its message says what to change, and its variant
//! says which part and what kind of problem it is.

use std::fmt::Display;

use thiserror::Error;

use crate::task::TaskError;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// A field outside the values it may take.
    #[error("{field} must be {expected}, got {got}")]
    Field {
        field: String,
        expected: String,
        got: String,
    },
    /// Fields that are each valid but do not fit together.
    #[error("{0}")]
    Mismatch(String),
    /// A model or step too large for toylens to hold.
    #[error("{0}")]
    TooLarge(String),
    #[error("task: {0}")]
    Task(#[from] TaskError),
    #[error("model: {0}")]
    Model(Box<ConfigError>),
    #[error("training: {0}")]
    Training(Box<ConfigError>),
    /// A config file that is not valid JSON for a run.
    #[error("config JSON: {0}")]
    Json(String),
}

impl ConfigError {
    /// `field` must be `expected` (a range or a kind of value), but is `got`.
    pub fn field(field: impl Into<String>, expected: impl Into<String>, got: impl Display) -> Self {
        Self::Field {
            field: field.into(),
            expected: expected.into(),
            got: got.to_string(),
        }
    }

    /// This problem, found in the model's fields.
    pub fn in_model(self) -> Self {
        Self::Model(Box::new(self))
    }

    /// This problem, found in the training settings.
    pub fn in_training(self) -> Self {
        Self::Training(Box::new(self))
    }
}
