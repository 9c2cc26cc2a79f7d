//! # mpagent-ffi
//!
//! The C API over `mpagent-core`: one agent in memory the caller owns, driven through callbacks
//! the caller fills (flash region, clock, RNG, transport, reports, policy, log). Built as a
//! static library; `include/mpagent.h` is generated from this file by cbindgen.
//!
//! Order of calls: [`mpagent_init`] (configuration and callbacks, opens the store on the flash
//! region), [`mpagent_identity`] (loads the stored key and certificate or makes and saves them),
//! then [`mpagent_step`] or [`mpagent_run_until_idle`] as often as the caller likes. The state
//! ([`mpagent_registration_state`], [`mpagent_smsid`], [`mpagent_counts`]) is readable at any
//! time after [`mpagent_init`].
//!
//! Memory: [`mpagent_context`] lives where the caller puts it (a static, the stack of a task, a
//! heap block) and must not move between calls: the agent inside it points at its own fields.
//! Nothing here allocates, and there are no globals: two contexts are two agents.
//!
//! Threading: a context is used by one thread at a time; the callbacks run on the calling
//! thread, inside the call that needs them.
// Firmware targets (`target_os = "none"`) build without std and without an allocator; the host
// build links std only so that the library also builds with the workspace's unwinding profiles.
#![cfg_attr(target_os = "none", no_std)]
#![allow(non_camel_case_types)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unreachable
)]

mod callbacks;
mod context;

pub use callbacks::{
    mpagent_callbacks, mpagent_instance, mpagent_property, MPAGENT_EVENT_TEXT_MAX,
    MPAGENT_FLASH_ERASE_SIZE, MPAGENT_FLASH_WRITE_SIZE, MPAGENT_INVENTORY_MAX_ITEMS,
};
pub use context::*;

// Without std there is no unwinding: a panic (no path of this crate has one) stops here.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
