//! Native mode: the memory Mbed TLS allocates from (`mpagent_firmware_common::tls_pool!`).
//!
//! Size: the session holds a 16 KiB + 0.3 KiB receive record and a 4 KiB send record; the
//! parsed CA and client certificates and key, and the handshake's ECDHE and RSA temporaries come
//! on top. The high-water mark is logged at the end of every boot (`tls pool: peak …`); the
//! figures measured are in README.md.

mpagent_firmware_common::tls_pool!(64 * 1024);
