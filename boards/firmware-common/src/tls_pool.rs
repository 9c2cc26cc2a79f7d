//! Native mode: [`tls_pool!`](crate::tls_pool), which defines a board image's Mbed TLS allocator.

/// Defines, in the board crate that calls it, the memory Mbed TLS allocates from: one fixed
/// [`Pool`](crate::tls::Pool) of `$bytes` in `.bss`, Mbed TLS's `calloc` and `free` over it
/// (the only ones in the image, which has no global allocator), and `usage()`, what the pool
/// holds now and held at most.
///
/// Why a fixed pool: TLS can never take memory the rest of the firmware counts on, and running
/// out is a typed error (`TlsError::OutOfMemory`), not a crash. Why a macro in the board crate:
/// the symbols Mbed TLS links against stay defined in the image's own crate, and each board
/// chooses its pool's size.
#[macro_export]
macro_rules! tls_pool {
    ($bytes:expr) => {
        /// Bytes of the pool.
        pub const TLS_POOL_BYTES: usize = $bytes;

        static TLS_POOL: $crate::tls::Pool<TLS_POOL_BYTES> = $crate::tls::Pool::new();

        /// What the pool holds now and held at most.
        pub fn usage() -> $crate::tls::PoolUsage {
            TLS_POOL.usage()
        }

        /// Mbed TLS's allocator (and the only `calloc` in the image).
        #[no_mangle]
        extern "C" fn calloc(n: usize, size: usize) -> *mut ::core::ffi::c_void {
            TLS_POOL.calloc(n, size)
        }

        /// Mbed TLS's deallocator.
        #[no_mangle]
        extern "C" fn free(p: *mut ::core::ffi::c_void) {
            TLS_POOL.free(p)
        }
    };
}
