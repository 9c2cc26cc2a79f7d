//! The host client's state directory: the identity (PKCS#8 key, DER certificate) made on first
//! run and the registration state. Every file is replaced atomically (write, fsync, rename), so a
//! crash leaves either the old or the new version, never a torn one. Temp files have names of
//! their own per process and write, so two writers never share one; the key is written 0600.
//! [`StateDir::open_locked`] holds the directory's [`StateLock`] for the process's lifetime.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::Smsid;
use mpagent_core::identity::{
    build_self_signed, build_self_signed_p256, cert_spki_der, CertParams, MAX_CERT_LEN,
    MAX_RSA_CERT_LEN,
};

// Both certificates fit the one buffer `ClientSigner::self_signed_cert` uses.
const _: () = assert!(MAX_CERT_LEN <= MAX_RSA_CERT_LEN);
use mpagent_core::sign::rsa::{RSA_PKCS8_DER_MAX_LEN, RSA_SPKI_DER_MAX_LEN};
use mpagent_core::sign::{
    P256Signer, RsaKeyError, RsaSigner, SignError, SignatureBytes, SignatureScheme, Signer,
};
use mpagent_core::time::UnixTime;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};

use crate::sign::{HostP256Signer, HostRsaSigner};
use crate::state_lock::StateLock;

/// Files in a state directory.
pub const KEY_FILE: &str = "key.pk8";
/// The certificate (DER), also what an administrator would import.
pub const CERT_FILE: &str = "cert.der";
/// `unregistered`, `pending GUID:…`, `registered GUID:…` or `rejected {unix seconds}` (plain
/// `rejected`, written by older versions, reads as rejected long ago).
pub const REGISTRATION_FILE: &str = "registration";
/// A new identity and its registration, written whole before any of the three files above is
/// replaced by it ([`StateDir::replace_identity`]); its presence means "finish the switch".
pub const NEXT_IDENTITY_FILE: &str = "identity.next";
/// The first line of [`NEXT_IDENTITY_FILE`].
const NEXT_IDENTITY_MAGIC: &[u8] = b"mpagent identity switch 1\n";

/// The kind of key a new identity gets (an existing identity keeps the key it has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyKind {
    /// ECDSA P-256 (our profile; what the emulator and secure elements do).
    #[default]
    P256,
    /// RSA-2048, PKCS#1 v1.5 (what real current-branch sites take, docs/protocol.md §6).
    Rsa2048,
}

impl KeyKind {
    /// How people call it.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::P256 => "P-256",
            KeyKind::Rsa2048 => "RSA-2048",
        }
    }
}

/// The identity's signing key, of either kind; the rest of the client does not care which.
#[derive(Clone)]
pub enum ClientSigner {
    /// ECDSA P-256, signing through OpenSSL ([`HostP256Signer`]: the host's fast signer).
    P256(HostP256Signer),
    /// RSA-2048, signing through OpenSSL ([`HostRsaSigner`]: byte-identical to the core's).
    Rsa(HostRsaSigner),
}

impl std::fmt::Debug for ClientSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientSigner({})", self.kind().name())
    }
}

impl ClientSigner {
    /// A fresh key of `kind`.
    pub fn generate(kind: KeyKind) -> Result<Self> {
        let mut rng = rand_core::OsRng;
        Ok(match kind {
            KeyKind::P256 => Self::P256(host_p256(P256Signer::generate(&mut rng))?),
            KeyKind::Rsa2048 => Self::Rsa(
                HostRsaSigner::generate()
                    .map_err(|e| anyhow!("generating an RSA-2048 key: {e}"))?,
            ),
        })
    }

    /// Read a PKCS#8 key, telling the algorithm from its AlgorithmIdentifier.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        match RsaSigner::from_pkcs8_der(der) {
            Ok(key) => Ok(Self::Rsa(
                HostRsaSigner::new(Box::new(key))
                    .map_err(|e| anyhow!("loading the RSA-2048 key into OpenSSL: {e}"))?,
            )),
            Err(rsa) => match p256::ecdsa::SigningKey::from_pkcs8_der(der) {
                Ok(key) => Ok(Self::P256(host_p256(P256Signer::new(key))?)),
                // A damaged key may not say which kind it was: an RSA error is only named when
                // the key says it is RSA.
                Err(e) if matches!(rsa, RsaKeyError::NotRsa) => {
                    Err(anyhow!("not a usable P-256 PKCS#8 key ({e})"))
                }
                Err(e) => Err(anyhow!(
                    "not a usable key: neither RSA-2048 ({rsa}) nor P-256 PKCS#8 ({e})"
                )),
            },
        }
    }

    /// The key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>> {
        match self {
            Self::P256(s) => Ok(s
                .signing_key()
                .to_pkcs8_der()
                .map_err(|e| anyhow!("encoding the key: {e}"))?
                .as_bytes()
                .to_vec()),
            Self::Rsa(s) => {
                let mut buf = [0u8; RSA_PKCS8_DER_MAX_LEN];
                Ok(s.to_pkcs8_der(&mut buf)
                    .map_err(|e| anyhow!("encoding the key: {e}"))?
                    .to_vec())
            }
        }
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>> {
        match self {
            Self::P256(s) => Ok(s
                .verifying_key()
                .to_public_key_der()
                .map_err(|e| anyhow!("encoding the public key: {e}"))?
                .as_bytes()
                .to_vec()),
            Self::Rsa(s) => {
                let mut buf = [0u8; RSA_SPKI_DER_MAX_LEN];
                Ok(s.spki_der(&mut buf)
                    .map_err(|e| anyhow!("encoding the public key: {e}"))?
                    .to_vec())
            }
        }
    }

    /// Which kind of key this is.
    pub fn kind(&self) -> KeyKind {
        match self {
            Self::P256(_) => KeyKind::P256,
            Self::Rsa(_) => KeyKind::Rsa2048,
        }
    }

    /// A self-signed certificate for this key (docs/protocol.md §7).
    pub fn self_signed_cert(&self, params: &CertParams<'_>) -> Result<Vec<u8>> {
        let mut buf = [0u8; MAX_RSA_CERT_LEN];
        let len = match self {
            Self::P256(s) => build_self_signed_p256(params, s, &mut buf),
            // The core's certificate code with OpenSSL signing it (the same bytes as
            // `build_self_signed_rsa`: PKCS#1 v1.5 is deterministic).
            Self::Rsa(s) => {
                let mut spki = [0u8; RSA_SPKI_DER_MAX_LEN];
                let spki = s
                    .spki_der(&mut spki)
                    .map_err(|e| anyhow!("encoding the public key: {e}"))?;
                build_self_signed(params, spki, s, &mut buf)
            }
        }
        .map_err(|e| anyhow!("building the self-signed certificate: {e}"))?;
        Ok(buf[..len].to_vec())
    }

    fn inner(&self) -> &dyn Signer {
        match self {
            Self::P256(s) => s,
            Self::Rsa(s) => s,
        }
    }
}

/// The host's fast signer for a P-256 key.
pub fn host_p256(key: P256Signer) -> Result<HostP256Signer> {
    HostP256Signer::new(key).map_err(|e| anyhow!("loading the P-256 key into OpenSSL: {e}"))
}

impl Signer for ClientSigner {
    fn scheme(&self) -> SignatureScheme {
        self.inner().scheme()
    }
    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        self.inner().sign_sha256(digest)
    }
    fn sign_sha1(&self, digest: &[u8; 20]) -> Result<SignatureBytes, SignError> {
        self.inner().sign_sha1(digest)
    }
}

/// A client's persistent identity.
#[derive(Debug)]
pub struct Identity {
    /// The signing key.
    pub signer: ClientSigner,
    /// Its self-signed certificate.
    pub cert_der: Vec<u8>,
    /// Whether this run created it.
    pub created: bool,
}

/// A state directory.
pub struct StateDir {
    dir: PathBuf,
    lock: Option<StateLock>,
}

impl StateDir {
    /// Open (and create) `dir` without locking it: for a process that already holds its lock
    /// through another [`StateDir`], or that only reads.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating state dir {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            lock: None,
        })
    }

    /// Open (and create) `dir` and lock it for as long as the returned value lives; a second
    /// process gets [`crate::state_lock::StateLockError::InUse`] naming the owner's PID. Temp
    /// files a killed owner left are removed (no one else can be writing them now).
    pub fn open_locked(dir: &Path) -> Result<Self> {
        let mut st = Self::open(dir)?;
        st.lock = Some(StateLock::acquire(dir)?);
        remove_stale_temps(dir);
        st.finish_identity_switch()?;
        Ok(st)
    }

    /// Whether this value holds the directory's lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Load the identity, or create a P-256 key and self-signed certificate on first run.
    pub fn load_or_create_identity(&self, common_name: &str, now: UnixTime) -> Result<Identity> {
        self.load_or_create_identity_with(common_name, now, KeyKind::P256)
    }

    /// Load the identity (whatever its key), or create one with a `kind` key on first run.
    pub fn load_or_create_identity_with(
        &self,
        common_name: &str,
        now: UnixTime,
        kind: KeyKind,
    ) -> Result<Identity> {
        let key_path = self.dir.join(KEY_FILE);
        let cert_path = self.dir.join(CERT_FILE);
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => {
                tighten_key_mode(&key_path)?;
                let der = fs::read(&key_path)?;
                let signer = ClientSigner::from_pkcs8_der(&der)
                    .with_context(|| format!("{}", key_path.display()))?;
                let cert_der = fs::read(&cert_path)?;
                let cert_key = cert_spki_der(&cert_der)
                    .map_err(|e| anyhow!("{}: unreadable certificate: {e}", cert_path.display()))?;
                if signer.spki_der()? != cert_key {
                    bail!(
                        "{} and {} do not belong together (the certificate's public key is not the key's)",
                        key_path.display(),
                        cert_path.display()
                    );
                }
                if signer.kind() != kind {
                    tracing::info!(
                        "{}: the identity has a {} key; keeping it (a {} key is only made for a new identity)",
                        self.dir.display(),
                        signer.kind().name(),
                        kind.name()
                    );
                }
                Ok(Identity {
                    signer,
                    cert_der,
                    created: false,
                })
            }
            (false, false) => self.create_identity(common_name, now, kind),
            (has_key, _) => {
                // A half identity is what a run killed between the two writes leaves. If it
                // never reached the site it is worth nothing and is made again; once the site
                // knows it, only the administrator can decide.
                let state = self.registration()?;
                if state != RegistrationState::Unregistered {
                    bail!(
                        "state dir {} holds only {} (no {}) and its registration state is {}; \
                         the site knows this identity, so a new one is not made over it: restore \
                         the missing file, or remove the directory to register as a new client",
                        self.dir.display(),
                        if has_key { KEY_FILE } else { CERT_FILE },
                        if has_key { CERT_FILE } else { KEY_FILE },
                        format_registration(state)
                    );
                }
                tracing::warn!(
                    "{}: half-made identity (only {}) that was never registered; making a new one",
                    self.dir.display(),
                    if has_key { KEY_FILE } else { CERT_FILE }
                );
                for p in [&key_path, &cert_path] {
                    match fs::remove_file(p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("removing {}", p.display()))
                        }
                    }
                }
                self.create_identity(common_name, now, kind)
            }
        }
    }

    fn create_identity(&self, common_name: &str, now: UnixTime, kind: KeyKind) -> Result<Identity> {
        let signer = ClientSigner::generate(kind)?;
        let params = CertParams::self_signed_now(common_name, now, &mut rand_core::OsRng);
        let cert_der = signer.self_signed_cert(&params)?;
        let pk8 = signer.to_pkcs8_der()?;
        // Key first, certificate last: the certificate's presence means the pair is complete,
        // and a kill in between leaves a key alone, which the next run replaces (never
        // registered: the registration comes after the identity).
        write_private(&self.dir.join(KEY_FILE), &pk8)?;
        write_atomic(&self.dir.join(CERT_FILE), &cert_der)?;
        Ok(Identity {
            signer,
            cert_der,
            created: true,
        })
    }

    /// A new key of `kind` and its self-signed certificate, made in memory only (the site asked
    /// for a new certificate); [`Self::replace_identity`] stores it once the site knows it.
    pub fn make_identity(common_name: &str, now: UnixTime, kind: KeyKind) -> Result<Identity> {
        let signer = ClientSigner::generate(kind)?;
        let params = CertParams::self_signed_now(common_name, now, &mut rand_core::OsRng);
        let cert_der = signer.self_signed_cert(&params)?;
        Ok(Identity {
            signer,
            cert_der,
            created: true,
        })
    }

    /// Replace the stored identity (key, certificate, registration state) by `identity`
    /// registered as `state`, so that a crash at any point leaves one whole identity: the new
    /// one is first written whole to [`NEXT_IDENTITY_FILE`] (atomically); then the three files
    /// are replaced one by one and the record removed. A crash before the record exists leaves
    /// the old identity; after, the next [`Self::open_locked`] finishes the switch.
    pub fn replace_identity(&self, identity: &Identity, state: RegistrationState) -> Result<()> {
        self.replace_identity_steps(identity, state, usize::MAX)
    }

    /// [`Self::replace_identity`] stopped after `steps` of its durable writes (a crash, for
    /// tests): 1 record, 2 key, 3 certificate, 4 registration, 5 record removed.
    fn replace_identity_steps(
        &self,
        identity: &Identity,
        state: RegistrationState,
        steps: usize,
    ) -> Result<()> {
        let key = identity.signer.to_pkcs8_der()?;
        let mut record = NEXT_IDENTITY_MAGIC.to_vec();
        for part in [&key[..], &identity.cert_der[..]] {
            let len = u32::try_from(part.len()).context("identity part over 4 GiB")?;
            record.extend_from_slice(&len.to_le_bytes());
            record.extend_from_slice(part);
        }
        record.extend_from_slice(format_registration(state).as_bytes());
        if steps == 0 {
            return Ok(());
        }
        write_private(&self.dir.join(NEXT_IDENTITY_FILE), &record)?;
        self.apply_identity_switch(&record, steps - 1)
    }

    /// Finish a switch a crash interrupted (see [`Self::replace_identity`]).
    fn finish_identity_switch(&self) -> Result<()> {
        let path = self.dir.join(NEXT_IDENTITY_FILE);
        let record = match fs::read(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        tracing::warn!(
            "{}: a switch to a new identity was interrupted; finishing it",
            self.dir.display()
        );
        self.apply_identity_switch(&record, usize::MAX)
    }

    /// Write the identity of a switch record to the three files and remove the record, stopping
    /// after `steps` writes. Rewriting a file already written is harmless, so this may run again.
    fn apply_identity_switch(&self, record: &[u8], steps: usize) -> Result<()> {
        let path = self.dir.join(NEXT_IDENTITY_FILE);
        let (key, cert, state) = parse_switch_record(record).ok_or_else(|| {
            anyhow!(
                "{} is damaged (it is written whole, so the disk changed it): the identity cannot \
                 be told; restore the directory from a backup, or remove it to register as a new \
                 client",
                path.display()
            )
        })?;
        let steps_to_run: [&dyn Fn() -> Result<()>; 4] = [
            &|| write_private(&self.dir.join(KEY_FILE), key),
            &|| write_atomic(&self.dir.join(CERT_FILE), cert),
            &|| self.save_registration(state),
            &|| {
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                fs::File::open(&self.dir)?.sync_all()?;
                Ok(())
            },
        ];
        for step in steps_to_run.iter().take(steps) {
            step()?;
        }
        Ok(())
    }

    /// The persisted registration state.
    pub fn registration(&self) -> Result<RegistrationState> {
        let path = self.dir.join(REGISTRATION_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RegistrationState::Unregistered)
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        parse_registration(text.trim())
            .with_context(|| format!("{}: unreadable registration state", path.display()))
    }

    /// Persist the registration state.
    pub fn save_registration(&self, state: RegistrationState) -> Result<()> {
        write_atomic(
            &self.dir.join(REGISTRATION_FILE),
            format_registration(state).as_bytes(),
        )
    }
}

/// Key, certificate and registration state of a [`NEXT_IDENTITY_FILE`] record.
fn parse_switch_record(record: &[u8]) -> Option<(&[u8], &[u8], RegistrationState)> {
    let mut rest = record.strip_prefix(NEXT_IDENTITY_MAGIC)?;
    let mut part = || {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if tail.len() < len {
            return None;
        }
        let (part, tail) = tail.split_at(len);
        rest = tail;
        Some(part)
    };
    let key = part()?;
    let cert = part()?;
    let state = parse_registration(std::str::from_utf8(rest).ok()?.trim()).ok()?;
    Some((key, cert, state))
}

fn format_registration(state: RegistrationState) -> String {
    match state {
        RegistrationState::Unregistered => "unregistered".into(),
        RegistrationState::Pending(id) => format!("pending {id}"),
        RegistrationState::Registered(id) => format!("registered {id}"),
        RegistrationState::Rejected(at) => format!("rejected {}", at.0),
    }
}

fn parse_registration(text: &str) -> Result<RegistrationState> {
    // The file's text is quoted with its control characters escaped: it may be anything.
    let smsid = |s: &str| {
        Smsid::parse(s.as_bytes()).ok_or_else(|| {
            anyhow!(
                "'{}' is not an SMSID (GUID:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                s.escape_debug()
            )
        })
    };
    Ok(match text.split_once(' ') {
        None if text == "unregistered" => RegistrationState::Unregistered,
        // Written before rejections carried their time: rejected long ago, asked again now.
        None if text == "rejected" => RegistrationState::Rejected(UnixTime(0)),
        Some(("rejected", at)) => {
            RegistrationState::Rejected(UnixTime(at.parse().map_err(|_| {
                anyhow!(
                    "'{}' is not a rejection time (seconds since 1970)",
                    at.escape_debug()
                )
            })?))
        }
        Some(("pending", id)) => RegistrationState::Pending(smsid(id)?),
        Some(("registered", id)) => RegistrationState::Registered(smsid(id)?),
        _ => bail!(
            "'{}' is none of: unregistered, pending <SMSID>, registered <SMSID>, rejected <time>",
            text.escape_debug()
        ),
    })
}

/// Marks this module's temp files: `.{name}.tmp-{pid}-{n}` beside their target.
const TEMP_MARK: &str = ".tmp-";

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] for a secret: the file is 0600 from its creation (never readable by others,
/// not even for a moment).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}{TEMP_MARK}{}-{n}", std::process::id()))
}

/// Remove the temp files a killed process left in `dir` (best effort: a leftover is harmless).
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(TEMP_MARK) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// A key readable by group or others is made 0600 (with a warning naming it) rather than
/// refused: the files of older versions were created 0644 and the owner can do nothing else.
fn tighten_key_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private (chmod 600)", path.display()))?;
        tracing::warn!(
            "{} was readable by others (mode {:o}); made it 0600",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = temp_path(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpagent_core::identity::build_self_signed_rsa;

    /// A crash after every durable write of an identity switch (and inside the next write: a
    /// torn temp file beside it) leaves one whole identity: the old one with its registration
    /// until the switch record exists, the new one with its registration from then on, once
    /// the directory is opened again.
    #[test]
    fn an_identity_switch_cut_at_every_step_leaves_one_whole_identity() {
        let now = UnixTime(1_764_000_000);
        let old_id = Smsid::parse(b"GUID:11111111-2222-3333-4444-555555555555").unwrap();
        let new_id = Smsid::parse(b"GUID:66666666-2222-3333-4444-555555555555").unwrap();
        for steps in 0..=5 {
            let dir = tempfile::tempdir().unwrap();
            let st = StateDir::open_locked(dir.path()).unwrap();
            let old = st
                .load_or_create_identity_with("SWITCH", now, KeyKind::P256)
                .unwrap();
            st.save_registration(RegistrationState::Registered(old_id))
                .unwrap();
            let new = StateDir::make_identity("SWITCH", now, KeyKind::P256).unwrap();
            st.replace_identity_steps(&new, RegistrationState::Pending(new_id), steps)
                .unwrap();
            // The write a crash interrupted, had there been one.
            fs::write(dir.path().join(format!(".cert.der{TEMP_MARK}9-9")), b"torn").unwrap();
            drop(st);

            let st = StateDir::open_locked(dir.path()).unwrap();
            let loaded = st
                .load_or_create_identity_with("SWITCH", now, KeyKind::P256)
                .unwrap_or_else(|e| panic!("cut after {steps} writes: {e:#}"));
            assert!(
                !loaded.created,
                "cut after {steps} writes: nothing is made anew"
            );
            let (cert, state) = if steps == 0 {
                (&old.cert_der, RegistrationState::Registered(old_id))
            } else {
                (&new.cert_der, RegistrationState::Pending(new_id))
            };
            assert_eq!(&loaded.cert_der, cert, "cut after {steps} writes");
            assert_eq!(
                st.registration().unwrap(),
                state,
                "cut after {steps} writes"
            );
            assert!(!dir.path().join(NEXT_IDENTITY_FILE).exists());
        }
    }

    #[test]
    fn a_damaged_switch_record_is_named_not_guessed_at() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(NEXT_IDENTITY_FILE),
            b"mpagent identity switch 1\n\x05",
        )
        .unwrap();
        let err = StateDir::open_locked(dir.path()).err().unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains(NEXT_IDENTITY_FILE) && text.contains("damaged"),
            "{text}"
        );
    }

    #[test]
    fn rsa_certificates_signed_through_openssl_are_the_cores() {
        let signer = ClientSigner::generate(KeyKind::Rsa2048).unwrap();
        let ClientSigner::Rsa(host) = &signer else {
            panic!("an RSA key was asked for");
        };
        let params =
            CertParams::self_signed_now("RSA-1", UnixTime(1_764_000_000), &mut rand_core::OsRng);
        let mut core_cert = vec![0u8; MAX_RSA_CERT_LEN];
        let n = build_self_signed_rsa(&params, host.software(), &mut core_cert).unwrap();
        assert_eq!(signer.self_signed_cert(&params).unwrap(), core_cert[..n]);
        // And the key survives PKCS#8 into a signer that signs the same.
        let back = ClientSigner::from_pkcs8_der(&signer.to_pkcs8_der().unwrap()).unwrap();
        let d = [9u8; 32];
        assert_eq!(
            back.sign_sha256(&d).unwrap().as_bytes(),
            signer.sign_sha256(&d).unwrap().as_bytes()
        );
    }

    #[test]
    fn registration_state_round_trips() {
        let id = Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap();
        for s in [
            RegistrationState::Unregistered,
            RegistrationState::Pending(id),
            RegistrationState::Registered(id),
            RegistrationState::Rejected(UnixTime(1_764_000_000)),
        ] {
            assert_eq!(parse_registration(&format_registration(s)).unwrap(), s);
        }
        assert_eq!(
            parse_registration("rejected").unwrap(),
            RegistrationState::Rejected(UnixTime(0))
        );
        assert!(parse_registration("rejected soon").is_err());
        assert!(parse_registration("registered GUID:nope").is_err());
        // What the file held is quoted as text for the person reading the error.
        let err = parse_registration("registered GUID:\u{1b}x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "'GUID:\\u{1b}x' is not an SMSID (GUID:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        );
        let err = parse_registration("asleep").unwrap_err().to_string();
        assert!(
            err.starts_with("'asleep' is none of: unregistered"),
            "{err}"
        );
        assert!(parse_registration("").is_err());
    }

    #[test]
    fn identity_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::open(dir.path()).unwrap();
        let a = st
            .load_or_create_identity("dev1", UnixTime(1_795_428_000))
            .unwrap();
        assert!(a.created);
        let b = st
            .load_or_create_identity("dev1", UnixTime(1_795_428_000))
            .unwrap();
        assert!(!b.created);
        assert_eq!(a.cert_der, b.cert_der);
        assert_eq!(
            a.signer.to_pkcs8_der().unwrap(),
            b.signer.to_pkcs8_der().unwrap()
        );
        assert_eq!(a.signer.kind(), KeyKind::P256);
        // A half identity never registered is made again ...
        fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let c = st.load_or_create_identity("dev1", UnixTime(0)).unwrap();
        assert!(c.created);
        assert_ne!(c.cert_der, a.cert_der);
        // ... one the site knows is not.
        let id = Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap();
        st.save_registration(RegistrationState::Registered(id))
            .unwrap();
        fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let err = st.load_or_create_identity("dev1", UnixTime(0)).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("holds only key.pk8"), "{text}");
        assert!(text.contains("registered GUID:1AF488D8"), "{text}");
        assert!(dir.path().join(KEY_FILE).exists());
    }

    #[test]
    fn a_damaged_p256_key_is_not_called_an_rsa_key() {
        let key = ClientSigner::generate(KeyKind::P256).unwrap();
        let mut der = key.to_pkcs8_der().unwrap();
        // Cut inside the private key: the structure no longer parses as any key.
        der.truncate(der.len() - 20);
        let err = format!("{:#}", ClientSigner::from_pkcs8_der(&der).unwrap_err());
        assert!(err.contains("P-256"), "{err}");
        assert!(!err.starts_with("not a usable RSA-2048"), "{err}");
    }

    #[test]
    fn key_is_private_and_a_readable_one_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::open(dir.path()).unwrap();
        st.load_or_create_identity("dev1", UnixTime(1_795_428_000))
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let key = dir.path().join(KEY_FILE);
        assert_eq!(mode(&key), 0o600);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        st.load_or_create_identity("dev1", UnixTime(1_795_428_000))
            .unwrap();
        assert_eq!(mode(&key), 0o600);
    }

    #[test]
    fn temp_names_are_unique_and_stale_ones_are_removed_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        assert_ne!(temp_path(&target), temp_path(&target));
        let stale = dir.path().join(format!(".key.pk8{TEMP_MARK}1-0"));
        fs::write(&stale, b"half").unwrap();
        let st = StateDir::open_locked(dir.path()).unwrap();
        assert!(st.is_locked());
        assert!(!stale.exists());
        let err = StateDir::open_locked(dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("in use by PID"), "{err:#}");
    }

    #[test]
    fn rsa_identity_is_created_once_reused_and_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::open(dir.path()).unwrap();
        let now = UnixTime(1_795_428_000);
        let a = st
            .load_or_create_identity_with("dev2", now, KeyKind::Rsa2048)
            .unwrap();
        assert!(a.created);
        assert_eq!(a.signer.kind(), KeyKind::Rsa2048);
        assert_eq!(a.signer.scheme(), SignatureScheme::RsaPkcs1Sha256);
        // Asked for P-256, the directory keeps its RSA identity.
        let b = st.load_or_create_identity("dev2", now).unwrap();
        assert!(!b.created);
        assert_eq!(b.signer.kind(), KeyKind::Rsa2048);
        assert_eq!(a.cert_der, b.cert_der);
        assert_eq!(
            a.signer.to_pkcs8_der().unwrap(),
            b.signer.to_pkcs8_der().unwrap()
        );
        // Another key's certificate next to the RSA key is refused.
        let other = tempfile::tempdir().unwrap();
        let p256 = StateDir::open(other.path())
            .unwrap()
            .load_or_create_identity("dev3", now)
            .unwrap();
        write_atomic(&dir.path().join(CERT_FILE), &p256.cert_der).unwrap();
        let err = st.load_or_create_identity("dev2", now).unwrap_err();
        assert!(
            format!("{err:#}").contains("do not belong together"),
            "{err:#}"
        );
    }
}
