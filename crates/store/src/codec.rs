//! How records and composite keys are laid out on disk.
//!
//! Every value is one version byte followed by serde_json. JSON is already the
//! contract's wire format, so a stored record reads the same as the API shows it,
//! which keeps state files debuggable; the version byte lets a later release read
//! what this one wrote (and refuse, rather than misread, what a newer one wrote).
//!
//! Composite keys are byte strings: the job name's length and bytes, then
//! fixed-width big-endian parts, so all rows of one job are one key range.
//!
//! [`encode`] and [`decode`] are public: the cluster crate writes its own records
//! (Raft log entries, the vote, the state machine's metadata) the same way.

use serde::de::DeserializeOwned;
use serde::Serialize;
use ulid::Ulid;

use crate::StoreError;
use rota_core::Timestamp;

/// The version byte of every record this release writes.
pub const RECORD_VERSION: u8 = 1;

/// `value` as a record: [`RECORD_VERSION`], then its JSON. `what` names the record
/// in errors.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![RECORD_VERSION];
    serde_json::to_writer(&mut out, value).map_err(|source| StoreError::Encode { what, source })?;
    Ok(out)
}

/// A record written by [`encode`]; refuses another version byte rather than
/// misreading it.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    let (&version, body) = bytes
        .split_first()
        .ok_or(StoreError::EmptyRecord { what })?;
    if version != RECORD_VERSION {
        return Err(StoreError::UnknownVersion {
            what,
            version,
            expected: RECORD_VERSION,
        });
    }
    serde_json::from_slice(body).map_err(|source| StoreError::Decode { what, source })
}

/// `len(4, big-endian) name`: the start of every composite key of a job. The length
/// prefix keeps one job's keys apart from another's whatever bytes the names hold.
fn job_prefix(job: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + job.len() + 16);
    key.extend_from_slice(&(job.len() as u32).to_be_bytes());
    key.extend_from_slice(job.as_bytes());
    key
}

/// Bytes after the job prefix in `job_execs` keys (the id).
pub(crate) const JOB_EXEC_SUFFIX: usize = 16;
/// Bytes after the job prefix in `fired` keys (seconds and nanoseconds).
pub(crate) const FIRED_SUFFIX: usize = 12;

/// The inclusive key range of every key of `job` whose suffix is `suffix` bytes long.
pub(crate) fn job_range(job: &str, suffix: usize) -> (Vec<u8>, Vec<u8>) {
    let mut start = job_prefix(job);
    let mut end = start.clone();
    start.resize(start.len() + suffix, 0);
    end.resize(end.len() + suffix, 0xff);
    (start, end)
}

/// `job_execs` key: job prefix, then the id (big-endian), so a job's history is in id order.
pub(crate) fn job_exec_key(job: &str, id: Ulid) -> Vec<u8> {
    let mut key = job_prefix(job);
    key.extend_from_slice(&id.0.to_be_bytes());
    key
}

/// The job name and execution id of a `job_execs` key.
pub(crate) fn split_job_exec_key(key: &[u8]) -> Result<(&str, Ulid), StoreError> {
    let malformed = || StoreError::MalformedKey { table: "job_execs" };
    let (len, rest) = key.split_first_chunk::<4>().ok_or_else(malformed)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() != len + JOB_EXEC_SUFFIX {
        return Err(malformed());
    }
    let (name, id) = rest.split_at(len);
    let name = std::str::from_utf8(name).map_err(|_| malformed())?;
    let id: [u8; 16] = id.try_into().map_err(|_| malformed())?;
    Ok((name, Ulid(u128::from_be_bytes(id))))
}

/// `fired` key: job prefix, seconds (8, big-endian, sign flipped so that order is
/// time order), nanoseconds (4, big-endian).
pub(crate) fn fired_key(job: &str, at: Timestamp) -> Vec<u8> {
    let mut key = job_prefix(job);
    let secs = (at.timestamp() as u64) ^ (1 << 63);
    key.extend_from_slice(&secs.to_be_bytes());
    key.extend_from_slice(&at.timestamp_subsec_nanos().to_be_bytes());
    key
}

/// The nanoseconds part of a `fired` key that marks an event key: no instant has it
/// (nanoseconds stay below 10^9), so event keys are a key space of their own inside
/// each job's range.
const EVENT_NANOS: u32 = u32::MAX;

/// `fired` key of an event trigger: job prefix, the event revision (8, big-endian)
/// where an instant has its seconds, then [`EVENT_NANOS`] less the event's `seq`
/// where an instant has its nanoseconds. An entry publishes far fewer than the
/// 3.29 billion events that would reach an instant's nanoseconds; a larger `seq`
/// would share the last key rather than collide with an instant.
pub(crate) fn event_fired_key(job: &str, revision: u64, seq: u32) -> Vec<u8> {
    const MAX_SEQ: u32 = EVENT_NANOS - 1_000_000_000;
    let mut key = job_prefix(job);
    key.extend_from_slice(&revision.to_be_bytes());
    key.extend_from_slice(&(EVENT_NANOS - seq.min(MAX_SEQ)).to_be_bytes());
    key
}

/// Checks the layout of a `fired` key (used when a snapshot is read).
pub(crate) fn check_fired_key(key: &[u8]) -> Result<(), StoreError> {
    let malformed = || StoreError::MalformedKey { table: "fired" };
    let (len, rest) = key.split_first_chunk::<4>().ok_or_else(malformed)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() != len + FIRED_SUFFIX || std::str::from_utf8(&rest[..len]).is_err() {
        return Err(malformed());
    }
    Ok(())
}

pub(crate) fn parse_ulid(table: &'static str, bytes: &[u8]) -> Result<Ulid, StoreError> {
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::MalformedKey { table })?;
    Ok(Ulid(u128::from_be_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn records_round_trip_and_refuse_unknown_versions() {
        let bytes = encode("test", &vec![1u32, 2, 3]).unwrap();
        assert_eq!(bytes[0], RECORD_VERSION);
        let back: Vec<u32> = decode("test", &bytes).unwrap();
        assert_eq!(back, vec![1, 2, 3]);

        let mut future = bytes.clone();
        future[0] = 2;
        assert!(matches!(
            decode::<Vec<u32>>("test", &future),
            Err(StoreError::UnknownVersion { version: 2, .. })
        ));
        assert!(matches!(
            decode::<Vec<u32>>("test", &[]),
            Err(StoreError::EmptyRecord { .. })
        ));
        assert!(matches!(
            decode::<Vec<u32>>("test", &[RECORD_VERSION, b'{']),
            Err(StoreError::Decode { .. })
        ));
    }

    #[test]
    fn job_keys_stay_inside_their_job_range() {
        let (start, end) = job_range("a", JOB_EXEC_SUFFIX);
        for id in [Ulid(0), Ulid(u128::MAX)] {
            let key = job_exec_key("a", id);
            assert!(start <= key && key <= end);
            assert_eq!(split_job_exec_key(&key).unwrap(), ("a", id));
        }
        // Names that extend "a" must not fall into a's range, whatever their bytes.
        for other in ["a-b", "a\0b", "ab", ""] {
            let key = job_exec_key(other, Ulid(0));
            assert!(key < start || key > end, "{other:?}");
        }
        assert!(split_job_exec_key(b"short").is_err());
        assert!(split_job_exec_key(&[0, 0, 0, 9, b'a']).is_err());

        let early = chrono::Utc.timestamp_opt(-5, 0).unwrap();
        let late = chrono::Utc.timestamp_opt(5, 1).unwrap();
        assert!(fired_key("a", early) < fired_key("a", late));
        let (start, end) = job_range("a", FIRED_SUFFIX);
        assert!(start <= fired_key("a", early) && fired_key("a", late) <= end);
        check_fired_key(&fired_key("a", late)).unwrap();
        // Event keys stay in the job's range and never equal an instant's key.
        for revision in [0, 1, u64::MAX] {
            for seq in [0, 1, u32::MAX] {
                let key = event_fired_key("a", revision, seq);
                assert!(start <= key && key <= end);
                check_fired_key(&key).unwrap();
                assert_ne!(key, fired_key("a", early));
                assert_ne!(key, fired_key("a", late));
            }
            // Two events of one revision have keys of their own.
            assert_ne!(
                event_fired_key("a", revision, 0),
                event_fired_key("a", revision, 1)
            );
        }
        // The last nanosecond of a second is still an instant's, not an event's.
        let last_nano = chrono::Utc.timestamp_opt(0, 999_999_999).unwrap();
        assert_ne!(
            event_fired_key("a", 1 << 63, u32::MAX),
            fired_key("a", last_nano)
        );
        assert!(check_fired_key(b"junk").is_err());
    }
}
