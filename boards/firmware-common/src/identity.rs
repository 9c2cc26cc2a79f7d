//! The device identity in the core's store (`mpagent_core::store`, A/B slots): the key (P-256
//! or RSA-2048, fixed at build time: see [`crate::key`]), the self-signed certificate, and the
//! registration state with the SMSID. Loaded at boot, or created (from a generated or a
//! provisioned key) and saved before anything goes on the wire.
//!
//! A stored identity whose key is of the other kind than this firmware's is refused
//! ([`IdentityError::WrongKeyKind`]) and left as it is: making a new identity over it would show
//! the site a second device and lose the registered one, so flashing a firmware of the other
//! kind needs the identity erased on purpose.

use defmt::{error, info};
use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::identity::{CertError, CertParams};
use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::{Store, StoreError, StoredIdentity, IDENTITY_OVERHEAD};
use mpagent_core::time::UnixTime;
use rand_core::CryptoRngCore;

use crate::key::{self, DeviceSigner, KeyError, KeyKind};

/// Bytes [`load_or_create`] needs to read a stored identity of this firmware's kind (key +
/// certificate + framing). Pass a larger buffer (e.g. the exchange buffer, free at that point)
/// to also read a record of the other kind and refuse it by name rather than for its size.
pub const LOAD_BUFFER: usize = IDENTITY_OVERHEAD + key::MAX_STORED_KEY + key::MAX_DEVICE_CERT;
/// Bytes that read a stored identity of either kind (the RSA-2048 record is the larger).
pub const LOAD_BUFFER_ANY_KIND: usize = IDENTITY_OVERHEAD
    + mpagent_core::sign::rsa::RSA_PKCS8_DER_MAX_LEN
    + mpagent_core::identity::MAX_RSA_CERT_LEN;
const _: () = assert!(LOAD_BUFFER <= LOAD_BUFFER_ANY_KIND);
/// Bytes of the certificate buffer [`load_or_create`] fills.
pub const CERT_BUFFER: usize = key::MAX_DEVICE_CERT;
/// Bytes a board reads a provisioned key into (see [`load_or_create`]).
pub const PROVISIONED_KEY_BUFFER: usize = key::MAX_PROVISIONED_KEY;

/// What [`load_or_create`] hands back: the signer (in the caller's slot: an RSA key is ~3.3 KB,
/// written there in place rather than returned through every frame), the certificate's length
/// (in the caller's buffer) and the stored registration state.
pub type Loaded<'s> = (&'s DeviceSigner, usize, RegistrationState);

/// The certificate's length and the registration state; the signer is in the slot.
type Found = (usize, RegistrationState);

/// The signer `load`/`create` put in `slot`.
fn loaded<E>(
    slot: &mut Option<DeviceSigner>,
    found: Found,
) -> Result<Loaded<'_>, IdentityError<E>> {
    let signer = slot.as_ref().ok_or(IdentityError::BadKey(None))?;
    Ok((signer, found.0, found.1))
}

/// The stored identity is unusable.
#[derive(Debug, defmt::Format)]
pub enum IdentityError<E> {
    /// Reading or writing the store failed.
    Store(StoreError<E>),
    /// Identity slots were written but none holds a complete record: refuse to make a second
    /// identity over a damaged one (the site would see a new device).
    Damaged,
    /// The stored key is of this firmware's kind but unusable (or of no known kind: `None`).
    BadKey(Option<KeyError>),
    /// The stored identity holds a key of another kind than this firmware is built for: refused
    /// and left untouched (see the module documentation).
    WrongKeyKind {
        /// What the record holds.
        stored: KeyKind,
        /// What this firmware is built for.
        built: KeyKind,
    },
    /// The provisioned key was refused (no identity was made).
    ProvisionedKey(KeyError),
    /// Generating the key failed (the RNG looks broken).
    Generation(KeyError),
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
/// `cert_buf` (at least [`CERT_BUFFER`] bytes); `load_buf` holds at least [`LOAD_BUFFER`] bytes.
///
/// A new identity takes the `provisioned` key (DER: PKCS#8 or PKCS#1 for RSA-2048; P-256 builds
/// take none) when there is one, else a key generated from `rng`. A provisioned key is used
/// only for a new identity: the board reads it only while [`Store::has_identity`] is false.
/// The key is written into `slot`.
#[allow(clippy::too_many_arguments)]
pub fn load_or_create<'s, F: NorFlash>(
    store: &mut Store<F>,
    slot: &'s mut Option<DeviceSigner>,
    load_buf: &mut [u8],
    cert_buf: &mut [u8],
    name: &str,
    now: UnixTime,
    rng: &mut impl CryptoRngCore,
    provisioned: Option<&[u8]>,
) -> Result<Loaded<'s>, IdentityError<F::Error>> {
    let found = load(store, slot, load_buf, cert_buf);
    load_buf.fill(0); // the secret key does not linger in RAM
    if let Some(found) = found? {
        return loaded(slot, found);
    }
    if store.report().torn_identity_slots > 0 {
        return Err(IdentityError::Damaged);
    }
    let found = create(store, slot, cert_buf, name, now, rng, provisioned)?;
    loaded(slot, found)
}

// Out of line, like `load`: each path's frame then sits alone under the caller, not both.
#[inline(never)]
fn create<F: NorFlash>(
    store: &mut Store<F>,
    slot: &mut Option<DeviceSigner>,
    cert_buf: &mut [u8],
    name: &str,
    now: UnixTime,
    rng: &mut impl CryptoRngCore,
    provisioned: Option<&[u8]>,
) -> Result<Found, IdentityError<F::Error>> {
    let signer = match provisioned {
        Some(der) => key::from_provisioned(slot, der).map_err(IdentityError::ProvisionedKey)?,
        None => {
            info!("generating a {} key", key::KIND);
            let started = embassy_time::Instant::now();
            let signer = key::generate(slot, rng).map_err(IdentityError::Generation)?;
            info!("key generated in {=u64} ms", started.elapsed().as_millis());
            signer
        }
    };
    let params = CertParams::self_signed_now(name, now, rng);
    let len = key::build_cert(&params, signer, cert_buf).map_err(IdentityError::Certificate)?;
    let state = RegistrationState::Unregistered;
    let cert = cert_buf
        .get(..len)
        .ok_or(IdentityError::Certificate(CertError::BufferTooSmall))?;
    save(store, signer, cert, state)?;
    info!(
        "identity created: {} key ({=str}), {=usize}-byte certificate",
        key::KIND,
        if provisioned.is_some() {
            "provisioned"
        } else {
            "generated"
        },
        len
    );
    Ok((len, state))
}

#[inline(never)]
fn load<F: NorFlash>(
    store: &mut Store<F>,
    slot: &mut Option<DeviceSigner>,
    load_buf: &mut [u8],
    cert_buf: &mut [u8],
) -> Result<Option<Found>, IdentityError<F::Error>> {
    let Some(rec) = store.load_identity(load_buf)? else {
        return Ok(None);
    };
    match KeyKind::of_stored(rec.key) {
        Some(kind) if kind == key::KIND => {}
        Some(stored) => {
            error!(
                "the stored identity's key is {}, this firmware is built for {}: refusing it (no \
                 new identity is made; flash a {} build, or erase the identity to start over as \
                 a new device)",
                stored,
                key::KIND,
                stored
            );
            return Err(IdentityError::WrongKeyKind {
                stored,
                built: key::KIND,
            });
        }
        None => return Err(IdentityError::BadKey(None)),
    }
    let signer = key::from_stored(slot, rec.key).map_err(|e| IdentityError::BadKey(Some(e)))?;
    if !key::cert_matches(signer, rec.cert_der).map_err(IdentityError::Certificate)? {
        return Err(IdentityError::Mismatch);
    }
    let cert = cert_buf
        .get_mut(..rec.cert_der.len())
        .ok_or(IdentityError::Certificate(CertError::BufferTooSmall))?;
    cert.copy_from_slice(rec.cert_der);
    info!(
        "identity loaded: {} key, state {}",
        key::KIND,
        rec.registration
    );
    Ok(Some((rec.cert_der.len(), rec.registration)))
}

/// Bytes of the certificate buffer [`load_or_provision`] fills: a CA-issued certificate (chain
/// extensions, EKUs, an RSA key) is longer than the self-signed one.
#[cfg(feature = "native")]
pub const NATIVE_CERT_BUFFER: usize = 2048;

/// Native mode: the identity is the certificate the site's CA issued and its key, both
/// provisioned (`client_cert`, `client_key`: DER). A stored identity holding that very
/// certificate is loaded with its registration state; otherwise (none, or a renewed
/// certificate) the provisioned pair, checked to match, replaces it, unregistered — the MP knows
/// a device by its certificate, so a new certificate registers anew.
#[cfg(feature = "native")]
pub fn load_or_provision<'s, F: NorFlash>(
    store: &mut Store<F>,
    slot: &'s mut Option<DeviceSigner>,
    load_buf: &mut [u8],
    cert_buf: &mut [u8],
    client_cert: &[u8],
    client_key: &[u8],
) -> Result<Loaded<'s>, IdentityError<F::Error>> {
    let found = load(store, slot, load_buf, cert_buf);
    load_buf.fill(0);
    if let Some((len, state)) = found? {
        if cert_buf.get(..len) == Some(client_cert) {
            return loaded(slot, (len, state));
        }
        info!("the provisioned certificate is new: the device registers anew");
    } else if store.report().torn_identity_slots > 0 {
        return Err(IdentityError::Damaged);
    }
    let signer =
        key::from_provisioned_native(slot, client_key).map_err(IdentityError::ProvisionedKey)?;
    if !key::cert_matches(signer, client_cert).map_err(IdentityError::Certificate)? {
        return Err(IdentityError::Mismatch);
    }
    let cert = cert_buf
        .get_mut(..client_cert.len())
        .ok_or(IdentityError::Certificate(CertError::BufferTooSmall))?;
    cert.copy_from_slice(client_cert);
    let state = RegistrationState::Unregistered;
    save(store, signer, client_cert, state)?;
    info!(
        "identity provisioned: {} key, {=usize}-byte CA-issued certificate",
        key::KIND,
        client_cert.len()
    );
    Ok((signer, client_cert.len(), state))
}

/// Save the identity with `state` (the other A/B slot: a power cut keeps the previous record).
#[inline(never)]
pub fn save<F: NorFlash>(
    store: &mut Store<F>,
    signer: &DeviceSigner,
    cert_der: &[u8],
    state: RegistrationState,
) -> Result<(), IdentityError<F::Error>> {
    let mut buf = [0u8; key::MAX_STORED_KEY];
    let saved = match key::to_stored(signer, &mut buf) {
        Ok(len) => store
            .save_identity(&StoredIdentity {
                key: buf.get(..len).unwrap_or(&[]),
                cert_der,
                registration: state,
            })
            .map_err(IdentityError::Store),
        Err(e) => Err(IdentityError::BadKey(Some(e))),
    };
    buf.fill(0);
    core::hint::black_box(&buf); // the wipe is not optimised out
    saved
}
