//! The load generator of rota's benchmark suite.
//!
//! It drives a running rota server over its HTTP API (and etcd over its JSON
//! gateway, as the reference for durable key/value writes and
//! linearizable reads) the way real clients
//! would: one keep-alive connection per simulated client, rota's session headers on
//! every write. Each benchmark step ends in one [`Outcome`] printed as a JSON line;
//! [`report::render`] turns a file of them into the markdown tables of the
//! performance document. The tokio-cron-scheduler harness (`cron-peer`) prints the
//! same [`Outcome`]s, so both sides of a comparison are measured and rendered alike.
//!
//! Steps: [`kv`] (write throughput and latency), [`get`] (linearizable read
//! throughput and latency), [`jobs`] (job creation and deletion), [`lag`]
//! (dispatch lag of jobs due at the same instant), [`fires`] (sustained firing
//! rate), [`memory`] (resident memory with many jobs, restart time), [`failover`]
//! (the longest write gap while a cluster's leader is killed), [`frozen`] (a write
//! sent to a follower while the leader is stopped), [`watch`] (watch
//! delivery rate and lag with 1 or many watchers). [`cluster`] tells
//! which node of a 3-node rota or etcd cluster leads and whether all caught up.
//! Nothing here asserts on timing: the figures are reported, not judged.

pub mod client;
pub mod cluster;
pub mod error;
pub mod failover;
pub mod fires;
pub mod frozen;
pub mod get;
pub mod jobs;
pub mod kv;
pub mod lag;
pub mod memory;
pub mod report;
pub mod result;
pub mod stamps;
pub mod stats;
pub mod watch;

pub use error::BenchError;
pub use result::{Measurement, Outcome};
pub use stats::Summary;
