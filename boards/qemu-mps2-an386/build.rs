//! Puts memory.x where cortex-m-rt's link.x finds it; native mode's link argument.
fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    // Native mode: Mbed TLS's configuration gets renegotiation enabled through this wrapper
    // (mpagent_firmware_common::tls, "Renegotiation").
    if std::env::var_os("CARGO_FEATURE_NATIVE").is_some() {
        println!("cargo:rustc-link-arg=--wrap=mbedtls_ssl_config_defaults");
        // The device is a TLS client only: stubs for the server state machines let the linker
        // drop the server side (mpagent_firmware_common::tls, "Flash").
        println!("cargo:rustc-link-arg=--wrap=mbedtls_ssl_handshake_server_step");
        println!("cargo:rustc-link-arg=--wrap=mbedtls_ssl_tls13_handshake_server_step");
        // P-256 multiplies on the assembly only (mpagent_firmware_common::tls_p256).
        println!("cargo:rustc-link-arg=--wrap=ecp_mul_restartable_internal_soft");
    }
}
