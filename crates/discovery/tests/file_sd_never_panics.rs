//! Any file_sd file contents are read or refused with an error, never a panic.
//! Long run: `PROPTEST_CASES=100000 cargo test --release -p rota-discovery --test file_sd_never_panics`.

use proptest::prelude::*;
use rota_discovery::file_sd::parse;

proptest! {
    #[test]
    fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse("sd/a.json", &bytes);
        let _ = parse("sd/a.yaml", &bytes);
    }

    #[test]
    fn json_like_text_is_read_or_refused(text in "[\\[\\]{}\",:a-z0-9 .=\\n-]{0,120}") {
        if let Ok(targets) = parse("sd/a.json", text.as_bytes()) {
            prop_assert!(targets.iter().all(|t| !t.address.trim().is_empty()));
        }
        let _ = parse("sd/a.yml", text.as_bytes());
    }
}
