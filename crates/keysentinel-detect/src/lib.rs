//! Detection of suspected API-key sharing (docs/detection.md).
//!
//! Records of event format v1 ([`event`]) go into the [`engine::Engine`] in event-time order;
//! it keeps per-key and per-account baselines, fires explainable [`indicator`]s and emits a
//! [`engine::Decision`] whenever a key's risk reaches a higher of the four levels of the
//! standard (monitor, warn, reverify, invalidate). Where an address is comes from a
//! [`geo::Locate`]. Pure: no I/O and no clock, so a replay is deterministic.

pub mod config;
pub mod decision;
pub mod engine;
pub mod event;
pub mod geo;
pub mod indicator;

pub use config::Config;
pub use decision::{Baseline, Decision, Observed, Reason, Related};
pub use engine::{Assessment, Engine, Firing, SnapshotError, FORMAT_VERSION};
pub use indicator::{Indicator, Kind, Stage};
