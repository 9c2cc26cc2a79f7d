//! Native mode: the memory Mbed TLS allocates from. The image has no global allocator; Mbed
//! TLS's `calloc` and `free` are this crate's, over one fixed pool in `.bss`
//! (`mpagent_firmware_common::tls::Pool`), so TLS can never take memory the rest of the
//! firmware counts on, and running out is a typed error (`TlsError::OutOfMemory`), not a crash.
//!
//! Size: the session holds a 16 KiB + 0.3 KiB receive record and a 4 KiB send record; the
//! parsed CA and client certificates and key, and the handshake's ECDHE and RSA temporaries come
//! on top. The high-water mark is logged at the end of every boot (`tls pool: peak …`); the
//! figures measured are in README.md.

use core::ffi::c_void;

use mpagent_firmware_common::tls::{Pool, PoolUsage};

/// Bytes of the pool.
pub const TLS_POOL_BYTES: usize = 64 * 1024;

static TLS_POOL: Pool<TLS_POOL_BYTES> = Pool::new();

/// What the pool holds now and held at most.
pub fn usage() -> PoolUsage {
    TLS_POOL.usage()
}

/// Mbed TLS's allocator (and the only `calloc` in the image).
#[no_mangle]
extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    TLS_POOL.calloc(n, size)
}

/// Mbed TLS's deallocator.
#[no_mangle]
extern "C" fn free(p: *mut c_void) {
    TLS_POOL.free(p)
}
