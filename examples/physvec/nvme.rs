//! `prp`, `sgl`, `decode-prp`, `decode-sgl` and the NVMe part of the tour.
use crate::cli::CliError;
use serde_json::Value;

pub fn prp(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}
pub fn sgl(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}
pub fn decode_prp(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}
pub fn decode_sgl(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}

pub fn tour() {}
