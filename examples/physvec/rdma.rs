//! `mr-pages`, `mlx5-mtt`, `mlx5-klm`, `best-page-size` and the RDMA part of the tour.
use crate::cli::CliError;
use serde_json::Value;

pub fn mr_pages(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}
pub fn mlx5_mtt(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}
pub fn mlx5_klm(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}
pub fn best_page_size(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}

pub fn tour() {}
