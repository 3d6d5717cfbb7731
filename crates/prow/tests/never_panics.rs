//! A deck page of any shape never panics the reader: arbitrary text, and real
//! pages cut or corrupted at any byte, are read or refused with an error.
//! Long run: `PROPTEST_CASES=100000 cargo test --release -p rota-prow --test never_panics`.

use proptest::prelude::*;
use rota_prow::parse_deck;

const PAGE: &str = include_str!("fixtures/prowjobs.json");

proptest! {
    #[test]
    fn any_text_is_read_or_refused(text in ".{0,200}") {
        let _ = parse_deck(&text, Some("https://prow.example"));
        let _ = parse_deck(&format!("var allBuilds = {text};"), None);
    }

    #[test]
    fn a_real_page_cut_or_changed_anywhere_is_read_or_refused(cut in 0..PAGE.len(), byte in any::<u8>()) {
        let mut bytes = PAGE.as_bytes().to_vec();
        bytes[cut] = byte;
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        if let Ok(parsed) = parse_deck(&changed, None) {
            // Whatever is kept is a whole record; nothing is invented.
            prop_assert!(parsed.builds.len() + parsed.skipped.len() <= 6);
        }
        let truncated = &PAGE[..PAGE.floor_char_boundary(cut)];
        if let Ok(parsed) = parse_deck(truncated, None) {
            prop_assert!(parsed.builds.len() <= 6);
        }
    }
}
