//! `sg`, `decode-sg` and the scatterlist part of the tour.
use crate::cli::CliError;
use serde_json::Value;

pub fn sg(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}
pub fn decode_sg(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}

pub fn tour() {}
