//! OpenSSL pieces shared by the host client's TLS connector ([`crate::client::tls`]) and the MP
//! emulator's OpenSSL server ([`crate::mp::tls`]): the files' certificates, keys and CRLs as
//! OpenSSL objects, a verification store, and the few libssl calls the `openssl` crate does not
//! wrap (server-initiated renegotiation, TLS 1.3 post-handshake authentication, CRLs in a store).
//!
//! Why OpenSSL here and not rustls: an IIS binding asks for the client certificate only after it
//! has read the request, by renegotiation on TLS 1.2 (post-handshake authentication on 1.3).
//! rustls implements neither, OpenSSL (libssl 3, already linked on the host) implements both,
//! on the client and on the server side.

use std::os::raw::c_int;

use anyhow::{anyhow, Result};
use openssl::pkey::{PKey, Private};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509Crl, X509};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

#[allow(non_snake_case)]
mod sys {
    use std::os::raw::c_int;
    extern "C" {
        pub fn SSL_renegotiate(s: *mut openssl_sys::SSL) -> c_int;
        pub fn SSL_renegotiate_pending(s: *const openssl_sys::SSL) -> c_int;
        pub fn SSL_verify_client_post_handshake(s: *mut openssl_sys::SSL) -> c_int;
        pub fn SSL_set_post_handshake_auth(s: *mut openssl_sys::SSL, val: c_int);
        pub fn X509_STORE_add_crl(
            store: *mut openssl_sys::X509_STORE,
            crl: *mut openssl_sys::X509_CRL,
        ) -> c_int;
    }
}

/// `SSL_renegotiate`: a server schedules a HelloRequest (TLS 1.2 and below).
pub fn renegotiate(ssl: &openssl::ssl::SslRef) -> Result<(), openssl::error::ErrorStack> {
    use foreign_types_shared::ForeignTypeRef;
    cvt(unsafe { sys::SSL_renegotiate(ssl.as_ptr()) })
}

/// `SSL_renegotiate_pending`: a renegotiation was asked for and has not completed.
pub fn renegotiate_pending(ssl: &openssl::ssl::SslRef) -> bool {
    use foreign_types_shared::ForeignTypeRef;
    unsafe { sys::SSL_renegotiate_pending(ssl.as_ptr()) != 0 }
}

/// `SSL_verify_client_post_handshake`: a TLS 1.3 server schedules a CertificateRequest.
pub fn verify_client_post_handshake(
    ssl: &openssl::ssl::SslRef,
) -> Result<(), openssl::error::ErrorStack> {
    use foreign_types_shared::ForeignTypeRef;
    cvt(unsafe { sys::SSL_verify_client_post_handshake(ssl.as_ptr()) })
}

/// `SSL_set_post_handshake_auth`: a TLS 1.3 client offers post-handshake authentication.
pub fn set_post_handshake_auth(ssl: &mut openssl::ssl::SslRef, on: bool) {
    use foreign_types_shared::ForeignTypeRef;
    unsafe { sys::SSL_set_post_handshake_auth(ssl.as_ptr(), c_int::from(on)) }
}

/// `SSL_set_verify` without a callback (the `openssl` crate wants `&mut` for it; a stream inside
/// `tokio_openssl` only lends `&`).
pub fn set_verify_mode(ssl: &openssl::ssl::SslRef, mode: openssl::ssl::SslVerifyMode) {
    use foreign_types_shared::ForeignTypeRef;
    unsafe { openssl_sys::SSL_set_verify(ssl.as_ptr(), mode.bits() as c_int, None) }
}

fn cvt(r: c_int) -> Result<(), openssl::error::ErrorStack> {
    if r == 1 {
        Ok(())
    } else {
        Err(openssl::error::ErrorStack::get())
    }
}

/// DER certificates as OpenSSL's.
pub fn x509s(certs: &[CertificateDer<'_>], what: &str) -> Result<Vec<X509>> {
    certs
        .iter()
        .enumerate()
        .map(|(i, c)| X509::from_der(c).map_err(|e| anyhow!("{what} certificate {}: {e}", i + 1)))
        .collect()
}

/// A private key (PKCS#8, SEC1 or PKCS#1) as OpenSSL's.
pub fn pkey(key: &PrivateKeyDer<'_>) -> Result<PKey<Private>> {
    PKey::private_key_from_der(key.secret_der()).map_err(|e| anyhow!("private key: {e}"))
}

/// A verification store of `cas`; with CRLs, every certificate of a chain is checked against
/// them (`X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL`: a certificate whose issuer
/// published none among them fails with "unable to get certificate CRL").
pub fn store(
    cas: &[X509],
    crls: &[CertificateRevocationListDer<'_>],
    what: &str,
) -> Result<X509Store> {
    use foreign_types_shared::ForeignTypeRef;
    let mut b = X509StoreBuilder::new()?;
    for (i, ca) in cas.iter().enumerate() {
        b.add_cert(ca.clone())
            .map_err(|e| anyhow!("{what} certificate {}: {e}", i + 1))?;
    }
    if !crls.is_empty() {
        for (i, der) in crls.iter().enumerate() {
            let crl = X509Crl::from_der(der).map_err(|e| anyhow!("CRL {}: {e}", i + 1))?;
            // The store takes its own reference; ours is freed when `crl` drops.
            cvt(unsafe { sys::X509_STORE_add_crl(b.as_ptr(), crl.as_ptr()) })
                .map_err(|e| anyhow!("CRL {}: {e}", i + 1))?;
        }
        b.set_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL)?;
    }
    Ok(b.build())
}

/// The TLS alert a peer sent, from an OpenSSL error (`SSL_R_*ALERT*` reasons are the alert
/// number plus `SSL_AD_REASON_OFFSET`).
pub fn received_alert(stack: &openssl::error::ErrorStack) -> Option<u8> {
    stack.errors().iter().find_map(|e| {
        let r = e.reason_code() - openssl_sys::SSL_AD_REASON_OFFSET;
        (e.library_code() == 20 /* ERR_LIB_SSL */ && (1..=255).contains(&r)).then_some(r as u8)
    })
}

/// The name of TLS alert `code` (RFC 8446 §6).
pub fn alert_name(code: u8) -> &'static str {
    match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        100 => "no_renegotiation",
        109 => "missing_extension",
        112 => "unrecognized_name",
        116 => "certificate_required",
        _ => "unknown alert",
    }
}
