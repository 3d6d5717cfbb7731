//! Sinks: where rota sends what jobs measure, as time series points.
//!
//! A [`Point`] (measurement, tags, typed fields, a nanosecond timestamp) knows its
//! InfluxDB line protocol ([`Point::line`]); it is the one encoder in rota, used
//! by `rota prow --format influx` as well as by sinks. A [`Sink`] is started from
//! a [`rota_core::sink::SinkSpec`]: [`Sink::send`] puts points in a bounded buffer
//! without waiting, and one writer task POSTs them in batches of `batch_size` (or
//! every `flush_interval`) to InfluxDB 1.x (`/write`) or 2.x (`/api/v2/write`),
//! retrying with a [`Backoff`] what may succeed later (no connection, 5xx, 429)
//! and dropping what cannot (any other 4xx). Every point ends up counted in
//! [`SinkStats`] as written or dropped; [`Sink::shutdown`] writes what is still
//! buffered before a deadline.

mod error;
mod influxdb;
mod point;
mod writer;

pub use error::Error;
pub use point::{FieldValue, Point};
pub use writer::{Backoff, Sink, SinkStats, SHUTDOWN_DEADLINE};
