//! The board-independent part of mpagent's firmware, shared by every board: the identity in the
//! core's store (`identity`, with the key kind chosen at build time in `key`: P-256, signed on
//! the P256-Cortex-M4 assembly of `p256_asm` with the default feature `p256-asm`, or RSA-2048
//! with the feature `key-rsa2048`), and the board's side of the core's agent driver (`exchange`:
//! the heartbeat naming the device's addresses, the registration state saved with the identity,
//! policy bodies, defmt events, steps bounded in time). Generic over the flash (`NorFlash`), the core's `Connector` and `Clock`, and
//! where a board keeps policy bodies ([`exchange::PolicyBodies`]); deadlines use embassy-time,
//! logs defmt. The boards keep only what is theirs: drivers, provisioning, the boot sequence.
//! With the feature `native`, `tls` adds native mode (HTTPS with a CA-issued client certificate,
//! Mbed TLS over the core's `Connector`), `tls_pool!` (a board image's Mbed TLS allocator) and
//! `identity::load_or_provision`.
#![no_std]

pub mod exchange;
pub mod identity;
pub mod key;
#[cfg(feature = "p256-asm")]
pub mod p256_asm;
mod text;
#[cfg(feature = "native")]
pub mod tls;
#[cfg(all(feature = "native", feature = "p256-asm"))]
pub mod tls_p256;
#[cfg(feature = "native")]
mod tls_pool;
