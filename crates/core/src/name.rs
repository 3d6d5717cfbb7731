//! Names of jobs (and later workflows): `[a-z0-9][a-z0-9_-]{0,62}`.

use crate::ValidationError;

/// Checks a job name against `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn validate_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let bytes = name.as_bytes();
    let ok_first = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok_rest = |b: u8| ok_first(b) || b == b'_' || b == b'-';
    if bytes.is_empty() {
        return Err(ValidationError::new(
            field,
            "must not be empty; names match [a-z0-9][a-z0-9_-]{0,62}",
        ));
    }
    if bytes.len() > 63 {
        return Err(ValidationError::new(
            field,
            format!(
                "is {} characters long; at most 63 are accepted",
                bytes.len()
            ),
        ));
    }
    if !ok_first(bytes[0]) || !bytes[1..].iter().all(|&b| ok_rest(b)) {
        return Err(ValidationError::new(
            field,
            format!("{name:?} is not a valid name; names match [a-z0-9][a-z0-9_-]{{0,62}}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(validate_name("name", "nightly-backup_2").is_ok());
        assert!(validate_name("name", "0").is_ok());
        assert!(validate_name("name", &"a".repeat(63)).is_ok());
        for bad in ["", "-a", "_a", "Ab", "a b", "a.b", "é", &"a".repeat(64)] {
            let err = validate_name("name", bad).unwrap_err();
            assert_eq!(err.field, "name", "{bad:?}");
        }
    }
}
