//! Native mode: HTTPS with a client certificate, as an HTTPS-only site's MP wants it — Mbed TLS
//! 3.6 (through `mbedtls-rs` 0.3) between the core's [`Connector`] and the board's TCP connector.
//!
//! [`TlsConnector`] wraps the board's connector: each `connect` opens TCP, then runs a TLS 1.2 or
//! 1.3 client handshake that verifies the MP's chain against the provisioned CA (signatures,
//! validity against the clock installed with [`set_utc_now`], the DNS-name or IP SAN against
//! the host in `mp=`, the serverAuth EKU) and presents the device's client certificate (RSA-2048
//! or P-256). The core reads and writes the [`TlsConnection`] like any other connection; it
//! stays allocation-free.
//!
//! # Why Mbed TLS
//! The boards need TLS 1.2 (what Microsoft requires; Windows Server 2016/2019 have no 1.3) with
//! RSA and P-256 client certificates, and renegotiation for IIS's default of asking for the
//! client certificate after the request. Measured in a probe before choosing:
//! - embedded-tls 0.19 (pure Rust, no heap): TLS 1.3 only, no renegotiation, its verifier skips
//!   EKU and CA checks, RSA needs alloc — it cannot talk to a Windows Server 2019 MP at all.
//! - BearSSL: TLS 1.2 only, no heap, ~20 KB of code, but unmaintained since 2018 and no usable
//!   crate.
//! - Mbed TLS 3.6 (`mbedtls-rs`, maintained): TLS 1.2 and 1.3, renegotiation in the library,
//!   full X.509 path validation with EKU; builds with Debian's clang, cmake, ninja-build and
//!   libclang-dev. It needs `calloc`/`free`: the board backs them with a private fixed
//!   [`Pool`] (no global allocator exists in the image).
//!
//! # Memory
//! Mbed TLS allocates the session's state from the board's [`Pool`]: the 16 KiB receive record
//! (`ssl-in-content-len-16384`: IIS does not negotiate smaller fragments, so a full record must
//! fit), a 4 KiB send record, the parsed CA and client certificates, the client key, and the
//! handshake's transient state. [`Pool::usage`] gives the high-water mark, which the boards log.
//! Measured on QEMU mps2-an386 (`boards/qemu-mps2-an386/measure-tls.sh`, `docs/size.md`): the
//! peak is 30–34 KB with a P-256 client key (P-256 or RSA-2048 MP certificate, TLS 1.2 or 1.3)
//! and 38–39 KB with an RSA-2048 one, so the boards' pools are 64 KiB. A connect + handshake
//! costs 11–14 M instructions (`-icount shift=0`, an upper bound) with an RSA or a P-256 MP
//! certificate, Mbed TLS's P-256 running on the assembly ([`crate::tls_p256`]), and the boot's
//! peak stack stays at 6.2–7.2 KB.
//!
//! # Flash
//! mbedtls-rs-sys configures Mbed TLS from cargo features only (additive: mbedtls-rs itself asks
//! for the server side, and a feature cannot be taken away), so what the device never runs is
//! cut at link time instead, each with a stub the board links in with `--wrap`
//! (`boards/*/build.rs`), and `--gc-sections` drops what only the real function reached:
//! - the TLS 1.2 and 1.3 server state machines (`mbedtls_ssl_handshake_server_step`,
//!   `mbedtls_ssl_tls13_handshake_server_step`): the device is only ever a client (-11 KB);
//! - Mbed TLS's own elliptic-curve multiplication (`ecp_mul_restartable_internal_soft`): every
//!   multiplication runs on the assembly, P-256 being the only curve built in (-8 KB with
//!   P-384 left out).
//!
//! What TLS still adds to a board image is in `docs/size.md`.
//!
//! # Renegotiation
//! IIS asks for the client certificate only after it has read the request: on TLS 1.2 by a
//! HelloRequest, which Mbed TLS answers inside `mbedtls_ssl_read` when renegotiation is enabled
//! in its configuration (off by default). `mbedtls-rs` 0.3 keeps that configuration private, so
//! this module enables it by wrapping `mbedtls_ssl_config_defaults` at link time: the board links
//! with `--wrap=mbedtls_ssl_config_defaults` (its build.rs), and
//! `__wrap_mbedtls_ssl_config_defaults` below runs the real one, then
//! `mbedtls_ssl_conf_renegotiation(conf, ENABLED)`. (Without that link argument the image does
//! not link: `__real_mbedtls_ssl_config_defaults` is undefined.) TLS 1.3's post-handshake client
//! authentication is not implemented by Mbed TLS 3.6: an MP asking for the certificate that way
//! fails the connection.

use core::cell::{RefCell, UnsafeCell};
use core::ffi::{c_void, CStr};
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use critical_section::Mutex;
use embassy_time::Instant;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use mbedtls_rs::sys::{
    self, mbedtls_ms_time_t, MBEDTLS_ERR_SSL_ALLOC_FAILED, MBEDTLS_ERR_X509_ALLOC_FAILED,
    MBEDTLS_ERR_X509_CERT_VERIFY_FAILED,
};
use mbedtls_rs::{
    AuthMode, Certificate, ClientSessionConfig, Credentials, PrivateKey, Session, SessionConfig,
    SessionError, TlsReference, X509,
};
pub use mbedtls_rs::{Tls, TlsVersion};
use mpagent_core::io::Connector;
use mpagent_core::time::UnixTime;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why the MP's certificate chain was refused (from Mbed TLS's verification flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The chain does not lead to the provisioned CA.
    UnknownCa,
    /// The certificate names neither the host nor the address the device connects to.
    NameMismatch,
    /// The certificate (or one above it) has expired.
    Expired,
    /// The certificate (or one above it) is not valid yet.
    NotYetValid,
    /// The certificate is revoked.
    Revoked,
    /// The certificate is not for server authentication (key usage or EKU).
    NotForServerAuth,
    /// Another verification failure: the Mbed TLS `MBEDTLS_X509_BADCERT_*` flags.
    Other(u32),
}

impl VerifyError {
    /// The most telling reason among Mbed TLS's verification flags.
    pub fn from_flags(flags: u32) -> Self {
        if flags & sys::MBEDTLS_X509_BADCERT_NOT_TRUSTED != 0 {
            Self::UnknownCa
        } else if flags & sys::MBEDTLS_X509_BADCERT_REVOKED != 0 {
            Self::Revoked
        } else if flags & sys::MBEDTLS_X509_BADCERT_EXPIRED != 0 {
            Self::Expired
        } else if flags & sys::MBEDTLS_X509_BADCERT_FUTURE != 0 {
            Self::NotYetValid
        } else if flags & sys::MBEDTLS_X509_BADCERT_CN_MISMATCH != 0 {
            Self::NameMismatch
        } else if flags
            & (sys::MBEDTLS_X509_BADCERT_KEY_USAGE | sys::MBEDTLS_X509_BADCERT_EXT_KEY_USAGE)
            != 0
        {
            Self::NotForServerAuth
        } else {
            Self::Other(flags)
        }
    }

    /// The sentence a person reads.
    pub fn sentence(&self) -> &'static str {
        match self {
            Self::UnknownCa => "the MP's certificate does not chain to the provisioned CA (ca.der): provision the CA that issued the MP's certificate",
            Self::NameMismatch => "the MP's certificate names neither the host nor the address in mp= (no matching DNS-name or IP SAN)",
            Self::Expired => "the MP's certificate has expired (or the device's clock is wrong)",
            Self::NotYetValid => "the MP's certificate is not valid yet (or the device's clock is wrong)",
            Self::Revoked => "the MP's certificate is revoked",
            Self::NotForServerAuth => "the MP's certificate is not for server authentication (its key usage or extended key usage)",
            Self::Other(_) => "the MP's certificate was refused (Mbed TLS verification flags follow)",
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sentence())?;
        if let Self::Other(flags) = self {
            write!(f, ": {flags:#x}")?;
        }
        Ok(())
    }
}

impl core::error::Error for VerifyError {}

impl defmt::Format for VerifyError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Other(flags) => defmt::write!(f, "{=str}: {=u32:#x}", self.sentence(), flags),
            _ => defmt::write!(f, "{=str}", self.sentence()),
        }
    }
}

/// A native-mode connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsError {
    /// The TCP connection under TLS failed.
    Transport(ErrorKind),
    /// The MP's certificate chain was refused; nothing was sent.
    Verify(VerifyError),
    /// The TLS pool ran out of memory.
    OutOfMemory,
    /// The MP ended the connection with a fatal alert: in a handshake with a client
    /// certificate, most often because it refused the device's certificate.
    PeerAlert,
    /// TLS 1.3: the MP closed the connection before its first record after the handshake —
    /// where it says what it thinks of the client certificate (its alert may be lost to the
    /// reset).
    ClosedAfterHandshake,
    /// The handshake or a record failed in Mbed TLS (its negative error code): a peer's fatal
    /// alert, a protocol error, or the MP refusing the client certificate.
    Tls(i32),
}

impl TlsError {
    fn from_session(e: SessionError) -> Self {
        match e {
            SessionError::Io(kind) => Self::Transport(kind),
            SessionError::MbedTls(e)
                if e.code() == MBEDTLS_ERR_SSL_ALLOC_FAILED
                    || e.code() == MBEDTLS_ERR_X509_ALLOC_FAILED =>
            {
                Self::OutOfMemory
            }
            SessionError::MbedTls(e) if e.code() == sys::MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE => {
                Self::PeerAlert
            }
            SessionError::MbedTls(e) => Self::Tls(e.code()),
        }
    }
}

const PEER_ALERT: &str = "TLS: the MP ended the connection with a fatal alert (most often it refused the device's certificate: check that client.der is issued by the site's CA, valid, and allows client authentication)";

const CLOSED_AFTER_HANDSHAKE: &str = "TLS: the MP closed the connection right after the TLS 1.3 handshake (most often it refused the device's certificate: check that client.der is issued by the site's CA, valid, and allows client authentication)";

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(kind) => write!(f, "the TCP connection to the MP failed ({kind:?})"),
            Self::Verify(e) => write!(f, "TLS: {e}"),
            Self::OutOfMemory => f.write_str("TLS: the TLS pool is too small for this handshake"),
            Self::PeerAlert => f.write_str(PEER_ALERT),
            Self::ClosedAfterHandshake => f.write_str(CLOSED_AFTER_HANDSHAKE),
            Self::Tls(code) => write!(
                f,
                "TLS: the handshake or a record failed (Mbed TLS error -{:#06x})",
                code.unsigned_abs()
            ),
        }
    }
}

impl core::error::Error for TlsError {}

impl defmt::Format for TlsError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Transport(kind) => defmt::write!(
                f,
                "the TCP connection to the MP failed ({})",
                defmt::Debug2Format(kind)
            ),
            Self::Verify(e) => defmt::write!(f, "TLS: {}", e),
            Self::OutOfMemory => {
                defmt::write!(f, "TLS: the TLS pool is too small for this handshake")
            }
            Self::PeerAlert => defmt::write!(f, "{=str}", PEER_ALERT),
            Self::ClosedAfterHandshake => defmt::write!(f, "{=str}", CLOSED_AFTER_HANDSHAKE),
            Self::Tls(code) => defmt::write!(
                f,
                "TLS: the handshake or a record failed (Mbed TLS error -{=u32:#06x})",
                code.unsigned_abs()
            ),
        }
    }
}

impl embedded_io_async::Error for TlsError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Transport(kind) => *kind,
            Self::Verify(_) => ErrorKind::InvalidData,
            Self::OutOfMemory => ErrorKind::OutOfMemory,
            Self::PeerAlert => ErrorKind::ConnectionAborted,
            Self::ClosedAfterHandshake => ErrorKind::ConnectionReset,
            Self::Tls(_) => ErrorKind::Other,
        }
    }
}

/// The provisioned certificates or key were refused when loading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionError {
    /// `ca.der` is not a DER X.509 certificate Mbed TLS parses (its error code).
    Ca(i32),
    /// The client certificate is not a DER X.509 certificate Mbed TLS parses.
    ClientCert(i32),
    /// The client key is not a DER PKCS#8, PKCS#1 or SEC1 key Mbed TLS parses.
    ClientKey(i32),
    /// The server name holds a NUL byte or is longer than [`MAX_SERVER_NAME`].
    ServerName,
    /// A `Tls` instance exists already.
    AlreadyStarted,
}

impl ProvisionError {
    fn sentence(&self) -> &'static str {
        match self {
            Self::Ca(_) => "the provisioned CA (ca.der) is not a DER X.509 certificate",
            Self::ClientCert(_) => {
                "the provisioned client certificate (client.der) is not a DER X.509 certificate"
            }
            Self::ClientKey(_) => "the provisioned client key (client-key.der) is not a DER PKCS#8, PKCS#1 or SEC1 key, or does not match",
            Self::ServerName => "the MP's host name in mp= is too long for TLS or holds a NUL byte",
            Self::AlreadyStarted => "TLS was started twice",
        }
    }
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sentence())?;
        match self {
            Self::Ca(c) | Self::ClientCert(c) | Self::ClientKey(c) => {
                write!(f, " (Mbed TLS error -{:#06x})", c.unsigned_abs())
            }
            _ => Ok(()),
        }
    }
}

impl core::error::Error for ProvisionError {}

impl defmt::Format for ProvisionError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Ca(c) | Self::ClientCert(c) | Self::ClientKey(c) => defmt::write!(
                f,
                "{=str} (Mbed TLS error -{=u32:#06x})",
                self.sentence(),
                c.unsigned_abs()
            ),
            _ => defmt::write!(f, "{=str}", self.sentence()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The connector
// ---------------------------------------------------------------------------------------------

/// Longest host name for SNI and name verification.
pub const MAX_SERVER_NAME: usize = 96;

/// The device's TLS credentials and trust, parsed once (into the pool).
pub struct Provisioned {
    ca: Certificate<'static>,
    creds: Credentials<'static>,
}

impl Provisioned {
    /// Parses the CA certificate, the client certificate and the client key (all DER).
    pub fn parse(ca: &[u8], client_cert: &[u8], client_key: &[u8]) -> Result<Self, ProvisionError> {
        let ca = Certificate::new(X509::DER(ca)).map_err(|e| ProvisionError::Ca(e.code()))?;
        let certificate = Certificate::new(X509::DER(client_cert))
            .map_err(|e| ProvisionError::ClientCert(e.code()))?;
        let private_key = PrivateKey::new(X509::DER(client_key), None).map_err(|e| match e {
            SessionError::MbedTls(e) => ProvisionError::ClientKey(e.code()),
            SessionError::Io(_) => ProvisionError::ClientKey(0),
        })?;
        Ok(Self {
            ca,
            creds: Credentials {
                certificate,
                private_key,
            },
        })
    }
}

/// Starts Mbed TLS with the board's RNG (rand_core 0.6, e.g. its seeded ChaCha20).
pub fn start<R>(rng: &'static mut Rng<R>) -> Result<Tls<'static>, ProvisionError>
where
    R: rand_core::RngCore + rand_core::CryptoRng + Send,
{
    install_clock();
    #[cfg(feature = "p256-asm")]
    crate::tls_p256::install();
    Tls::new(rng).map_err(|_| ProvisionError::AlreadyStarted)
}

/// The core's [`Connector`] for native mode: TLS over the board's TCP connector.
pub struct TlsConnector<'t, C> {
    inner: C,
    tls: TlsReference<'t>,
    provisioned: &'t Provisioned,
    server_name: heapless::Vec<u8, { MAX_SERVER_NAME + 1 }>,
    min_version: TlsVersion,
    max_version: Option<TlsVersion>,
    /// The version the last handshake negotiated.
    pub negotiated: Option<TlsVersion>,
    /// Why the last connection failed, if it did (the core's driver sees only its kind).
    pub last_error: Option<TlsError>,
}

impl<'t, C> TlsConnector<'t, C> {
    /// TLS over `inner` to the MP called `server_name` (its DNS name or IP literal, checked
    /// against the certificate's SAN), TLS 1.2 and 1.3 unless `versions` narrows it.
    pub fn new(
        inner: C,
        tls: TlsReference<'t>,
        provisioned: &'t Provisioned,
        server_name: &str,
        versions: (TlsVersion, Option<TlsVersion>),
    ) -> Result<Self, ProvisionError> {
        let mut name = heapless::Vec::new();
        if server_name.as_bytes().contains(&0)
            || name.extend_from_slice(server_name.as_bytes()).is_err()
            || name.push(0).is_err()
        {
            return Err(ProvisionError::ServerName);
        }
        Ok(Self {
            inner,
            tls,
            provisioned,
            server_name: name,
            min_version: versions.0,
            max_version: versions.1,
            negotiated: None,
            last_error: None,
        })
    }
}

impl<'t, C: Connector> Connector for TlsConnector<'t, C> {
    type Error = TlsError;
    type Connection<'c>
        = TlsConnection<'c, C::Connection<'c>>
    where
        Self: 'c;

    async fn connect(&mut self) -> Result<Self::Connection<'_>, TlsError> {
        let started = Instant::now();
        let (result, negotiated) = connect_tls(
            &mut self.inner,
            self.tls,
            self.provisioned,
            &self.server_name,
            (self.min_version, self.max_version),
        )
        .await;
        match &result {
            Ok(_) => {
                self.negotiated = negotiated;
                self.last_error = None;
                if let Some(v) = negotiated {
                    // Under QEMU's `-icount shift=0` a millisecond is a million instructions.
                    defmt::info!(
                        "tls={=str}, connection and handshake {=u64} ms",
                        version_name(v),
                        started.elapsed().as_millis()
                    );
                }
            }
            Err(e) => {
                defmt::warn!("{}", e);
                self.last_error = Some(*e);
            }
        }
        result
    }
}

/// TCP, then the handshake; the connection and the version it negotiated.
async fn connect_tls<'c, C: Connector>(
    inner: &'c mut C,
    tls: TlsReference<'c>,
    provisioned: &'c Provisioned,
    server_name: &'c [u8],
    (min_version, max_version): (TlsVersion, Option<TlsVersion>),
) -> (
    Result<TlsConnection<'c, C::Connection<'c>>, TlsError>,
    Option<TlsVersion>,
) {
    let result = async {
        let server_name = CStr::from_bytes_with_nul(server_name)
            .map_err(|_| TlsError::Tls(sys::MBEDTLS_ERR_SSL_BAD_INPUT_DATA))?;
        let config = SessionConfig::Client(ClientSessionConfig {
            ca_chain: Some(provisioned.ca.clone()),
            creds: Some(provisioned.creds.clone()),
            server_name: Some(server_name),
            auth_mode: AuthMode::Required,
            min_version,
            max_version,
            ..ClientSessionConfig::new()
        });
        let tcp = inner
            .connect()
            .await
            .map_err(|e| TlsError::Transport(embedded_io_async::Error::kind(&e)))?;
        let mut session = Session::new(tls, tcp, &config).map_err(TlsError::from_session)?;
        drop(config);
        match session.connect().await {
            Ok(()) => Ok(session),
            Err(SessionError::MbedTls(e)) if e.code() == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED => {
                Err(TlsError::Verify(VerifyError::from_flags(
                    session.tls_verification_details(),
                )))
            }
            Err(e) => {
                let flags = session.tls_verification_details();
                // A refused chain can surface as the alert Mbed TLS sent about it.
                if flags != 0 && flags != u32::MAX {
                    Err(TlsError::Verify(VerifyError::from_flags(flags)))
                } else {
                    Err(TlsError::from_session(e))
                }
            }
        }
    }
    .await;
    match result {
        Ok(session) => {
            let v = session.tls_version();
            let verdict_pending = v == Some(TlsVersion::Tls1_3);
            (
                Ok(TlsConnection {
                    session,
                    verdict_pending,
                }),
                v,
            )
        }
        Err(e) => (Err(e), None),
    }
}

/// "1.2" or "1.3".
pub fn version_name(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls1_2 => "1.2",
        TlsVersion::Tls1_3 => "1.3",
    }
}

/// One TLS connection to the MP.
pub struct TlsConnection<'c, S: Read + Write> {
    session: Session<'c, S>,
    /// TLS 1.3 and no record read yet: the MP's verdict on the client certificate is still to
    /// come, so a reset now is most likely that verdict.
    verdict_pending: bool,
}

impl<S: Read + Write> TlsConnection<'_, S> {
    /// A failure after the handshake, logged as its sentence (on TLS 1.3 the MP's verdict on
    /// the client certificate arrives only with the first record read).
    fn failed(&self, e: SessionError) -> TlsError {
        let e = match TlsError::from_session(e) {
            TlsError::Transport(
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe,
            ) if self.verdict_pending => TlsError::ClosedAfterHandshake,
            e => e,
        };
        defmt::warn!("{}", e);
        e
    }
}

impl<S: Read + Write> ErrorType for TlsConnection<'_, S> {
    type Error = TlsError;
}

impl<S: Read + Write> Read for TlsConnection<'_, S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        match self.session.read(buf).await {
            Ok(n) => {
                self.verdict_pending = false;
                Ok(n)
            }
            Err(e) => Err(self.failed(e)),
        }
    }
}

impl<S: Read + Write> Write for TlsConnection<'_, S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, TlsError> {
        match self.session.write(buf).await {
            Ok(n) => Ok(n),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn flush(&mut self) -> Result<(), TlsError> {
        match self.session.flush().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Renegotiation (see the module documentation)
// ---------------------------------------------------------------------------------------------

extern "C" {
    fn __real_mbedtls_ssl_config_defaults(
        conf: *mut sys::mbedtls_ssl_config,
        endpoint: core::ffi::c_int,
        transport: core::ffi::c_int,
        preset: core::ffi::c_int,
    ) -> core::ffi::c_int;
}

/// `mbedtls_ssl_config_defaults`, then renegotiation enabled (the board links with
/// `--wrap=mbedtls_ssl_config_defaults`).
///
/// # Safety
/// As `mbedtls_ssl_config_defaults`: `conf` points to an initialised `mbedtls_ssl_config`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_mbedtls_ssl_config_defaults(
    conf: *mut sys::mbedtls_ssl_config,
    endpoint: core::ffi::c_int,
    transport: core::ffi::c_int,
    preset: core::ffi::c_int,
) -> core::ffi::c_int {
    // SAFETY: the caller's contract, passed on.
    let r = unsafe { __real_mbedtls_ssl_config_defaults(conf, endpoint, transport, preset) };
    if r == 0 {
        // SAFETY: `conf` was just set up by the real function.
        unsafe {
            sys::mbedtls_ssl_conf_renegotiation(
                conf,
                sys::MBEDTLS_SSL_RENEGOTIATION_ENABLED as core::ffi::c_int,
            )
        };
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Client only (see the module documentation, "Flash")
// ---------------------------------------------------------------------------------------------

/// Stands in for Mbed TLS's TLS 1.2 server state machine (the board links with
/// `--wrap=mbedtls_ssl_handshake_server_step`): the device is only ever a client, so the server
/// side and everything only it calls drop out of the image.
#[no_mangle]
pub extern "C" fn __wrap_mbedtls_ssl_handshake_server_step(
    _ssl: *mut sys::mbedtls_ssl_context,
) -> core::ffi::c_int {
    sys::MBEDTLS_ERR_SSL_FEATURE_UNAVAILABLE
}

/// As [`__wrap_mbedtls_ssl_handshake_server_step`], for TLS 1.3 (the board links with
/// `--wrap=mbedtls_ssl_tls13_handshake_server_step`).
#[no_mangle]
pub extern "C" fn __wrap_mbedtls_ssl_tls13_handshake_server_step(
    _ssl: *mut sys::mbedtls_ssl_context,
) -> core::ffi::c_int {
    sys::MBEDTLS_ERR_SSL_FEATURE_UNAVAILABLE
}

// ---------------------------------------------------------------------------------------------
// RNG adapter
// ---------------------------------------------------------------------------------------------

/// The board's rand_core 0.6 RNG seen as the rand_core 0.10 `CryptoRng` Mbed TLS draws from.
pub struct Rng<R>(pub R);

impl<R: rand_core::RngCore> rand_core_010::TryRng for Rng<R> {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl<R: rand_core::RngCore + rand_core::CryptoRng> rand_core_010::TryCryptoRng for Rng<R> {}

// ---------------------------------------------------------------------------------------------
// Clock
// ---------------------------------------------------------------------------------------------

/// Unix seconds at `Instant` zero; 0 until the board sets the time.
static EPOCH_AT_BOOT: AtomicU32 = AtomicU32::new(0);

/// Sets the UTC time certificates are checked against (from the board's clock, or the MP's
/// `Date`). Until it is set, every certificate date check fails (closed).
pub fn set_utc_now(now: UnixTime) {
    let base = now.0.saturating_sub(Instant::now().as_secs());
    EPOCH_AT_BOOT.store(u32::try_from(base).unwrap_or(u32::MAX), Ordering::Relaxed);
}

struct Clock;

impl sys::hook::wall_clock::MbedtlsWallClock for Clock {
    fn instant(&self) -> Option<sys::tm> {
        let base = EPOCH_AT_BOOT.load(Ordering::Relaxed);
        if base == 0 {
            return None;
        }
        let dt = UnixTime(u64::from(base) + Instant::now().as_secs()).to_datetime();
        Some(sys::tm {
            tm_sec: dt.second.into(),
            tm_min: dt.minute.into(),
            tm_hour: dt.hour.into(),
            tm_mday: dt.day.into(),
            tm_mon: i32::from(dt.month) - 1,
            tm_year: i32::from(dt.year) - 1900,
            tm_wday: 0,
            tm_yday: 0,
            tm_isdst: 0,
        })
    }
}

impl sys::hook::timer::MbedtlsTimer for Clock {
    fn now(&self) -> mbedtls_ms_time_t {
        Instant::now().as_millis() as mbedtls_ms_time_t
    }
}

static CLOCK: Clock = Clock;

fn install_clock() {
    // SAFETY: CLOCK is a 'static with no state of its own (the epoch is an atomic).
    unsafe {
        sys::hook::wall_clock::hook_wall_clock(Some(&CLOCK));
        sys::hook::timer::hook_timer(Some(&CLOCK));
    }
}

// ---------------------------------------------------------------------------------------------
// Pool
// ---------------------------------------------------------------------------------------------

/// A fixed pool behind Mbed TLS's `calloc`/`free`: first fit over 8-byte units, each block with
/// an 8-byte header (its length in units and whether it is used); free neighbours merge when a
/// search passes them. The board owns it as a `static` and exports `calloc` and `free` over it:
///
/// ```ignore
/// static TLS_POOL: Pool<{ 64 * 1024 }> = Pool::new();
/// #[no_mangle]
/// extern "C" fn calloc(n: usize, size: usize) -> *mut c_void { TLS_POOL.calloc(n, size) }
/// #[no_mangle]
/// extern "C" fn free(p: *mut c_void) { TLS_POOL.free(p) }
/// ```
pub struct Pool<const BYTES: usize> {
    mem: UnsafeCell<PoolMem<BYTES>>,
    state: Mutex<RefCell<PoolState>>,
}

#[repr(C, align(8))]
struct PoolMem<const BYTES: usize>([u8; BYTES]);

#[derive(Clone, Copy)]
struct PoolState {
    initialised: bool,
    in_use: usize,
    peak: usize,
    failures: u32,
}

// SAFETY: every access to `mem` happens inside a critical section (through `state`).
unsafe impl<const BYTES: usize> Sync for Pool<BYTES> {}

const UNIT: usize = 8;
const USED: u32 = 1;

impl<const BYTES: usize> Pool<BYTES> {
    const UNITS: usize = BYTES / UNIT;

    /// An empty pool.
    pub const fn new() -> Self {
        Self {
            mem: UnsafeCell::new(PoolMem([0; BYTES])),
            state: Mutex::new(RefCell::new(PoolState {
                initialised: false,
                in_use: 0,
                peak: 0,
                failures: 0,
            })),
        }
    }

    fn header(&self, unit: usize) -> *mut u32 {
        // SAFETY: callers pass unit < UNITS; the memory is 8-aligned.
        unsafe { (self.mem.get() as *mut u8).add(unit * UNIT) as *mut u32 }
    }

    /// `calloc`: zeroed memory for `n * size` bytes, 8-aligned, or null.
    pub fn calloc(&self, n: usize, size: usize) -> *mut c_void {
        let Some(bytes) = n.checked_mul(size) else {
            return core::ptr::null_mut();
        };
        let want = bytes.div_ceil(UNIT).max(1) + 1; // + header
        critical_section::with(|cs| {
            let mut st = self.state.borrow_ref_mut(cs);
            if !st.initialised {
                // SAFETY: in the critical section; the whole pool is one free block.
                unsafe { *self.header(0) = (Self::UNITS as u32) << 1 };
                st.initialised = true;
            }
            let mut at = 0;
            while at < Self::UNITS {
                // SAFETY: `at` is a block start inside the pool.
                let h = unsafe { *self.header(at) };
                let mut len = (h >> 1) as usize;
                if h & USED == 0 {
                    // Merge the free blocks that follow.
                    while at + len < Self::UNITS {
                        // SAFETY: as above.
                        let next = unsafe { *self.header(at + len) };
                        if next & USED != 0 {
                            break;
                        }
                        len += (next >> 1) as usize;
                    }
                    if len >= want {
                        let rest = len - want;
                        let take = if rest >= 2 { want } else { len };
                        // SAFETY: both headers lie inside the merged free block.
                        unsafe {
                            *self.header(at) = ((take as u32) << 1) | USED;
                            if take < len {
                                *self.header(at + take) = ((len - take) as u32) << 1;
                            }
                            let data = (self.header(at) as *mut u8).add(UNIT);
                            core::ptr::write_bytes(data, 0, (take - 1) * UNIT);
                            st.in_use += take * UNIT;
                            st.peak = st.peak.max(st.in_use);
                            return data as *mut c_void;
                        }
                    }
                    // SAFETY: record the merge.
                    unsafe { *self.header(at) = (len as u32) << 1 };
                }
                at += len;
            }
            st.failures += 1;
            core::ptr::null_mut()
        })
    }

    /// `free`: returns a block from [`Pool::calloc`]; null is ignored.
    pub fn free(&self, p: *mut c_void) {
        if p.is_null() {
            return;
        }
        critical_section::with(|cs| {
            let mut st = self.state.borrow_ref_mut(cs);
            let base = self.mem.get() as usize;
            let offset = (p as usize).wrapping_sub(base);
            if offset < UNIT || offset >= BYTES || !offset.is_multiple_of(UNIT) {
                return; // not from this pool
            }
            let unit = offset / UNIT - 1;
            // SAFETY: unit is inside the pool.
            unsafe {
                let h = self.header(unit);
                if *h & USED != 0 {
                    st.in_use -= ((*h >> 1) as usize) * UNIT;
                    *h &= !USED;
                }
            }
        })
    }

    /// Bytes in use now, the high-water mark (headers included), and failed allocations.
    pub fn usage(&self) -> PoolUsage {
        critical_section::with(|cs| {
            let st = self.state.borrow_ref(cs);
            PoolUsage {
                size: BYTES,
                in_use: st.in_use,
                peak: st.peak,
                failures: st.failures,
            }
        })
    }
}

impl<const BYTES: usize> Default for Pool<BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a [`Pool`] holds and held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct PoolUsage {
    /// The pool's size in bytes.
    pub size: usize,
    /// Bytes allocated now.
    pub in_use: usize,
    /// The most bytes allocated at once.
    pub peak: usize,
    /// Allocations refused for want of space.
    pub failures: u32,
}
