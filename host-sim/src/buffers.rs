//! Reusable exchange buffers for host-side servers (the ISV proxy): the core streams every MP
//! exchange through a caller-owned buffer (64 KiB on the host, up to 384 KiB for policy), and
//! allocating and zeroing a fresh one per exchange was the proxy's largest single cost (malloc,
//! `malloc_consolidate` and page faults: about a fifth of its CPU in a proxied fleet). A
//! [`Buffer`] comes from its thread's free list and goes back there when dropped.
//!
//! A reused buffer still holds the bytes of an earlier exchange: the core only reads what it
//! wrote into the buffer in the same exchange, so nothing of one device reaches another.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers kept per thread (beyond these, dropped buffers are freed): enough for the devices a
/// proxy worker thread serves at once without holding memory after a burst.
const KEEP_PER_THREAD: usize = 32;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of a fixed length, from this thread's free list when one of that length is there.
pub struct Buffer(Vec<u8>);

impl Buffer {
    /// A buffer of `len` bytes (zeroed when newly allocated, earlier contents when reused).
    pub fn take(len: usize) -> Buffer {
        let reused = FREE
            .try_with(|free| {
                let mut free = free.borrow_mut();
                let at = free.iter().position(|b| b.len() == len)?;
                Some(free.swap_remove(at))
            })
            .ok()
            .flatten();
        Buffer(reused.unwrap_or_else(|| vec![0u8; len]))
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        // During thread exit the list may be gone: the buffer is then simply freed.
        let _ = FREE.try_with(|free| {
            if let Ok(mut free) = free.try_borrow_mut() {
                if free.len() < KEEP_PER_THREAD {
                    free.push(buf);
                }
            }
        });
    }
}

impl Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_taken_again_on_its_thread() {
        let mut a = Buffer::take(4096);
        assert_eq!(a.len(), 4096);
        a[0] = 7;
        let at = a.as_ptr();
        drop(a);
        let b = Buffer::take(4096);
        assert_eq!(b.as_ptr(), at, "the same allocation");
        assert_eq!(b[0], 7, "reused as it was left");
        // Another length is not served from it; another thread has its own list.
        let c = Buffer::take(8192);
        assert_eq!(c.len(), 8192);
        assert_ne!(c.as_ptr(), at);
        std::thread::spawn(|| assert_eq!(Buffer::take(4096)[0], 0))
            .join()
            .unwrap();
    }

    #[test]
    fn at_most_the_kept_number_stay_on_a_thread() {
        std::thread::spawn(|| {
            let many: Vec<Buffer> = (0..KEEP_PER_THREAD + 5).map(|_| Buffer::take(16)).collect();
            drop(many);
            assert_eq!(FREE.with(|f| f.borrow().len()), KEEP_PER_THREAD);
        })
        .join()
        .unwrap();
    }
}
