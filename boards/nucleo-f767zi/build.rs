//! Puts memory.x where cortex-m-rt's link.x finds it; for native mode, copies the build-time
//! provisioning (DER files named by MPAGENT_CA, MPAGENT_CLIENT_CERT, MPAGENT_CLIENT_KEY) into
//! OUT_DIR, empty when not given (the firmware then refuses to start native mode), and records
//! the build time, the floor for certificate dates until the MP's `Date` is known.
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
    for (var, file) in [
        ("MPAGENT_CA", "ca.der"),
        ("MPAGENT_CLIENT_CERT", "client.der"),
        ("MPAGENT_CLIENT_KEY", "client-key.der"),
    ] {
        println!("cargo:rerun-if-env-changed={var}");
        let bytes = match std::env::var_os(var) {
            Some(path) => {
                println!(
                    "cargo:rerun-if-changed={}",
                    std::path::Path::new(&path).display()
                );
                std::fs::read(&path).unwrap_or_else(|e| panic!("{var}: reading {path:?}: {e}"))
            }
            None => Vec::new(),
        };
        std::fs::write(out.join(file), bytes).unwrap();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("cargo:rustc-env=MPAGENT_BUILD_UNIX={now}");
}
