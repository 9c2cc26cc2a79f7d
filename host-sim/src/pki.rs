//! A test PKI for native mode (docs/protocol.md §1, §7): a certification authority in a directory,
//! and the device, ISV proxy and MP server certificates it issues, plus a CRL. For tests and for
//! administrators trying native mode out; a real site uses its enterprise CA.
//!
//! `mpagent-sim pki init --dir D` makes the CA; `pki issue --dir D --cn NAME --kind …` issues a
//! leaf; `pki revoke` / `pki crl` maintain the CRL. What a directory holds:
//!
//! | file | what |
//! |---|---|
//! | `ca.der`, `ca.pem` | the CA certificate (P-256, self-signed, CA:TRUE, keyCertSign + cRLSign) |
//! | `ca.key.pk8`, `ca.key.pem` | its key, PKCS#8 (mode 0600) |
//! | `NAME.der`, `NAME.pem`, `NAME.key.pk8`, `NAME.key.pem` | an issued certificate and key |
//! | `revoked.txt` | revoked serials (hex) with the time of revocation |
//! | `crl.der`, `crl.pem` | the current CRL (remade by `init`, `revoke` and `crl`) |
//!
//! What the leaves carry ([`CertKind`]): device and proxy certificates get digitalSignature, the
//! two SMS EKUs (`1.3.6.1.4.1.311.101.2` signing, `1.3.6.1.4.1.311.101` encryption) and
//! clientAuth; server certificates get digitalSignature, serverAuth and the DNS names / IP
//! addresses given (the CN when none). Every certificate gets a random positive 16-byte serial,
//! subject and authority key identifiers, and a validity backdated by five minutes unless a start
//! is given.
//!
//! **Why rcgen** (0.14, `ring` backend): it is the rustls project's own certificate generator, so
//! the certificates are made by the same ecosystem that verifies them in the emulator, it builds
//! CRLs, and with `ring` it adds no crypto library beyond the one rustls already compiles here
//! (no aws-lc: no cmake or NASM). x509-cert's builder (0.2) would have served for certificates
//! but has no CRL builder. rcgen cannot read an existing CA certificate without its
//! `x509-parser` feature (a second ASN.1 stack); instead [`TestCa::load`] rebuilds the issuer from
//! the CA's common name (read with x509-cert) and checks, after each issue, that the new
//! certificate's issuer is byte for byte the CA's subject.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use time::OffsetDateTime;

/// The CA certificate, DER.
pub const CA_CERT_DER: &str = "ca.der";
/// The CA certificate, PEM.
pub const CA_CERT_PEM: &str = "ca.pem";
/// The CA key, PKCS#8 DER.
pub const CA_KEY_PK8: &str = "ca.key.pk8";
/// The CA key, PKCS#8 PEM.
pub const CA_KEY_PEM: &str = "ca.key.pem";
/// The CRL, DER.
pub const CRL_DER: &str = "crl.der";
/// The CRL, PEM.
pub const CRL_PEM: &str = "crl.pem";
/// Revoked serials, one `HEX UNIX_SECONDS` a line.
pub const REVOKED_FILE: &str = "revoked.txt";

/// `1.3.6.1.4.1.311.101.2`, SMS signing (docs/protocol.md §7).
const EKU_SMS_SIGNING: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 101, 2];
/// `1.3.6.1.4.1.311.101`, SMS encryption (docs/protocol.md §7).
const EKU_SMS_ENCRYPTION: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 101];
/// Validity is backdated this much (clock skew between the CA and its relying parties).
const BACKDATE_SECS: i64 = 300;
/// How long a CRL is valid for.
const CRL_VALIDITY_DAYS: i64 = 30;

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertKind {
    /// A native-mode appliance: TLS client + SMS signing/encryption.
    Device,
    /// An ISV proxy: the same usages as a device (it also speaks TLS as a client).
    Proxy,
    /// An MP (HTTPS server): serverAuth and subject alternative names.
    Server,
}

/// A certificate to issue.
#[derive(Debug, Clone)]
pub struct IssueParams {
    /// Subject common name.
    pub common_name: String,
    /// What it is for.
    pub kind: CertKind,
    /// Subject alternative names: DNS names, or IP addresses (given as text). Server certificates
    /// without any get the common name.
    pub san: Vec<String>,
    /// Start of validity (Unix seconds); `None`: five minutes ago.
    pub not_before: Option<i64>,
    /// Length of validity in days (at least 1).
    pub days: u32,
    /// File stem in the CA directory; `None`: the common name with anything but letters, digits,
    /// `-`, `_` and `.` replaced by `_`.
    pub file_stem: Option<String>,
}

impl IssueParams {
    /// A certificate of `kind` for `common_name`, valid from five minutes ago for a year.
    pub fn new(common_name: &str, kind: CertKind) -> Self {
        IssueParams {
            common_name: common_name.into(),
            kind,
            san: Vec::new(),
            not_before: None,
            days: 365,
            file_stem: None,
        }
    }
}

/// An issued certificate and where it was written.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
    /// The serial number, upper-case hex without leading zeros.
    pub serial_hex: String,
    /// `NAME.der`.
    pub cert_der_path: PathBuf,
    /// `NAME.pem`.
    pub cert_pem_path: PathBuf,
    /// `NAME.key.pk8`.
    pub key_der_path: PathBuf,
    /// `NAME.key.pem`.
    pub key_pem_path: PathBuf,
}

/// A test CA kept in a directory (see the module docs).
pub struct TestCa {
    dir: PathBuf,
    key: KeyPair,
    params: CertificateParams,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("dir", &self.dir).finish()
    }
}

/// The CA's parameters, a function of its common name only (so that [`TestCa::load`] can
/// rebuild the issuer).
fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, common_name.to_string());
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.key_identifier_method = KeyIdMethod::Sha256;
    p
}

fn datetime(unix: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| anyhow!("time {unix}: {e}"))
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// A random positive serial of 16 bytes without a leading zero byte (so its DER INTEGER content is
/// exactly these bytes).
fn random_serial() -> Vec<u8> {
    use rand_core::RngCore;
    let mut s = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut s);
    s[0] = (s[0] & 0x7F) | 0x01;
    s.to_vec()
}

/// `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ssZ` (UTC) → Unix seconds.
pub fn parse_date(s: &str) -> Result<i64> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    crate::mp::util::parse_utc_timestamp(&full)
        .map(|t| t as i64)
        .ok_or_else(|| anyhow!("'{s}' is not YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ"))
}

/// The stem a common name is written under.
fn file_stem_for(common_name: &str) -> String {
    common_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Write a new file; refuses to replace one. `secret` files get mode 0600.
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = o.open(path).with_context(|| {
        format!(
            "creating {} (it must not exist already; choose another name or directory)",
            path.display()
        )
    })?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// The subject common name of a DER certificate.
fn subject_common_name(cert_der: &[u8]) -> Result<String> {
    use x509_cert::der::{asn1, Decode};
    let cert = x509_cert::Certificate::from_der(cert_der).context("unreadable certificate")?;
    const CN: x509_cert::der::asn1::ObjectIdentifier =
        x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == CN {
                if let Ok(s) = atv.value.decode_as::<asn1::Utf8StringRef<'_>>() {
                    return Ok(s.as_str().to_string());
                }
                if let Ok(s) = atv.value.decode_as::<asn1::PrintableStringRef<'_>>() {
                    return Ok(s.as_str().to_string());
                }
                bail!("the CA's common name is neither a UTF8String nor a PrintableString");
            }
        }
    }
    bail!("the CA certificate has no common name")
}

/// The serial number of a DER certificate as upper-case hex without leading zeros.
pub fn cert_serial_hex(cert_der: &[u8]) -> Result<String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert_der).context("unreadable certificate")?;
    Ok(serial_hex(cert.tbs_certificate.serial_number.as_bytes()))
}

fn serial_hex(bytes: &[u8]) -> String {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let s = hex::encode_upper(&bytes[first..]);
    if s.is_empty() {
        "0".into()
    } else {
        s
    }
}

impl TestCa {
    /// Make a new CA in `dir` (created if missing; refused if it already holds a CA), valid from
    /// five minutes ago for `days`, and an empty CRL.
    pub fn init(dir: &Path, common_name: &str, days: u32) -> Result<TestCa> {
        ensure!(!common_name.is_empty(), "the CA needs a common name");
        ensure!(days >= 1, "the CA must be valid for at least one day");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        ensure!(
            !dir.join(CA_CERT_DER).exists() && !dir.join(CA_KEY_PK8).exists(),
            "{} already holds a CA",
            dir.display()
        );
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(common_name);
        let start = now_unix() - BACKDATE_SECS;
        params.not_before = datetime(start)?;
        params.not_after = datetime(start + i64::from(days) * 86_400)?;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        let cert = params.self_signed(&key)?;
        let cert_der = cert.der().to_vec();
        let key_der = key.serialize_der();
        // (rcgen's PEM: LF line endings, 64 columns.)
        // Key first: a CA certificate without its key is useless, the reverse is harmless.
        write_new(&dir.join(CA_KEY_PK8), &key_der, true)?;
        write_new(&dir.join(CA_KEY_PEM), key.serialize_pem().as_bytes(), true)?;
        write_new(&dir.join(CA_CERT_DER), &cert_der, false)?;
        write_new(&dir.join(CA_CERT_PEM), cert.pem().as_bytes(), false)?;
        let ca = TestCa {
            dir: dir.to_path_buf(),
            key,
            params: ca_params(common_name),
            cert_der,
        };
        ca.write_crl()?;
        Ok(ca)
    }

    /// Open the CA in `dir`.
    pub fn load(dir: &Path) -> Result<TestCa> {
        let cert_path = dir.join(CA_CERT_DER);
        let key_path = dir.join(CA_KEY_PK8);
        let cert_der = fs::read(&cert_path).with_context(|| {
            format!(
                "reading {} (run `mpagent-sim pki init --dir {}` first)",
                cert_path.display(),
                dir.display()
            )
        })?;
        let key_der =
            fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::try_from(key_der.as_slice())
            .map_err(|e| anyhow!("{}: not a usable key: {e}", key_path.display()))?;
        let spki = mpagent_core::identity::cert_spki_der(&cert_der)
            .map_err(|e| anyhow!("{}: {e}", cert_path.display()))?;
        ensure!(
            spki == key.subject_public_key_info().as_slice(),
            "{} is not the key of {}",
            key_path.display(),
            cert_path.display()
        );
        let cn = subject_common_name(&cert_der)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        Ok(TestCa {
            dir: dir.to_path_buf(),
            key,
            params: ca_params(&cn),
            cert_der,
        })
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// `ca.pem`.
    pub fn cert_pem_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_PEM)
    }

    /// `crl.pem`.
    pub fn crl_pem_path(&self) -> PathBuf {
        self.dir.join(CRL_PEM)
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// Issue a leaf certificate with a new P-256 key and write it (see the module docs).
    pub fn issue(&self, p: &IssueParams) -> Result<Issued> {
        ensure!(
            !p.common_name.is_empty(),
            "the certificate needs a common name"
        );
        ensure!(
            p.days >= 1,
            "a certificate must be valid for at least one day"
        );
        let stem = p
            .file_stem
            .clone()
            .unwrap_or_else(|| file_stem_for(&p.common_name));
        ensure!(
            !stem.is_empty()
                && !stem.starts_with('.')
                && stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !matches!(stem.as_str(), "ca" | "crl"),
            "{stem:?} cannot be a file name here (letters, digits, -, _, . only; not ca or crl)"
        );
        let mut san = p.san.clone();
        if san.is_empty() && p.kind == CertKind::Server {
            san.push(p.common_name.clone());
        }
        let mut params =
            CertificateParams::new(san).map_err(|e| anyhow!("subject alternative names: {e}"))?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, p.common_name.clone());
        let start = p.not_before.unwrap_or_else(|| now_unix() - BACKDATE_SECS);
        params.not_before = datetime(start)?;
        params.not_after = datetime(start + i64::from(p.days) * 86_400)?;
        let serial = random_serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match p.kind {
            CertKind::Device | CertKind::Proxy => vec![
                ExtendedKeyUsagePurpose::Other(EKU_SMS_SIGNING.to_vec()),
                ExtendedKeyUsagePurpose::Other(EKU_SMS_ENCRYPTION.to_vec()),
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            CertKind::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer())?;
        let cert_der = cert.der().to_vec();
        self.check_issued_by_us(&cert_der)?;
        let key_der = key.serialize_der();
        let issued = Issued {
            serial_hex: serial_hex(&serial),
            cert_der_path: self.dir.join(format!("{stem}.der")),
            cert_pem_path: self.dir.join(format!("{stem}.pem")),
            key_der_path: self.dir.join(format!("{stem}.key.pk8")),
            key_pem_path: self.dir.join(format!("{stem}.key.pem")),
            cert_der,
            key_pkcs8: key_der,
        };
        for path in [
            &issued.cert_der_path,
            &issued.cert_pem_path,
            &issued.key_der_path,
            &issued.key_pem_path,
        ] {
            ensure!(
                !path.exists(),
                "{} exists already: choose another --out name",
                path.display()
            );
        }
        write_new(&issued.key_der_path, &issued.key_pkcs8, true)?;
        write_new(&issued.key_pem_path, key.serialize_pem().as_bytes(), true)?;
        write_new(&issued.cert_der_path, &issued.cert_der, false)?;
        write_new(&issued.cert_pem_path, cert.pem().as_bytes(), false)?;
        Ok(issued)
    }

    /// The rebuilt issuer must name the CA exactly as its certificate does.
    fn check_issued_by_us(&self, leaf_der: &[u8]) -> Result<()> {
        use x509_cert::der::Decode;
        let leaf = x509_cert::Certificate::from_der(leaf_der)?;
        let ca = x509_cert::Certificate::from_der(&self.cert_der)?;
        ensure!(
            leaf.tbs_certificate.issuer == ca.tbs_certificate.subject,
            "internal: the issued certificate's issuer does not match the CA's subject"
        );
        Ok(())
    }

    /// The revoked serials and when they were revoked.
    pub fn revoked(&self) -> Result<Vec<(String, i64)>> {
        let path = self.dir.join(REVOKED_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (serial, at) = l.trim().split_once(' ').ok_or_else(|| {
                    anyhow!("{}: bad line `{l}` (want SERIAL UNIX-TIME)", path.display())
                })?;
                Ok((serial.to_string(), at.parse()?))
            })
            .collect()
    }

    /// Revoke the certificate with serial `serial_hex` (any case, leading zeros ignored) and remake
    /// the CRL. Revoking twice is harmless.
    pub fn revoke(&self, serial_hex_in: &str) -> Result<()> {
        let bytes = hex::decode(if serial_hex_in.len() % 2 == 1 {
            format!("0{serial_hex_in}")
        } else {
            serial_hex_in.to_string()
        })
        .map_err(|e| anyhow!("serial `{serial_hex_in}` is not hex: {e}"))?;
        let serial = serial_hex(&bytes);
        ensure!(serial != "0", "serial 0 is not a certificate's");
        let mut list = self.revoked()?;
        if !list.iter().any(|(s, _)| *s == serial) {
            list.push((serial, now_unix()));
            let text: String = list.iter().map(|(s, t)| format!("{s} {t}\n")).collect();
            crate::client::state::write_atomic(&self.dir.join(REVOKED_FILE), text.as_bytes())?;
        }
        self.write_crl()
    }

    /// Remake `crl.der` / `crl.pem`: every revoked serial, valid from now for 30 days, with the
    /// current time as CRL number (increasing from one CRL to the next).
    pub fn write_crl(&self) -> Result<()> {
        let now = now_unix();
        let mut revoked_certs = Vec::new();
        for (serial, at) in self.revoked()? {
            let bytes = hex::decode(if serial.len() % 2 == 1 {
                format!("0{serial}")
            } else {
                serial.clone()
            })?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: datetime(at)?,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: datetime(now - BACKDATE_SECS)?,
            next_update: datetime(now + CRL_VALIDITY_DAYS * 86_400)?,
            crl_number: SerialNumber::from(now as u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer())?;
        let der = crl.der().to_vec();
        crate::client::state::write_atomic(&self.dir.join(CRL_DER), &der)?;
        crate::client::state::write_atomic(&self.dir.join(CRL_PEM), crl.pem()?.as_bytes())?;
        Ok(())
    }
}

// ---- Reading certificates, keys and CRLs from files (DER or PEM), for the client and the MP ----

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).take(4096).any(|w| w == b"-----BEGIN ")
}

/// Certificates from a DER file (one) or a PEM file (one or more, in order).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path)?;
    let certs = if is_pem(&bytes) {
        CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("{}: bad PEM: {e}", path.display()))?
    } else {
        vec![CertificateDer::from(bytes)]
    };
    ensure!(
        !certs.is_empty(),
        "{}: no CERTIFICATE in this PEM file",
        path.display()
    );
    Ok(certs)
}

/// A private key from a DER file (PKCS#8, or SEC1 `ECPrivateKey`) or a PEM file (`PRIVATE KEY`,
/// `EC PRIVATE KEY` or `RSA PRIVATE KEY`).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = read(path)?;
    if is_pem(&bytes) {
        return PrivateKeyDer::from_pem_slice(&bytes)
            .map_err(|e| anyhow!("{}: no usable private key in this PEM: {e}", path.display()));
    }
    // DER: PKCS#8 unless it parses as a SEC1 EC key (PKCS#8 has a version then a SEQUENCE, SEC1 a
    // version then an OCTET STRING).
    use p256::pkcs8::DecodePrivateKey;
    if p256::SecretKey::from_pkcs8_der(&bytes).is_ok()
        || mpagent_core::sign::RsaSigner::from_pkcs8_der(&bytes).is_ok()
    {
        return Ok(PrivateKeyDer::Pkcs8(bytes.into()));
    }
    if p256::SecretKey::from_sec1_der(&bytes).is_ok() {
        return Ok(PrivateKeyDer::Sec1(bytes.into()));
    }
    Ok(PrivateKeyDer::Pkcs8(bytes.into()))
}

/// CRLs from a DER file (one) or a PEM file (`X509 CRL`, one or more).
pub fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let bytes = read(path)?;
    let crls = if is_pem(&bytes) {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("{}: bad PEM: {e}", path.display()))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    ensure!(
        !crls.is_empty(),
        "{}: no X509 CRL in this file",
        path.display()
    );
    Ok(crls)
}

// ---- The command line ----

/// The `pki` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Make a test CA (P-256) in a directory: ca.der/ca.pem, ca.key.pk8/ca.key.pem, an empty CRL.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "mpagent Test CA")]
        cn: String,
        /// Validity of the CA certificate, days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a device, ISV proxy or MP server certificate with a new P-256 key:
    /// NAME.der/NAME.pem + NAME.key.pk8/NAME.key.pem in the CA directory.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// Subject common name.
        #[arg(long)]
        cn: String,
        #[arg(long, value_enum)]
        kind: CertKind,
        /// Subject alternative name (DNS name or IP address; repeatable). Server certificates
        /// without one get the CN.
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// Validity, days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Start of validity, YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ (default: five minutes ago).
        #[arg(long)]
        not_before: Option<String>,
        /// File name stem (default: the CN, made file-name safe).
        #[arg(long)]
        out: Option<String>,
    },
    /// Revoke a certificate (by file or serial) and remake the CRL.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        /// The certificate (DER or PEM).
        #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
        cert: Option<PathBuf>,
        /// Its serial number, hex.
        #[arg(long)]
        serial: Option<String>,
    },
    /// Remake the CRL (crl.der/crl.pem, valid 30 days) from revoked.txt.
    Crl {
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Runs one `pki` subcommand.
pub fn run(cmd: PkiCommand) -> Result<()> {
    match cmd {
        PkiCommand::Init { dir, cn, days } => {
            let ca = TestCa::init(&dir, &cn, days)?;
            println!(
                "CA {cn:?} in {}: {CA_CERT_PEM} (give it to clients as --ca and to the MP as \
                 --client-ca), {CA_KEY_PK8}, {CRL_PEM}",
                ca.dir().display()
            );
            Ok(())
        }
        PkiCommand::Issue {
            dir,
            cn,
            kind,
            dns,
            days,
            not_before,
            out,
        } => {
            let ca = TestCa::load(&dir)?;
            let issued = ca.issue(&IssueParams {
                common_name: cn,
                kind,
                san: dns,
                not_before: not_before.as_deref().map(parse_date).transpose()?,
                days,
                file_stem: out,
            })?;
            println!(
                "issued serial {}: {} ({}), key {} ({})",
                issued.serial_hex,
                issued.cert_pem_path.display(),
                issued.cert_der_path.display(),
                issued.key_pem_path.display(),
                issued.key_der_path.display()
            );
            Ok(())
        }
        PkiCommand::Revoke { dir, cert, serial } => {
            let ca = TestCa::load(&dir)?;
            let serial = match (cert, serial) {
                (Some(path), None) => {
                    let der = read_certs(&path)?.remove(0);
                    cert_serial_hex(&der)?
                }
                (None, Some(s)) => s,
                _ => bail!("give exactly one of --cert and --serial"),
            };
            ca.revoke(&serial)?;
            println!(
                "revoked {serial}; CRL {} remade",
                ca.crl_pem_path().display()
            );
            Ok(())
        }
        PkiCommand::Crl { dir } => {
            let ca = TestCa::load(&dir)?;
            ca.write_crl()?;
            println!("CRL {} remade", ca.crl_pem_path().display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpagent_core::identity::{
        cert_has_eku, cert_validity, EKU_SMS_ENCRYPTION, EKU_SMS_SIGNING,
    };

    #[test]
    fn ca_issues_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::init(dir.path(), "mpagent Test CA", 10).unwrap();
        assert!(TestCa::init(dir.path(), "again", 10).is_err());
        let dev = ca
            .issue(&IssueParams::new("PRN 1", CertKind::Device))
            .unwrap();
        assert!(dev.cert_der_path.ends_with("PRN_1.der"));
        assert!(cert_has_eku(&dev.cert_der, &EKU_SMS_SIGNING).unwrap());
        assert!(cert_has_eku(&dev.cert_der, &EKU_SMS_ENCRYPTION).unwrap());
        let (nb, na) = cert_validity(&dev.cert_der).unwrap();
        assert_eq!(na.0 - nb.0, 365 * 86_400);
        // Reloaded, the CA issues certificates with the same issuer name.
        let again = TestCa::load(dir.path()).unwrap();
        let srv = again
            .issue(&IssueParams {
                san: vec!["mp.test".into(), "127.0.0.1".into()],
                ..IssueParams::new("mp.test", CertKind::Server)
            })
            .unwrap();
        assert!(!cert_has_eku(&srv.cert_der, &EKU_SMS_SIGNING).unwrap());
        assert_eq!(cert_serial_hex(&srv.cert_der).unwrap(), srv.serial_hex);
        // The same name twice is refused rather than overwritten.
        assert!(ca
            .issue(&IssueParams::new("PRN 1", CertKind::Device))
            .is_err());
        // Files read back as DER and PEM alike.
        assert_eq!(
            read_certs(&dev.cert_pem_path).unwrap()[0].as_ref(),
            &dev.cert_der[..]
        );
        assert_eq!(
            read_certs(&dev.cert_der_path).unwrap()[0].as_ref(),
            &dev.cert_der[..]
        );
        let k1 = read_private_key(&dev.key_pem_path).unwrap();
        let k2 = read_private_key(&dev.key_der_path).unwrap();
        assert_eq!(k1.secret_der(), k2.secret_der());
        assert!(matches!(k2, PrivateKeyDer::Pkcs8(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dev.key_der_path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }

    #[test]
    fn revocation_list_grows() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::init(dir.path(), "CA", 10).unwrap();
        assert_eq!(read_crls(&ca.crl_pem_path()).unwrap().len(), 1);
        let dev = ca.issue(&IssueParams::new("d", CertKind::Device)).unwrap();
        ca.revoke(&dev.serial_hex.to_ascii_lowercase()).unwrap();
        ca.revoke(&format!("00{}", dev.serial_hex)).unwrap();
        assert_eq!(ca.revoked().unwrap().len(), 1);
        assert_eq!(ca.revoked().unwrap()[0].0, dev.serial_hex);
        assert!(ca.revoke("xyz").is_err());
    }

    #[test]
    fn dates_and_names() {
        assert_eq!(parse_date("2020-01-01").unwrap(), 1_577_836_800);
        assert_eq!(parse_date("2020-01-01T00:00:10Z").unwrap(), 1_577_836_810);
        assert!(parse_date("01/01/2020").is_err());
        assert_eq!(file_stem_for("mpagent Test/CA"), "mpagent_Test_CA");
        assert_eq!(serial_hex(&[0, 0, 0x0A]), "0A");
    }
}
