//! # mpagent-core
//!
//! The allocation-free, `no_std`, sans-IO core of mpagent: it builds, signs and parses the
//! Configuration Manager management point (MP) messages described in `docs/protocol.md`.
//!
//! Data flow of one message:
//! 1. the appliance fills a wire *repr* (`wire::registration::RegistrationRequest`, …);
//! 2. the repr is emitted through [`sink`]s: once into a hasher (signature), once into a counter
//!    (lengths), then window by window into a small caller buffer that the transport sends;
//! 3. reply bytes go through [`http`] (head, chunked body), [`wire::multipart`] and the reply parser;
//! 4. the [`agent`] state machine turns the parsed reply into its next action, with `now` passed in.
//!
//! The core owns no IO, no clock, no RNG and no memory: the caller hands all of them in.
//!
//! ## Embedding it
//!
//! What an integrator uses is re-exported here; the modules hold the rest. A firmware gives the
//! [`Driver`] five things of its own and then calls [`Driver::step`] (or [`Driver::run`]):
//! - a [`Connector`] (TCP or TLS to the MP, over `embedded-io-async`) and a [`Clock`];
//! - a [`Store`] on its NOR flash (identity and queue, power-cut safe) and an RNG;
//! - [`Buffers`] it owns (statics on a board) and a [`Host`]: where reports come from, where
//!   policy bodies go, how the registration state is saved, what is logged.
//!
//! The [`Agent`] inside the driver is the sans-IO lifecycle (registration, schedules, the
//! queue's rules, policy); a caller with its own event loop can run it without the driver.
//! `core/examples/firmware-skeleton` is a whole firmware in about two hundred lines, built for
//! Cortex-M4 and run under QEMU by `tests/run-all.sh`.
#![no_std]
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable
    )
)]

#[macro_use]
mod fmt;

pub mod agent;
pub mod config;
mod error_text;
pub mod guid;
pub mod http;
pub mod identity;
pub mod io;
pub mod profile;
pub mod sign;
pub mod sink;
pub mod store;
pub mod time;
pub mod wire;

pub use agent::lifecycle::{Agent, Counts, Schedule};
pub use agent::registration::{RegistrationState, SigningIdentity};
pub use config::{AgentConfig, ConfigError, SiteGeneration, SiteMode};
pub use guid::{Guid, Smsid};
pub use io::driver::{
    Buffers, Device, Driver, DriverError, Event, Host, PolicySlot, StateMessageError, Step,
};
pub use io::{Clock, Connector};
pub use sign::{P256Signer, RsaSigner, Signer};
pub use store::{Layout, Store, StoreError};
pub use time::UnixTime;
pub use wire::registration::AgentType;
