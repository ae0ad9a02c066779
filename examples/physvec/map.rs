//! `map` and the mapping part of the tour.
use crate::cli::CliError;
use serde_json::Value;

pub fn map(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}

pub fn tour() {}
