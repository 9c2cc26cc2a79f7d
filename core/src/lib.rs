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
#![no_std]
#![forbid(unsafe_code)]
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
