//! The device identity in the core's store (`mpagent_core::store`, A/B slots): the P-256 secret
//! scalar as the key, the self-signed certificate, and the registration state with the SMSID.
//! Loaded at boot, or created and saved before anything goes on the wire.

use defmt::info;
use mpagent_core::agent::registration::{RegistrationEvent, RegistrationState};
use mpagent_core::identity::{build_self_signed_p256, cert_public_key_p256, CertError, CertParams};
use mpagent_core::io::Progress;
use mpagent_core::sign::P256Signer;
use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::{Store, StoreError, StoredIdentity, IDENTITY_OVERHEAD};
use mpagent_core::time::UnixTime;
use rand_core::CryptoRngCore;

/// Bytes [`load_or_create`] needs to read a stored identity (key + certificate + framing).
pub const LOAD_BUFFER: usize = IDENTITY_OVERHEAD + 32 + mpagent_core::identity::MAX_CERT_LEN;

/// What [`load_or_create`] hands back: the signer, the certificate's length (in the caller's
/// buffer) and the stored registration state.
pub type Loaded = (P256Signer, usize, RegistrationState);

/// The stored identity is unusable.
#[derive(Debug, defmt::Format)]
pub enum IdentityError<E> {
    /// Reading or writing the store failed.
    Store(StoreError<E>),
    /// Identity slots were written but none holds a complete record: refuse to make a second
    /// identity over a damaged one (the site would see a new device).
    Damaged,
    /// The stored key is not a P-256 secret scalar.
    BadKey,
    /// The stored certificate does not hold the stored key's public key.
    Mismatch,
    /// The certificate could not be built or read.
    Certificate(CertError),
}

impl<E> From<StoreError<E>> for IdentityError<E> {
    fn from(e: StoreError<E>) -> Self {
        Self::Store(e)
    }
}

/// Load the identity, or create key and certificate and save them. The certificate lands in
/// `cert_buf`; `load_buf` holds at least [`LOAD_BUFFER`] bytes.
pub fn load_or_create<F: NorFlash>(
    store: &mut Store<F>,
    load_buf: &mut [u8],
    cert_buf: &mut [u8],
    name: &str,
    now: UnixTime,
    rng: &mut impl CryptoRngCore,
) -> Result<Loaded, IdentityError<F::Error>> {
    let loaded = load(store, load_buf, cert_buf);
    load_buf.fill(0); // the secret scalar does not linger in RAM
    if let Some(found) = loaded? {
        return Ok(found);
    }
    if store.report().torn_identity_slots > 0 {
        return Err(IdentityError::Damaged);
    }
    create(store, cert_buf, name, now, rng)
}

// Out of line, like `load`: each path's frame then sits alone under the caller, not both.
#[inline(never)]
fn create<F: NorFlash>(
    store: &mut Store<F>,
    cert_buf: &mut [u8],
    name: &str,
    now: UnixTime,
    rng: &mut impl CryptoRngCore,
) -> Result<Loaded, IdentityError<F::Error>> {
    let signer = P256Signer::generate(rng);
    let params = CertParams::self_signed_now(name, now, rng);
    let len =
        build_self_signed_p256(&params, &signer, cert_buf).map_err(IdentityError::Certificate)?;
    let state = RegistrationState::Unregistered;
    let cert = cert_buf
        .get(..len)
        .ok_or(IdentityError::Certificate(CertError::BufferTooSmall))?;
    save(store, &signer, cert, state)?;
    info!(
        "identity created: P-256 key, {=usize}-byte certificate",
        len
    );
    Ok((signer, len, state))
}

#[inline(never)]
fn load<F: NorFlash>(
    store: &mut Store<F>,
    load_buf: &mut [u8],
    cert_buf: &mut [u8],
) -> Result<Option<Loaded>, IdentityError<F::Error>> {
    let Some(rec) = store.load_identity(load_buf)? else {
        return Ok(None);
    };
    let key: &[u8; 32] = rec.key.try_into().map_err(|_| IdentityError::BadKey)?;
    let signer = P256Signer::from_secret_bytes(key).map_err(|_| IdentityError::BadKey)?;
    let cert_key = cert_public_key_p256(rec.cert_der).map_err(IdentityError::Certificate)?;
    if signer.verifying_key().to_encoded_point(false).as_bytes() != cert_key.as_slice() {
        return Err(IdentityError::Mismatch);
    }
    let cert = cert_buf
        .get_mut(..rec.cert_der.len())
        .ok_or(IdentityError::Certificate(CertError::BufferTooSmall))?;
    cert.copy_from_slice(rec.cert_der);
    info!("identity loaded, state {}", rec.registration);
    Ok(Some((signer, rec.cert_der.len(), rec.registration)))
}

/// Save the identity with `state` (the other A/B slot: a power cut keeps the previous record).
#[inline(never)]
pub fn save<F: NorFlash>(
    store: &mut Store<F>,
    signer: &P256Signer,
    cert_der: &[u8],
    state: RegistrationState,
) -> Result<(), StoreError<F::Error>> {
    let mut key = signer.secret_bytes();
    let saved = store.save_identity(&StoredIdentity {
        key: &key,
        cert_der,
        registration: state,
    });
    key.fill(0);
    saved
}

/// Follows a registration's progress (`io::register`'s observer) and keeps the identity record
/// in step with it: every state the core says to persist is saved as it happens (the store is
/// blocking), a confirmation of what is stored writes nothing, and it notes whether the site
/// answered at all — the driver also hands back `Pending` when a confirmation got no answer
/// (the MP is down).
pub struct RegistrationRecorder<'a, F: NorFlash> {
    store: &'a mut Store<F>,
    signer: &'a P256Signer,
    cert_der: &'a [u8],
    saved: RegistrationState,
    /// Whether the site answered with a registration state this run.
    pub answered: bool,
    /// The first save that failed, if any (the run's outcome is then not kept).
    pub store_failed: Option<StoreError<F::Error>>,
}

impl<'a, F: NorFlash> RegistrationRecorder<'a, F> {
    /// Starts from `stored`, the state the identity record holds now.
    pub fn new(
        store: &'a mut Store<F>,
        signer: &'a P256Signer,
        cert_der: &'a [u8],
        stored: RegistrationState,
    ) -> Self {
        Self {
            store,
            signer,
            cert_der,
            saved: stored,
            answered: false,
            store_failed: None,
        }
    }

    /// The observer: log the progress, note an answer, save a changed state.
    pub fn observe(&mut self, progress: &Progress) {
        info!("{}", progress);
        let Progress::Event(event) = progress else {
            return;
        };
        self.answered |= matches!(
            event,
            RegistrationEvent::Registered(_) | RegistrationEvent::PendingApproval(..)
        );
        match event.persist() {
            Some(state) if state != self.saved => {
                match save(self.store, self.signer, self.cert_der, state) {
                    Ok(()) => self.saved = state,
                    Err(e) => self.store_failed = Some(e),
                }
            }
            _ => {}
        }
    }
}
