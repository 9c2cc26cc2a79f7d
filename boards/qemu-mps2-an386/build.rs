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
    }
}
