//! Validation of job specs with the path of the offending field.

use crate::{CompiledSchedule, JobSpec, ValidationError};

impl JobSpec {
    /// Checks every field; on success returns the compiled schedule.
    pub fn validate(&self) -> Result<CompiledSchedule, ValidationError> {
        todo!()
    }
}

/// Parses a JSON job document, naming the field path on a type error
/// (e.g. `retry.max_attempts: invalid type: string "x", expected u32`).
pub fn parse_job_json(bytes: &[u8]) -> Result<JobSpec, ValidationError> {
    let _ = bytes;
    todo!()
}
