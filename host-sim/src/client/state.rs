//! The host client's state directory: the identity (PKCS#8 key, DER certificate) made on first
//! run and the registration state. Every file is replaced atomically (write, fsync, rename), so a
//! crash leaves either the old or the new version, never a torn one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::Smsid;
use mpagent_core::identity::{
    build_self_signed_p256, cert_public_key_p256, CertParams, MAX_CERT_LEN,
};
use mpagent_core::sign::P256Signer;
use mpagent_core::time::UnixTime;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};

/// Files in a state directory.
pub const KEY_FILE: &str = "key.pk8";
/// The certificate (DER), also what an administrator would import.
pub const CERT_FILE: &str = "cert.der";
/// `unregistered`, `pending GUID:…`, `registered GUID:…` or `rejected`.
pub const REGISTRATION_FILE: &str = "registration";

/// A client's persistent identity.
pub struct Identity {
    /// The signing key.
    pub signer: P256Signer,
    /// Its self-signed certificate.
    pub cert_der: Vec<u8>,
    /// Whether this run created it.
    pub created: bool,
}

/// A state directory.
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Open (and create) `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating state dir {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Load the identity, or create key and self-signed certificate on first run.
    pub fn load_or_create_identity(&self, common_name: &str, now: UnixTime) -> Result<Identity> {
        let key_path = self.dir.join(KEY_FILE);
        let cert_path = self.dir.join(CERT_FILE);
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => {
                let der = fs::read(&key_path)?;
                let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der)
                    .map_err(|e| anyhow!("{}: not a P-256 PKCS#8 key: {e}", key_path.display()))?;
                let cert_der = fs::read(&cert_path)?;
                let cert_key = cert_public_key_p256(&cert_der).map_err(|e| {
                    anyhow!("{}: unreadable certificate: {e:?}", cert_path.display())
                })?;
                if key.verifying_key().to_encoded_point(false).as_bytes() != cert_key.as_slice() {
                    bail!(
                        "{} and {} do not belong together (the certificate's public key is not the key's)",
                        key_path.display(),
                        cert_path.display()
                    );
                }
                Ok(Identity {
                    signer: P256Signer::new(key),
                    cert_der,
                    created: false,
                })
            }
            (false, false) => {
                let mut rng = rand_core::OsRng;
                let signer = P256Signer::generate(&mut rng);
                let params = CertParams::self_signed_now(common_name, now, &mut rng);
                let mut buf = [0u8; MAX_CERT_LEN];
                let len = build_self_signed_p256(&params, &signer, &mut buf)
                    .map_err(|e| anyhow!("building the self-signed certificate: {e:?}"))?;
                let pk8 = signer
                    .signing_key()
                    .to_pkcs8_der()
                    .map_err(|e| anyhow!("encoding the key: {e}"))?;
                // Certificate first: a crash in between leaves a certificate without its key,
                // which the next run reports instead of silently making a mismatched pair.
                write_atomic(&cert_path, &buf[..len])?;
                write_atomic(&key_path, pk8.as_bytes())?;
                Ok(Identity {
                    signer,
                    cert_der: buf[..len].to_vec(),
                    created: true,
                })
            }
            _ => bail!(
                "state dir {} holds only one of {KEY_FILE} and {CERT_FILE}; refusing to make a new identity over a half one",
                self.dir.display()
            ),
        }
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

fn format_registration(state: RegistrationState) -> String {
    match state {
        RegistrationState::Unregistered => "unregistered".into(),
        RegistrationState::Pending(id) => format!("pending {id}"),
        RegistrationState::Registered(id) => format!("registered {id}"),
        RegistrationState::Rejected => "rejected".into(),
    }
}

fn parse_registration(text: &str) -> Result<RegistrationState> {
    let smsid = |s: &str| Smsid::parse(s.as_bytes()).ok_or_else(|| anyhow!("bad SMSID {s:?}"));
    Ok(match text.split_once(' ') {
        None if text == "unregistered" => RegistrationState::Unregistered,
        None if text == "rejected" => RegistrationState::Rejected,
        Some(("pending", id)) => RegistrationState::Pending(smsid(id)?),
        Some(("registered", id)) => RegistrationState::Registered(smsid(id)?),
        _ => bail!("unknown state {text:?}"),
    })
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
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

    #[test]
    fn registration_state_round_trips() {
        let id = Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap();
        for s in [
            RegistrationState::Unregistered,
            RegistrationState::Pending(id),
            RegistrationState::Registered(id),
            RegistrationState::Rejected,
        ] {
            assert_eq!(parse_registration(&format_registration(s)).unwrap(), s);
        }
        assert!(parse_registration("registered GUID:nope").is_err());
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
        assert_eq!(a.signer.secret_bytes(), b.signer.secret_bytes());
        fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        assert!(st.load_or_create_identity("dev1", UnixTime(0)).is_err());
    }
}
