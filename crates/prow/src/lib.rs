//! Reading a Prow deck: where its job list lives ([`deck_url`]), fetching it
//! ([`fetch`]), turning `prowjobs.js` into [`Build`] records ([`parse_deck`]),
//! choosing some of them ([`Filter`]) and writing them out as JSON or as InfluxDB
//! points ([`build_point`], [`influx_lines`]; the line protocol encoder is
//! [`rota_sink::Point`]). [`read_deck`] does the fetching and parsing in one call.
//!
//! The crate is a library without a server or a runtime of its own: the CLI
//! (`rota prow`) and, later, an executor call it. A deck page that is not a whole
//! job list is an error, never partial data; one malformed job in a good page is
//! skipped with a warning ([`Parsed::skipped`]) and the others are kept.

mod deck;
mod error;
mod fetch;
mod filter;
mod point;
mod url;

pub use deck::{parse_deck, state_int, Build, Parsed, Skipped};
pub use error::Error;
pub use fetch::{fetch, read_deck};
pub use filter::{glob_match, Filter};
pub use point::{build_point, influx_lines};
pub use url::{deck_url, DeckUrl};
