//! The context in caller memory and the functions over it.

use core::cell::Cell;
use core::ffi::{c_char, c_int};
use core::fmt::Write as _;
use core::future::Future;
use core::mem::{align_of, size_of, MaybeUninit};
use core::pin::pin;
use core::ptr::{addr_of, addr_of_mut};
use core::task::{Context, Poll, Waker};

use mpagent_core::agent::lifecycle::Action;
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
use mpagent_core::store::embedded_storage::nor_flash::NorFlashErrorKind;
use mpagent_core::store::StoredIdentity;
use mpagent_core::{
    Agent, AgentConfig, AgentType, Buffers, Device, Driver, DriverError, Layout, P256Signer,
    PolicySlot, RegistrationState, Schedule, SigningIdentity, SiteGeneration, SiteMode, Step,
    Store,
};

use crate::callbacks::{
    c_str, mpagent_callbacks, CText, CbClock, CbFlash, CbHost, CbNet, CbRng, PumpState,
    MPAGENT_FLASH_ERASE_SIZE,
};

/// Success.
pub const MPAGENT_OK: c_int = 0;
/// A pointer argument was NULL, or a required callback is missing.
pub const MPAGENT_ERR_ARGUMENT: c_int = -1;
/// The memory handed to `mpagent_init` is smaller than `mpagent_context_size()` or not aligned
/// to `MPAGENT_CONTEXT_ALIGN`.
pub const MPAGENT_ERR_CONTEXT: c_int = -2;
/// The configuration was refused (`mpagent_last_error` names the setting).
pub const MPAGENT_ERR_CONFIG: c_int = -3;
/// The store on the flash region failed (flash callback error, layout, corrupt record).
pub const MPAGENT_ERR_STORE: c_int = -4;
/// The identity could not be loaded or made.
pub const MPAGENT_ERR_IDENTITY: c_int = -5;
/// The call came out of order (e.g. `mpagent_step` before `mpagent_identity`).
pub const MPAGENT_ERR_STATE: c_int = -6;
/// The agent stopped on an error retrying will not fix (`mpagent_last_error` says which).
pub const MPAGENT_ERR_AGENT: c_int = -7;
/// An output buffer is too small.
pub const MPAGENT_ERR_BUFFER: c_int = -8;
/// There is no SMSID yet.
pub const MPAGENT_ERR_NO_SMSID: c_int = -9;
/// The `random` callback failed: nothing made from its bytes was used.
pub const MPAGENT_ERR_RANDOM: c_int = -10;
/// An exchange driven by `mpagent_pump` is in flight: finish it (or end it with
/// `MPAGENT_PUMP_TIMEOUT`) first.
pub const MPAGENT_ERR_BUSY: c_int = -11;
/// The outbound queue is full: what is queued must be delivered first (nothing was dropped).
pub const MPAGENT_ERR_QUEUE_FULL: c_int = -12;
/// Longest state message topic `mpagent_report_state` takes, in bytes (a literal, for the
/// header; the core's bound, checked below).
pub const MPAGENT_MAX_STATE_TOPIC: usize = 129;
const _: () = assert!(MPAGENT_MAX_STATE_TOPIC == mpagent_core::io::driver::MAX_STATE_TOPIC);

/// Bytes of memory a context needs (also `mpagent_context_size()`), for static allocation.
pub const MPAGENT_CONTEXT_SIZE: usize = 20480;
/// Alignment a context needs.
pub const MPAGENT_CONTEXT_ALIGN: usize = 8;

/// `mpagent_config.site_mode`: HTTP and a self-signed certificate made on first run.
pub const MPAGENT_SITE_MIXED: c_int = 0;
/// `mpagent_config.site_mode`: HTTPS with a provisioned certificate (see the README).
pub const MPAGENT_SITE_NATIVE: c_int = 1;
/// `mpagent_config.site_generation`: current branch (the default).
pub const MPAGENT_SITE_CURRENT: c_int = 0;
/// `mpagent_config.site_generation`: ConfigMgr 2007.
pub const MPAGENT_SITE_2007: c_int = 1;

/// `mpagent_registration_state`: no SMSID yet.
pub const MPAGENT_UNREGISTERED: c_int = 0;
/// `mpagent_registration_state`: SMSID confirmed, approval pending.
pub const MPAGENT_PENDING: c_int = 1;
/// `mpagent_registration_state`: registered and approved.
pub const MPAGENT_REGISTERED: c_int = 2;
/// `mpagent_registration_state`: the site refused the registration (asked again later).
pub const MPAGENT_REJECTED: c_int = 3;

/// `mpagent_step_result.action`: nothing to do before `until`.
pub const MPAGENT_ACTION_IDLE: c_int = 0;
/// `mpagent_step_result.action`: a registration or confirmation request was exchanged.
pub const MPAGENT_ACTION_REGISTER: c_int = 1;
/// `mpagent_step_result.action`: a report was made and queued on the flash.
pub const MPAGENT_ACTION_QUEUE: c_int = 2;
/// `mpagent_step_result.action`: the queue's oldest message was sent.
pub const MPAGENT_ACTION_DELIVER: c_int = 3;
/// `mpagent_step_result.action`: policy was requested.
pub const MPAGENT_ACTION_POLICY: c_int = 4;

/// `event` callback: a registration request is going out.
pub const MPAGENT_EVENT_REGISTRATION_SENDING: c_int = 1;
/// `event` callback: a registration attempt failed (or a state could not be saved).
pub const MPAGENT_EVENT_REGISTRATION_FAILED: c_int = 2;
/// `event` callback: the registration moved (issued, registered, pending, rejected, …).
pub const MPAGENT_EVENT_REGISTRATION: c_int = 3;
/// `event` callback: a report was queued.
pub const MPAGENT_EVENT_QUEUED: c_int = 4;
/// `event` callback: a queued message reached the MP.
pub const MPAGENT_EVENT_DELIVERED: c_int = 5;
/// `event` callback: a delivery failed; the message stays queued.
pub const MPAGENT_EVENT_DELIVERY_FAILED: c_int = 6;
/// `event` callback: the site refused a message for good; it left the queue.
pub const MPAGENT_EVENT_REFUSED: c_int = 7;
/// `event` callback: policy (assignments, bodies, failures).
pub const MPAGENT_EVENT_POLICY: c_int = 8;

/// Bytes requests stream through and replies land in.
const EXCHANGE: usize = 4096;
/// Policy replies decode through 3/2 of the exchange buffer.
const POLICY_SCRATCH: usize = EXCHANGE * 3 / 2;
/// Policy assignments one poll keeps.
const POLICY_SLOTS: usize = 2;
/// One identity slot: a P-256 key, its certificate and the record's framing.
const IDENTITY_SLOT: u32 = 4096;
/// Value of [`Inner::magic`] once `mpagent_init` has run.
const MAGIC: u32 = 0x4D50_4147;

/// How the agent is configured. Strings are UTF-8, NUL-terminated, copied by `mpagent_init`.
#[repr(C)]
pub struct mpagent_config {
    /// Three letters or digits (e.g. `"PS1"`).
    pub site_code: *const c_char,
    /// `MPAGENT_SITE_MIXED` or `MPAGENT_SITE_NATIVE`.
    pub site_mode: c_int,
    /// The management point: `http://host[:port]` (mixed) or `https://…` (native).
    pub mp_url: *const c_char,
    /// `MPAGENT_SITE_CURRENT` or `MPAGENT_SITE_2007`.
    pub site_generation: c_int,
    /// The device's NetBIOS name (at most 15 characters).
    pub netbios_name: *const c_char,
    /// The device's fully qualified name.
    pub fqdn: *const c_char,
    /// An IPv4/IPv6 address for the heartbeat, or NULL.
    pub ip_address: *const c_char,
    /// A MAC address (`"52:54:00:12:34:56"`) for the heartbeat, or NULL.
    pub mac_address: *const c_char,
}

/// Opaque agent memory: `MPAGENT_CONTEXT_SIZE` bytes aligned to `MPAGENT_CONTEXT_ALIGN`.
/// It must not move or be copied after `mpagent_init`.
#[repr(C, align(8))]
pub struct mpagent_context {
    _opaque: [u8; MPAGENT_CONTEXT_SIZE],
}

/// What one `mpagent_step` did.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct mpagent_step_result {
    /// `MPAGENT_ACTION_*`.
    pub action: c_int,
    /// With `MPAGENT_ACTION_IDLE`: UTC seconds at which the agent next has something to do.
    pub until: i64,
}

/// The agent's counters since `mpagent_identity`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct mpagent_counts {
    /// Reports queued.
    pub queued: u32,
    /// Messages the MP acknowledged.
    pub delivered: u32,
    /// Reports replaced while unsent by a newer one of their kind.
    pub superseded: u32,
    /// Reports not made because the queue had no room.
    pub no_room: u32,
    /// Messages the site refused for good.
    pub refused: u32,
    /// Messages on the flash queue now.
    pub in_queue: u32,
}

type CDriver = Driver<'static, CbNet, CbClock, CbFlash, CbHost>;

/// Copies of the configuration's strings (the agent's configuration points into them).
struct Strings {
    site_code: CText<8>,
    mp_url: CText<256>,
    netbios_name: CText<32>,
    fqdn: CText<256>,
    ip: CText<48>,
    mac: CText<32>,
}

struct Inner {
    magic: u32,
    last_error: CText<160>,
    strings: Strings,
    config: MaybeUninit<AgentConfig<'static>>,
    stored_state: RegistrationState,
    net: CbNet,
    clock: CbClock,
    rng: CbRng,
    /// Set by the RNG when the `random` callback failed (the driver holds the RNG itself).
    rng_failed: Cell<bool>,
    host: CbHost,
    /// What `mpagent_pump` and the exchange it drives tell each other.
    pump: PumpState,
    /// The step `mpagent_pump` drives, while one is in flight.
    slot: FutureSlot,
    store: Option<Store<CbFlash>>,
    signer: Option<P256Signer>,
    cert: [u8; MAX_CERT_LEN],
    cert_len: usize,
    exchange: [u8; EXCHANGE],
    scratch: [u8; POLICY_SCRATCH],
    policies: [PolicySlot; POLICY_SLOTS],
    /// The agent, once the identity is there: it borrows the fields above, so it is reached
    /// only through raw pointers to the fields, never through a reference to the whole.
    driver: Option<CDriver>,
}

const _: () = assert!(size_of::<Inner>() <= MPAGENT_CONTEXT_SIZE);
const _: () = assert!(align_of::<Inner>() <= MPAGENT_CONTEXT_ALIGN);
const _: () = assert!(align_of::<mpagent_context>() == MPAGENT_CONTEXT_ALIGN);

/// Bytes of memory a context needs (`MPAGENT_CONTEXT_SIZE`).
#[no_mangle]
pub extern "C" fn mpagent_context_size() -> usize {
    MPAGENT_CONTEXT_SIZE
}

/// A sentence for an `MPAGENT_*` code (a static string, never NULL).
#[no_mangle]
pub extern "C" fn mpagent_strerror(code: c_int) -> *const c_char {
    let s: &'static core::ffi::CStr = match code {
        MPAGENT_OK => c"success",
        MPAGENT_ERR_ARGUMENT => c"a pointer argument was NULL or a required callback is missing",
        MPAGENT_ERR_CONTEXT => {
            c"the context memory is smaller than mpagent_context_size() or not 8-byte aligned"
        }
        MPAGENT_ERR_CONFIG => {
            c"the configuration was refused (mpagent_last_error names the setting)"
        }
        MPAGENT_ERR_STORE => c"the store on the flash region failed",
        MPAGENT_ERR_IDENTITY => c"the identity could not be loaded or made",
        MPAGENT_ERR_STATE => {
            c"the call came out of order (mpagent_init, then mpagent_identity, then steps)"
        }
        MPAGENT_ERR_AGENT => c"the agent stopped on an error that retrying will not fix",
        MPAGENT_ERR_BUFFER => c"the output buffer is too small",
        MPAGENT_ERR_NO_SMSID => c"there is no SMSID yet",
        MPAGENT_ERR_RANDOM => c"the random callback failed",
        MPAGENT_ERR_BUSY => c"an exchange driven by mpagent_pump is in flight",
        MPAGENT_ERR_QUEUE_FULL => c"the outbound queue is full until queued reports are delivered",
        _ => c"unknown mpagent error code",
    };
    s.as_ptr()
}

/// The context behind `ctx`, if `mpagent_init` set it up.
fn inner(ctx: *mut mpagent_context) -> Option<*mut Inner> {
    if ctx.is_null() {
        return None;
    }
    let p = ctx.cast::<Inner>();
    // SAFETY: `ctx` points at MPAGENT_CONTEXT_SIZE bytes (the header's contract); the magic is
    // the first field, read without forming a reference to the whole.
    let magic = unsafe { addr_of!((*p).magic).read() };
    (magic == MAGIC).then_some(p)
}

/// Records `text` as the context's last error and returns `code`.
///
/// # Safety
/// `p` comes from [`inner`].
unsafe fn fail(p: *mut Inner, code: c_int, text: core::fmt::Arguments<'_>) -> c_int {
    // SAFETY: `last_error` is never borrowed by the driver.
    let e = unsafe { &mut *addr_of_mut!((*p).last_error) };
    *e = CText::new();
    let _ = e.write_fmt(text);
    code
}

/// Copies the last error's sentence (naming the setting, rule or value) into `buf`.
/// Returns `MPAGENT_OK`, or `MPAGENT_ERR_BUFFER` (the sentence is cut short, still terminated).
///
/// # Safety
/// `ctx` was set up by `mpagent_init`; `buf` holds `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mpagent_last_error(
    ctx: *mut mpagent_context,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    let Some(p) = inner(ctx) else {
        return MPAGENT_ERR_ARGUMENT;
    };
    if buf.is_null() || len == 0 {
        return MPAGENT_ERR_ARGUMENT;
    }
    // SAFETY: `last_error` is never borrowed by the driver.
    let text = unsafe { &*addr_of!((*p).last_error) }.as_bytes();
    // SAFETY: `buf` holds `len` bytes (the caller's contract).
    unsafe { copy_out(text, buf, len) }
}

/// Copies `text` and a NUL into `buf` (`len` bytes), cutting it short when it does not fit.
unsafe fn copy_out(text: &[u8], buf: *mut c_char, len: usize) -> c_int {
    let n = text.len().min(len.saturating_sub(1));
    // SAFETY: `buf` holds `len` > `n` bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        buf.add(n).write(0);
    }
    if n < text.len() {
        MPAGENT_ERR_BUFFER
    } else {
        MPAGENT_OK
    }
}

/// Sets up an agent in `ctx` (`ctx_len` bytes, 8-byte aligned): checks and copies `config`,
/// copies `callbacks` and opens the store on the flash region (reading it once; nothing is
/// written). Then call `mpagent_identity`.
///
/// # Safety
/// `ctx` holds `ctx_len` writable bytes and does not move afterwards; `config` and `callbacks`
/// point at filled structs (they are copied); the callbacks stay callable while `ctx` is used.
#[no_mangle]
pub unsafe extern "C" fn mpagent_init(
    ctx: *mut mpagent_context,
    ctx_len: usize,
    config: *const mpagent_config,
    callbacks: *const mpagent_callbacks,
) -> c_int {
    if ctx.is_null() || config.is_null() || callbacks.is_null() {
        return MPAGENT_ERR_ARGUMENT;
    }
    if ctx_len < MPAGENT_CONTEXT_SIZE || !(ctx as usize).is_multiple_of(MPAGENT_CONTEXT_ALIGN) {
        return MPAGENT_ERR_CONTEXT;
    }
    // SAFETY: both point at filled structs (the caller's contract).
    let (config, cb) = unsafe { (&*config, *callbacks) };
    let p = ctx.cast::<Inner>();
    // SAFETY: `ctx` holds enough aligned bytes (checked above); everything is written before the
    // magic marks the context as set up.
    unsafe {
        p.write(Inner {
            magic: 0,
            last_error: CText::new(),
            strings: Strings {
                site_code: CText::new(),
                mp_url: CText::new(),
                netbios_name: CText::new(),
                fqdn: CText::new(),
                ip: CText::new(),
                mac: CText::new(),
            },
            config: MaybeUninit::uninit(),
            stored_state: RegistrationState::Unregistered,
            net: CbNet {
                cb,
                host: CText::new(),
                port: 0,
                tls: false,
                pump: None,
            },
            clock: CbClock { cb, pump: None },
            pump: PumpState::new(),
            slot: FutureSlot::EMPTY,
            rng: CbRng { cb, failed: None },
            rng_failed: Cell::new(false),
            host: CbHost::new(cb),
            store: None,
            signer: None,
            cert: [0; MAX_CERT_LEN],
            cert_len: 0,
            exchange: [0; EXCHANGE],
            scratch: [0; POLICY_SCRATCH],
            policies: [PolicySlot::EMPTY, PolicySlot::EMPTY],
            driver: None,
        });
        (*addr_of_mut!((*p).rng)).failed = Some(&*addr_of!((*p).rng_failed));
        (*addr_of_mut!((*p).net)).pump = Some(&*addr_of!((*p).pump));
        (*addr_of_mut!((*p).clock)).pump = Some(&*addr_of!((*p).pump));
        addr_of_mut!((*p).magic).write(MAGIC);
    }
    if cb.flash_read.is_none()
        || cb.flash_write.is_none()
        || cb.flash_erase.is_none()
        || cb.now.is_none()
        || cb.random.is_none()
    {
        // SAFETY: `p` was set up above.
        return unsafe {
            fail(
                p,
                MPAGENT_ERR_ARGUMENT,
                format_args!(
                    "callbacks flash_read, flash_write, flash_erase, now and random are required"
                ),
            )
        };
    }
    // SAFETY: `p` was set up above and no driver exists yet.
    unsafe { configure(p, config, cb) }
}

/// Copies and checks the configuration, opens the store.
unsafe fn configure(p: *mut Inner, config: &mpagent_config, cb: mpagent_callbacks) -> c_int {
    // SAFETY: no driver exists yet, so the strings are borrowed by nothing.
    let s = unsafe { &mut *addr_of_mut!((*p).strings) };
    macro_rules! copy {
        ($field:ident, $dst:expr, $name:literal, $required:expr) => {{
            // SAFETY: the caller's contract for `mpagent_config`.
            match unsafe { c_str(config.$field) } {
                Some(v) => {
                    if v.len() >= $dst.buf_len() {
                        return unsafe {
                            fail(
                                p,
                                MPAGENT_ERR_CONFIG,
                                format_args!(
                                    "config.{} is {} bytes; at most {} fit",
                                    $name,
                                    v.len(),
                                    $dst.buf_len() - 1
                                ),
                            )
                        };
                    }
                    $dst = CText::of(v);
                    true
                }
                None if $required => {
                    return unsafe {
                        fail(
                            p,
                            MPAGENT_ERR_CONFIG,
                            format_args!("config.{} is NULL or not UTF-8", $name),
                        )
                    }
                }
                None => false,
            }
        }};
    }
    copy!(site_code, s.site_code, "site_code", true);
    copy!(mp_url, s.mp_url, "mp_url", true);
    copy!(netbios_name, s.netbios_name, "netbios_name", true);
    copy!(fqdn, s.fqdn, "fqdn", true);
    let has_ip = copy!(ip_address, s.ip, "ip_address", false);
    let has_mac = copy!(mac_address, s.mac, "mac_address", false);

    let mode = match config.site_mode {
        MPAGENT_SITE_MIXED => SiteMode::Mixed,
        MPAGENT_SITE_NATIVE => SiteMode::Native,
        other => {
            return unsafe {
                fail(
                    p,
                    MPAGENT_ERR_CONFIG,
                    format_args!(
                        "config.site_mode is {other}; it must be MPAGENT_SITE_MIXED (0) or MPAGENT_SITE_NATIVE (1)"
                    ),
                )
            }
        }
    };
    let generation = match config.site_generation {
        MPAGENT_SITE_CURRENT => SiteGeneration::Current,
        MPAGENT_SITE_2007 => SiteGeneration::Sms2007,
        other => {
            return unsafe {
                fail(
                    p,
                    MPAGENT_ERR_CONFIG,
                    format_args!(
                        "config.site_generation is {other}; it must be MPAGENT_SITE_CURRENT (0) or MPAGENT_SITE_2007 (1)"
                    ),
                )
            }
        }
    };
    // SAFETY: the strings live in the context, which does not move and outlives the agent;
    // they are not written again while it exists.
    let s: &'static Strings = unsafe { &*addr_of!((*p).strings) };
    let text = |t: &'static CText<256>| core::str::from_utf8(t.as_bytes()).unwrap_or("");
    let site_code = core::str::from_utf8(s.site_code.as_bytes()).unwrap_or("");
    let netbios = core::str::from_utf8(s.netbios_name.as_bytes()).unwrap_or("");
    let agent_config =
        match AgentConfig::new(site_code, mode, text(&s.mp_url), netbios, text(&s.fqdn)) {
            Ok(c) => c.with_site_generation(generation),
            Err(e) => {
                return unsafe {
                    fail(
                        p,
                        MPAGENT_ERR_CONFIG,
                        format_args!("the configuration: {e}"),
                    )
                }
            }
        };
    // SAFETY: fields of the set-up context; no driver borrows them yet.
    unsafe {
        let net = &mut *addr_of_mut!((*p).net);
        net.host = CText::of(agent_config.mp.host);
        net.port = agent_config.mp.port;
        net.tls = agent_config.mp.https;
        let host = &mut *addr_of_mut!((*p).host);
        host.fqdn = agent_config.fqdn;
        host.ip = if has_ip {
            core::str::from_utf8(s.ip.as_bytes()).ok()
        } else {
            None
        };
        host.mac = if has_mac {
            core::str::from_utf8(s.mac.as_bytes()).ok()
        } else {
            None
        };
        addr_of_mut!((*p).config).write(MaybeUninit::new(agent_config));
    }

    let flash = CbFlash { cb };
    let layout = Layout::split::<CbFlash>(cb.flash_size, IDENTITY_SLOT);
    match Store::open(flash, layout) {
        Ok(store) => {
            // SAFETY: no driver borrows the store yet.
            unsafe { addr_of_mut!((*p).store).write(Some(store)) };
            MPAGENT_OK
        }
        Err(e) => unsafe {
            fail(
                p,
                MPAGENT_ERR_STORE,
                format_args!(
                    "opening the store on the {}-byte flash region ({} bytes per erase): {e}",
                    cb.flash_size, MPAGENT_FLASH_ERASE_SIZE
                ),
            )
        },
    }
}

/// Loads the identity (P-256 key, certificate, registration state) from the store, or makes
/// one (key from `random`, self-signed certificate) and saves it before anything is sent. Then
/// the agent is ready for `mpagent_step`. `created` (may be NULL) is set to 1 when a new
/// identity was made, 0 when one was loaded.
///
/// # Safety
/// `ctx` was set up by `mpagent_init`; `created` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mpagent_identity(ctx: *mut mpagent_context, created: *mut c_int) -> c_int {
    let Some(p) = inner(ctx) else {
        return MPAGENT_ERR_ARGUMENT;
    };
    // SAFETY: fields of a set-up context, reached one at a time.
    unsafe {
        if (*addr_of!((*p).driver)).is_some() {
            return fail(
                p,
                MPAGENT_ERR_STATE,
                format_args!("mpagent_identity was called already"),
            );
        }
        let Some(store) = (*addr_of_mut!((*p).store)).as_mut() else {
            return fail(
                p,
                MPAGENT_ERR_STATE,
                format_args!("the store is not open: mpagent_init failed or was not called"),
            );
        };
        let cert = &mut *addr_of_mut!((*p).cert);
        let exchange = &mut *addr_of_mut!((*p).exchange);
        let host = &mut *addr_of_mut!((*p).host);
        let rng = &mut *addr_of_mut!((*p).rng);
        let clock = &*addr_of!((*p).clock);
        let config: &'static AgentConfig<'static> = (*addr_of!((*p).config)).assume_init_ref();

        let mut made = false;
        let mut state = RegistrationState::Unregistered;
        let cert_len;
        let signer = match store.load_identity(&mut exchange[..]) {
            Ok(Some(found)) => {
                let (Ok(secret), true) = (
                    <[u8; 32]>::try_from(found.key),
                    found.cert_der.len() <= cert.len(),
                ) else {
                    return fail(
                        p,
                        MPAGENT_ERR_IDENTITY,
                        format_args!(
                            "the stored identity is not a P-256 key ({} bytes) with a certificate of at most {} bytes",
                            found.key.len(),
                            MAX_CERT_LEN
                        ),
                    );
                };
                let Some(dst) = cert.get_mut(..found.cert_der.len()) else {
                    return MPAGENT_ERR_IDENTITY;
                };
                dst.copy_from_slice(found.cert_der);
                cert_len = found.cert_der.len();
                state = found.registration;
                host.secret = secret;
                match P256Signer::from_secret_bytes(&secret) {
                    Ok(signer) => signer,
                    Err(e) => {
                        return fail(p, MPAGENT_ERR_IDENTITY, format_args!("the stored key: {e}"))
                    }
                }
            }
            Ok(None) => {
                made = true;
                let failed = &*addr_of!((*p).rng_failed);
                failed.set(false);
                let signer = P256Signer::generate(rng);
                let params =
                    CertParams::self_signed_now(config.netbios_name, clock.now_secs(), rng);
                if failed.get() {
                    return fail(
                        p,
                        MPAGENT_ERR_RANDOM,
                        format_args!(
                            "the random callback failed while the key was made; nothing was saved"
                        ),
                    );
                }
                cert_len = match build_self_signed_p256(&params, &signer, &mut cert[..]) {
                    Ok(len) => len,
                    Err(e) => {
                        return fail(
                            p,
                            MPAGENT_ERR_IDENTITY,
                            format_args!("the certificate: {e}"),
                        )
                    }
                };
                host.secret = signer.secret_bytes();
                let record = StoredIdentity {
                    key: &host.secret,
                    cert_der: cert.get(..cert_len).unwrap_or(&[]),
                    registration: state,
                };
                if let Err(e) = store.save_identity(&record) {
                    return fail(
                        p,
                        MPAGENT_ERR_STORE,
                        format_args!("saving the identity: {e}"),
                    );
                }
                signer
            }
            Err(e) => {
                return fail(
                    p,
                    MPAGENT_ERR_STORE,
                    format_args!("loading the identity: {e}"),
                )
            }
        };
        addr_of_mut!((*p).cert_len).write(cert_len);
        addr_of_mut!((*p).stored_state).write(state);
        addr_of_mut!((*p).signer).write(Some(signer));
        if !created.is_null() {
            created.write(c_int::from(made));
        }
        start(p, state)
    }
}

/// Stores a provisioned identity (a PKI-issued certificate, native mode): the P-256 secret
/// `secret` (32 bytes, big-endian) and its certificate `cert_der` (`cert_len` bytes of DER),
/// replacing any stored identity, with the registration state reset. Call it after
/// `mpagent_init` and before `mpagent_identity`, which then loads it. Refused with
/// `MPAGENT_ERR_IDENTITY` when the secret is not a P-256 key, the certificate is not DER for a
/// P-256 key, or its key is not the secret's.
///
/// # Safety
/// `ctx` was set up by `mpagent_init`; `secret` holds 32 bytes, `cert_der` `cert_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mpagent_identity_provision(
    ctx: *mut mpagent_context,
    secret: *const u8,
    cert_der: *const u8,
    cert_len: usize,
) -> c_int {
    let Some(p) = inner(ctx) else {
        return MPAGENT_ERR_ARGUMENT;
    };
    if secret.is_null() || cert_der.is_null() {
        return MPAGENT_ERR_ARGUMENT;
    }
    // SAFETY: fields of a set-up context; no driver exists when the checks below pass.
    unsafe {
        if (*addr_of!((*p).driver)).is_some() {
            return fail(
                p,
                MPAGENT_ERR_STATE,
                format_args!("mpagent_identity_provision comes before mpagent_identity"),
            );
        }
        let Some(store) = (*addr_of_mut!((*p).store)).as_mut() else {
            return fail(
                p,
                MPAGENT_ERR_STATE,
                format_args!("the store is not open: mpagent_init failed or was not called"),
            );
        };
        if cert_len > MAX_CERT_LEN {
            return fail(
                p,
                MPAGENT_ERR_IDENTITY,
                format_args!(
                    "the certificate is {cert_len} bytes; at most {MAX_CERT_LEN} are kept"
                ),
            );
        }
        let key: [u8; 32] = *secret.cast::<[u8; 32]>();
        let cert = core::slice::from_raw_parts(cert_der, cert_len);
        let signer = match P256Signer::from_secret_bytes(&key) {
            Ok(s) => s,
            Err(e) => {
                return fail(
                    p,
                    MPAGENT_ERR_IDENTITY,
                    format_args!("the provisioned secret: {e}"),
                )
            }
        };
        let public = match mpagent_core::identity::cert_public_key_p256(cert) {
            Ok(k) => k,
            Err(e) => {
                return fail(
                    p,
                    MPAGENT_ERR_IDENTITY,
                    format_args!("the provisioned certificate: {e}"),
                )
            }
        };
        if signer.verifying_key().to_encoded_point(false).as_bytes() != public.as_slice() {
            return fail(
                p,
                MPAGENT_ERR_IDENTITY,
                format_args!(
                    "the provisioned certificate is for another key than the provisioned secret"
                ),
            );
        }
        let record = StoredIdentity {
            key: &key,
            cert_der: cert,
            registration: RegistrationState::Unregistered,
        };
        if let Err(e) = store.save_identity(&record) {
            return fail(
                p,
                MPAGENT_ERR_STORE,
                format_args!("saving the provisioned identity: {e}"),
            );
        }
    }
    MPAGENT_OK
}

/// Builds the agent over the context's fields.
///
/// # Safety
/// `p` is set up, with the store open and the signer made; no driver exists.
unsafe fn start(p: *mut Inner, state: RegistrationState) -> c_int {
    // SAFETY: every reference below is to a distinct field of the context, which does not
    // move and outlives the driver; from here on those fields are reached only through the
    // driver (the caller's contract on `mpagent_context`).
    unsafe {
        let Some(signer) = (*addr_of!((*p).signer)).as_ref() else {
            return MPAGENT_ERR_STATE;
        };
        let Some(store) = (*addr_of_mut!((*p).store)).as_mut() else {
            return MPAGENT_ERR_STATE;
        };
        let cert_len = addr_of!((*p).cert_len).read();
        let cert: &'static [u8] = (*addr_of!((*p).cert)).get(..cert_len).unwrap_or(&[]);
        let config: &'static AgentConfig<'static> = (*addr_of!((*p).config)).assume_init_ref();
        let host = &mut *addr_of_mut!((*p).host);
        host.cert_der = cert;
        let clock = &mut *addr_of_mut!((*p).clock);
        let agent = Agent::new(state, Schedule::default(), store.len(), clock.now_secs());
        let device = Device {
            config,
            identity: SigningIdentity {
                signer,
                cert_der: cert,
            },
            agent_type: AgentType::Client,
        };
        let driver = Driver::new(
            agent,
            device,
            &mut *addr_of_mut!((*p).net),
            clock,
            store,
            &mut *addr_of_mut!((*p).rng),
            Buffers {
                exchange: (&mut *addr_of_mut!((*p).exchange)).as_mut_slice(),
                policy_scratch: (&mut *addr_of_mut!((*p).scratch)).as_mut_slice(),
                policies: (&mut *addr_of_mut!((*p).policies)).as_mut_slice(),
            },
            host,
        );
        addr_of_mut!((*p).driver).write(Some(driver));
    }
    MPAGENT_OK
}

/// Polls a future whose IO never waits (the callbacks block) to its end.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// The driver of a context that `mpagent_identity` started.
///
/// # Safety
/// `p` comes from [`inner`]; the reference is the only one to the driver while it lives.
unsafe fn driver<'a>(p: *mut Inner) -> Option<&'a mut CDriver> {
    // SAFETY: the caller's contract.
    unsafe { (*addr_of_mut!((*p).driver)).as_mut() }
}

fn action_code(action: Action) -> c_int {
    match action {
        Action::Register(..) => MPAGENT_ACTION_REGISTER,
        Action::Queue { .. } => MPAGENT_ACTION_QUEUE,
        Action::Deliver(_) => MPAGENT_ACTION_DELIVER,
        Action::PollPolicy(_) => MPAGENT_ACTION_POLICY,
        Action::Sleep(_) => MPAGENT_ACTION_IDLE,
    }
}

/// Records a driver error as the last error.
unsafe fn agent_error(p: *mut Inner, e: DriverError<NorFlashErrorKind>) -> c_int {
    let code = match e {
        DriverError::Store(_) | DriverError::QueueRead(_) => MPAGENT_ERR_STORE,
        _ => MPAGENT_ERR_AGENT,
    };
    // SAFETY: the caller's contract.
    unsafe { fail(p, code, format_args!("{e}")) }
}

/// Carries out the agent's next action: at most one exchange with the MP over the transport
/// callbacks (blocking in them). `out` (may be NULL) says what was done, or until when there is
/// nothing to do: sleep until then (or until an event of the device's own) and step again.
///
/// # Safety
/// `ctx` was set up by `mpagent_init` and `mpagent_identity`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mpagent_step(
    ctx: *mut mpagent_context,
    out: *mut mpagent_step_result,
) -> c_int {
    let Some(p) = inner(ctx) else {
        return MPAGENT_ERR_ARGUMENT;
    };
    // SAFETY: `p` comes from `inner`.
    if unsafe { busy(p) } {
        return MPAGENT_ERR_BUSY;
    }
    // SAFETY: the driver is reached through its field only.
    let Some(d) = (unsafe { driver(p) }) else {
        return unsafe {
            fail(
                p,
                MPAGENT_ERR_STATE,
                format_args!("mpagent_step before mpagent_identity"),
            )
        };
    };
    let cb = d.connector.cb;
    if cb.connect.is_none() || cb.send.is_none() || cb.recv.is_none() {
        return unsafe {
            fail(
                p,
                MPAGENT_ERR_ARGUMENT,
                format_args!(
                    "mpagent_step needs the connect, send and recv callbacks (mpagent_pump does not)"
                ),
            )
        };
    }
    // SAFETY: the flag is a Cell the RNG shares; nothing holds it mutably.
    let failed = unsafe { &*addr_of!((*p).rng_failed) };
    failed.set(false);
    let result = block_on(d.step());
    let rng_failed = failed.get();
    let step = match result {
        Ok(step) => step,
        Err(e) => return unsafe { agent_error(p, e) },
    };
    if rng_failed {
        return unsafe {
            fail(
                p,
                MPAGENT_ERR_RANDOM,
                format_args!("the random callback failed during the step; a message ID may repeat"),
            )
        };
    }
    let r = match step {
        Step::Idle(t) => mpagent_step_result {
            action: MPAGENT_ACTION_IDLE,
            until: i64::try_from(t.0).unwrap_or(i64::MAX),
        },
        Step::Did(a) => mpagent_step_result {
            action: action_code(a),
            until: 0,
        },
    };
    if !out.is_null() {
        // SAFETY: `out` is writable (the caller's contract).
        unsafe { out.write(r) };
    }
    MPAGENT_OK
}

/// Steps until there is nothing to do now; `until` (may be NULL) gets the UTC second at which
/// the agent next has something to do. At most `max_steps` steps (0: no bound) are taken;
/// reaching the bound returns `MPAGENT_OK` with `until` set to now.
///
/// # Safety
/// As for `mpagent_step`; `until` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mpagent_run_until_idle(
    ctx: *mut mpagent_context,
    max_steps: u32,
    until: *mut i64,
) -> c_int {
    let mut taken: u32 = 0;
    loop {
        let mut r = mpagent_step_result::default();
        // SAFETY: the caller's contract.
        let rc = unsafe { mpagent_step(ctx, &mut r) };
        if rc != MPAGENT_OK {
            return rc;
        }
        taken = taken.saturating_add(1);
        let done = r.action == MPAGENT_ACTION_IDLE;
        if done || (max_steps != 0 && taken >= max_steps) {
            if !until.is_null() {
                let t = if done {
                    r.until
                } else {
                    inner(ctx)
                        // SAFETY: the clock is only read.
                        .map(|p| unsafe { driver(p) }.map_or(0, |d| d.clock.now_secs().0))
                        .map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX))
                };
                // SAFETY: `until` is writable (the caller's contract).
                unsafe { until.write(t) };
            }
            return MPAGENT_OK;
        }
    }
}

/// The registration state the agent holds now (`MPAGENT_UNREGISTERED`, `_PENDING`,
/// `_REGISTERED`, `_REJECTED`), or a negative error code.
///
/// # Safety
/// `ctx` was set up by `mpagent_init`.
#[no_mangle]
pub unsafe extern "C" fn mpagent_registration_state(ctx: *mut mpagent_context) -> c_int {
    let Some(p) = inner(ctx) else {
        return MPAGENT_ERR_ARGUMENT;
    };
    // SAFETY: `p` comes from `inner`.
    if unsafe { busy(p) } {
        return MPAGENT_ERR_BUSY;
    }
    // SAFETY: read only, through the driver when there is one.
    let state = match unsafe { driver(p) } {
        Some(d) => d.agent.registration(),
        None => unsafe { addr_of!((*p).stored_state).read() },
    };
    match state {
        RegistrationState::Unregistered => MPAGENT_UNREGISTERED,
        RegistrationState::Pending(_) => MPAGENT_PENDING,
        RegistrationState::Registered(_) => MPAGENT_REGISTERED,
        RegistrationState::Rejected(_) => MPAGENT_REJECTED,
    }
}

/// Bytes `mpagent_smsid` needs, NUL included (`GUID:` and a 36-character GUID).
pub const MPAGENT_SMSID_LEN: usize = 42;

/// Writes the SMSID (`GUID:xxxxxxxx-…`, NUL-terminated) into `buf` (`len` ≥
/// `MPAGENT_SMSID_LEN`): the registered one, or the one pending approval. Returns
/// `MPAGENT_ERR_NO_SMSID` while there is none.
///
/// # Safety
/// `ctx` was set up by `mpagent_init`; `buf` holds `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mpagent_smsid(
    ctx: *mut mpagent_context,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    let Some(p) = inner(ctx) else {
        return MPAGENT_ERR_ARGUMENT;
    };
    // SAFETY: `p` comes from `inner`.
    if unsafe { busy(p) } {
        return MPAGENT_ERR_BUSY;
    }
    if buf.is_null() {
        return MPAGENT_ERR_ARGUMENT;
    }
    if len < MPAGENT_SMSID_LEN {
        return MPAGENT_ERR_BUFFER;
    }
    // SAFETY: read only, through the driver when there is one.
    // The registered or pending SMSID; otherwise the last one the site confirmed, if any.
    let (state, held) = match unsafe { driver(p) } {
        Some(d) => (d.agent.registration(), d.agent.smsid()),
        None => (unsafe { addr_of!((*p).stored_state).read() }, None),
    };
    let smsid = match state {
        RegistrationState::Pending(id) | RegistrationState::Registered(id) => Some(id),
        _ => held,
    };
    let Some(smsid) = smsid else {
        return MPAGENT_ERR_NO_SMSID;
    };
    let mut t = CText::<MPAGENT_SMSID_LEN>::new();
    let _ = write!(t, "{smsid}");
    // SAFETY: `buf` holds `len` bytes.
    unsafe { copy_out(t.as_bytes(), buf, len) }
}

/// Fills `out` with the agent's counters.
///
/// # Safety
/// `ctx` was set up by `mpagent_init` and `mpagent_identity`; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn mpagent_get_counts(
    ctx: *mut mpagent_context,
    out: *mut mpagent_counts,
) -> c_int {
    let Some(p) = inner(ctx) else {
        return MPAGENT_ERR_ARGUMENT;
    };
    // SAFETY: `p` comes from `inner`.
    if unsafe { busy(p) } {
        return MPAGENT_ERR_BUSY;
    }
    if out.is_null() {
        return MPAGENT_ERR_ARGUMENT;
    }
    // SAFETY: read only, through the driver.
    let Some(d) = (unsafe { driver(p) }) else {
        return MPAGENT_ERR_STATE;
    };
    let c = d.agent.counts();
    let r = mpagent_counts {
        queued: c.queued,
        delivered: c.delivered,
        superseded: c.superseded,
        no_room: c.no_room,
        refused: c.refused,
        in_queue: d.store.len(),
    };
    // SAFETY: `out` is writable.
    unsafe { out.write(r) };
    MPAGENT_OK
}

/// Makes the agent try again now what it is backing off from (registration, delivery, policy),
/// e.g. after the device's network came back.
///
/// # Safety
/// `ctx` was set up by `mpagent_init` and `mpagent_identity`.
#[no_mangle]
pub unsafe extern "C" fn mpagent_retry_now(ctx: *mut mpagent_context) -> c_int {
    let Some(p) = inner(ctx) else {
        return MPAGENT_ERR_ARGUMENT;
    };
    // SAFETY: `p` comes from `inner`.
    if unsafe { busy(p) } {
        return MPAGENT_ERR_BUSY;
    }
    // SAFETY: through the driver only.
    let Some(d) = (unsafe { driver(p) }) else {
        return MPAGENT_ERR_STATE;
    };
    let now = d.clock.now_secs();
    d.agent.retry_now(now);
    MPAGENT_OK
}

/// Queues a state message: `state` of `topic` (a `topic_type` topic), e.g. the outcome of a
/// firmware update, delivered in order with the other reports and kept in flash through an
/// outage. It names the device by its SMSID: `MPAGENT_ERR_NO_SMSID` until the site gave one.
/// `topic` is UTF-8, NUL-terminated, at most `MPAGENT_MAX_STATE_TOPIC` bytes
/// (`MPAGENT_ERR_ARGUMENT` otherwise); `MPAGENT_ERR_QUEUE_FULL` when there is no room yet.
///
/// # Safety
/// `ctx` was set up by `mpagent_init` and `mpagent_identity`; `topic` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn mpagent_report_state(
    ctx: *mut mpagent_context,
    topic: *const c_char,
    topic_type: u32,
    state: u32,
) -> c_int {
    let Some(p) = inner(ctx) else {
        return MPAGENT_ERR_ARGUMENT;
    };
    // SAFETY: `p` comes from `inner`.
    if unsafe { busy(p) } {
        return MPAGENT_ERR_BUSY;
    }
    // SAFETY: `topic` is NUL-terminated (the caller's contract) or NULL.
    let Some(topic) = (unsafe { crate::callbacks::c_str(topic) }) else {
        // SAFETY: `p` comes from `inner`.
        return unsafe {
            fail(
                p,
                MPAGENT_ERR_ARGUMENT,
                format_args!("mpagent_report_state: topic is NULL or not UTF-8"),
            )
        };
    };
    // SAFETY: through the driver only.
    let Some(d) = (unsafe { driver(p) }) else {
        return MPAGENT_ERR_STATE;
    };
    use mpagent_core::io::driver::StateMessageError;
    let result = d.queue_state_message(topic, topic_type, state);
    let code = match &result {
        Ok(()) => return MPAGENT_OK,
        Err(StateMessageError::NotRegistered) => MPAGENT_ERR_NO_SMSID,
        Err(StateMessageError::TopicTooLong { .. }) => MPAGENT_ERR_ARGUMENT,
        Err(StateMessageError::Store(mpagent_core::store::StoreError::QueueFull)) => {
            MPAGENT_ERR_QUEUE_FULL
        }
        Err(_) => MPAGENT_ERR_STORE,
    };
    if let Err(e) = result {
        // SAFETY: `p` comes from `inner`; the driver's borrow ended with `result`.
        return unsafe { fail(p, code, format_args!("mpagent_report_state: {e}")) };
    }
    code
}

// ---- the pump (sans-IO) variant ----

/// `mpagent_pump_out.want`: open a connection to `host`:`port` (`tls`), then pump
/// `MPAGENT_PUMP_CONNECTED` or `MPAGENT_PUMP_CONNECT_FAILED`.
pub const MPAGENT_WANT_CONNECT: c_int = 1;
/// `mpagent_pump_out.want`: send `tx[0..tx_len]` (or a first part of it), then pump
/// `MPAGENT_PUMP_SENT` with the count (or `MPAGENT_PUMP_IO_FAILED`).
pub const MPAGENT_WANT_SEND: c_int = 2;
/// `mpagent_pump_out.want`: wait for bytes from the MP, then pump `MPAGENT_PUMP_RECEIVED` (or
/// `MPAGENT_PUMP_PEER_CLOSED`, `MPAGENT_PUMP_IO_FAILED`).
pub const MPAGENT_WANT_RECV: c_int = 3;
/// `mpagent_pump_out.want`: a step is done (`action` says which): pump `MPAGENT_PUMP_NONE` again.
pub const MPAGENT_WANT_STEP: c_int = 4;
/// `mpagent_pump_out.want`: nothing to do before `until`: pump `MPAGENT_PUMP_NONE` then.
pub const MPAGENT_WANT_SLEEP: c_int = 5;

/// `mpagent_pump_in.event`: nothing new (start or go on).
pub const MPAGENT_PUMP_NONE: c_int = 0;
/// `mpagent_pump_in.event`: the connection is open.
pub const MPAGENT_PUMP_CONNECTED: c_int = 1;
/// `mpagent_pump_in.event`: the connection could not be opened.
pub const MPAGENT_PUMP_CONNECT_FAILED: c_int = 2;
/// `mpagent_pump_in.event`: `sent` bytes of `tx` went out.
pub const MPAGENT_PUMP_SENT: c_int = 3;
/// `mpagent_pump_in.event`: `rx[0..rx_len]` arrived (see `consumed`).
pub const MPAGENT_PUMP_RECEIVED: c_int = 4;
/// `mpagent_pump_in.event`: the MP closed the connection.
pub const MPAGENT_PUMP_PEER_CLOSED: c_int = 5;
/// `mpagent_pump_in.event`: sending or receiving failed.
pub const MPAGENT_PUMP_IO_FAILED: c_int = 6;
/// `mpagent_pump_in.event`: the caller's deadline for the exchange passed: it is given up and
/// counted as a failure (the agent backs off).
pub const MPAGENT_PUMP_TIMEOUT: c_int = 7;

/// What the caller hands `mpagent_pump`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mpagent_pump_in {
    /// UTC seconds now.
    pub now: i64,
    /// `MPAGENT_PUMP_*`: the answer to the last `want`.
    pub event: c_int,
    /// With `MPAGENT_PUMP_SENT`: how many bytes of `tx` went out.
    pub sent: usize,
    /// With `MPAGENT_PUMP_RECEIVED`: the bytes that arrived (read during the call only).
    pub rx: *const u8,
    /// How many bytes `rx` holds.
    pub rx_len: usize,
}

/// What `mpagent_pump` asks of the caller.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mpagent_pump_out {
    /// `MPAGENT_WANT_*`.
    pub want: c_int,
    /// 1: close the connection now (before acting on `want`).
    pub close: c_int,
    /// With `MPAGENT_WANT_CONNECT`: the MP (NUL-terminated; lives in the context).
    pub host: *const c_char,
    /// With `MPAGENT_WANT_CONNECT`: its port.
    pub port: u16,
    /// With `MPAGENT_WANT_CONNECT`: 1 for TLS (native mode).
    pub tls: c_int,
    /// With `MPAGENT_WANT_SEND`: the bytes to send (valid until the next call).
    pub tx: *const u8,
    /// How many bytes `tx` holds.
    pub tx_len: usize,
    /// With `MPAGENT_PUMP_RECEIVED`: how many bytes of `rx` were taken; hand the rest in again.
    pub consumed: usize,
    /// With `MPAGENT_WANT_STEP`: `MPAGENT_ACTION_*` of the step that finished.
    pub action: c_int,
    /// With `MPAGENT_WANT_SLEEP`: UTC seconds at which to pump again.
    pub until: i64,
}

/// Bytes the pump keeps for the step in flight (its future, pinned in the context).
const PUMP_FUTURE_SIZE: usize = 2048;

type StepOutput = Result<Step, DriverError<NorFlashErrorKind>>;
type PollFn = unsafe fn(*mut u8, &mut Context<'_>) -> Poll<StepOutput>;
type DropFn = unsafe fn(*mut u8);

/// One step's future, type-erased, in place.
#[repr(C, align(8))]
struct FutureSlot {
    bytes: MaybeUninit<[u8; PUMP_FUTURE_SIZE]>,
    poll: Option<PollFn>,
    drop: Option<DropFn>,
}

impl FutureSlot {
    const EMPTY: Self = Self {
        bytes: MaybeUninit::uninit(),
        poll: None,
        drop: None,
    };
}

/// # Safety
/// `p` holds a live, pinned `F`.
unsafe fn poll_erased<F: Future<Output = StepOutput>>(
    p: *mut u8,
    cx: &mut Context<'_>,
) -> Poll<StepOutput> {
    // SAFETY: the caller's contract; the slot never moves while it holds the future.
    unsafe { core::pin::Pin::new_unchecked(&mut *p.cast::<F>()) }.poll(cx)
}

/// # Safety
/// `p` holds a live `F`, dropped here once.
unsafe fn drop_erased<F>(p: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::drop_in_place(p.cast::<F>()) }
}

/// Puts `future` into `slot`; refused (with its size) when it does not fit.
///
/// # Safety
/// `slot` is empty.
unsafe fn place<F: Future<Output = StepOutput>>(
    slot: *mut FutureSlot,
    future: F,
) -> Result<(), usize> {
    if size_of::<F>() > PUMP_FUTURE_SIZE || align_of::<F>() > align_of::<FutureSlot>() {
        return Err(size_of::<F>());
    }
    // SAFETY: the slot is empty, large and aligned enough (checked above).
    unsafe {
        addr_of_mut!((*slot).bytes).cast::<F>().write(future);
        addr_of_mut!((*slot).poll).write(Some(poll_erased::<F>));
        addr_of_mut!((*slot).drop).write(Some(drop_erased::<F>));
    }
    Ok(())
}

/// Whether a step driven by `mpagent_pump` is in flight.
///
/// # Safety
/// `p` comes from [`inner`].
unsafe fn busy(p: *mut Inner) -> bool {
    // SAFETY: the slot's fields are only touched by the functions of this file.
    unsafe { addr_of!((*p).slot.poll).read().is_some() }
}

/// Drops the step in flight, if any.
///
/// # Safety
/// `p` comes from [`inner`]; nothing polls the slot now.
unsafe fn drop_step(p: *mut Inner) {
    // SAFETY: the slot holds a live future exactly when `drop` is set.
    unsafe {
        if let Some(d) = addr_of!((*p).slot.drop).read() {
            addr_of_mut!((*p).slot.poll).write(None);
            addr_of_mut!((*p).slot.drop).write(None);
            d(addr_of_mut!((*p).slot.bytes).cast::<u8>());
        }
    }
}

/// The pump (sans-IO) variant of `mpagent_step`: the caller owns the connection and the time.
/// Each call hands in the answer to the last `out->want` (`in->event`) and the time, and takes
/// the next want: connect, send these bytes, receive, a step is done, or sleep until. One step is
/// at most one exchange with the MP; `MPAGENT_PUMP_TIMEOUT` gives it up. The `connect`, `send`,
/// `recv`, `close` and `now` callbacks are not used while pumping.
///
/// # Safety
/// `ctx` was set up by `mpagent_init` and `mpagent_identity`; `input` points at a filled struct
/// whose `rx` holds `rx_len` bytes; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn mpagent_pump(
    ctx: *mut mpagent_context,
    input: *const mpagent_pump_in,
    out: *mut mpagent_pump_out,
) -> c_int {
    let Some(p) = inner(ctx) else {
        return MPAGENT_ERR_ARGUMENT;
    };
    if input.is_null() || out.is_null() {
        return MPAGENT_ERR_ARGUMENT;
    }
    // SAFETY: the caller's contract.
    let input = unsafe { *input };
    // SAFETY: `pump` is only shared (its fields are Cells).
    let st: &PumpState = unsafe { &*addr_of!((*p).pump) };
    let mut o = mpagent_pump_out {
        want: MPAGENT_WANT_STEP,
        close: 0,
        host: core::ptr::null(),
        port: 0,
        tls: 0,
        tx: core::ptr::null(),
        tx_len: 0,
        consumed: 0,
        action: MPAGENT_ACTION_IDLE,
        until: input.now,
    };
    st.now.set(u64::try_from(input.now).unwrap_or(0));
    st.consumed.set(0);
    st.close.set(false);
    // SAFETY: `p` comes from `inner`.
    let in_flight = unsafe { busy(p) };
    match input.event {
        MPAGENT_PUMP_NONE => {}
        MPAGENT_PUMP_CONNECTED => st.connected.set(Some(true)),
        MPAGENT_PUMP_CONNECT_FAILED => st.connected.set(Some(false)),
        MPAGENT_PUMP_SENT => st.sent.set(Some(input.sent)),
        MPAGENT_PUMP_RECEIVED if !input.rx.is_null() && input.rx_len > 0 => {
            st.rx.set((input.rx, input.rx_len))
        }
        MPAGENT_PUMP_RECEIVED | MPAGENT_PUMP_PEER_CLOSED => st.peer_closed.set(true),
        MPAGENT_PUMP_IO_FAILED => st.io_failed.set(true),
        MPAGENT_PUMP_TIMEOUT => {
            if in_flight {
                // SAFETY: nothing polls the slot now; the driver is free once it is dropped.
                unsafe {
                    // Pumping still: the failure is counted at the time handed in.
                    st.active.set(true);
                    drop_step(p);
                    if let Some(d) = driver(p) {
                        d.on_deadline();
                    }
                    st.active.set(false);
                }
            }
            st.reset();
            o.close = c_int::from(st.close.take() || st.open.take());
            // SAFETY: `out` is writable.
            unsafe { out.write(o) };
            return MPAGENT_OK;
        }
        other => {
            return unsafe {
                fail(
                    p,
                    MPAGENT_ERR_ARGUMENT,
                    format_args!(
                        "mpagent_pump_in.event is {other}; it must be one of MPAGENT_PUMP_*"
                    ),
                )
            }
        }
    }
    if !in_flight {
        st.reset();
        if input.event != MPAGENT_PUMP_NONE {
            return unsafe {
                fail(
                    p,
                    MPAGENT_ERR_STATE,
                    format_args!(
                        "mpagent_pump was handed event {} with no exchange in flight",
                        input.event
                    ),
                )
            };
        }
        // SAFETY: no step is in flight, so nothing else holds the driver; the future borrows it
        // for as long as it lives in the slot, which does not move.
        let Some(d) = (unsafe { driver(p) }) else {
            return unsafe {
                fail(
                    p,
                    MPAGENT_ERR_STATE,
                    format_args!("mpagent_pump before mpagent_identity"),
                )
            };
        };
        let d: &'static mut CDriver = d;
        if let Err(size) = unsafe { place(addr_of_mut!((*p).slot), d.step()) } {
            return unsafe {
                fail(
                    p,
                    MPAGENT_ERR_AGENT,
                    format_args!("a step needs {size} bytes; the pump keeps {PUMP_FUTURE_SIZE}"),
                )
            };
        }
    }
    // SAFETY: `rng_failed` is a Cell the RNG shares.
    let failed = unsafe { &*addr_of!((*p).rng_failed) };
    failed.set(false);
    st.want.set(0);
    st.active.set(true);
    let mut cx = Context::from_waker(Waker::noop());
    // SAFETY: the slot holds a live future (placed above or by an earlier call).
    let polled = unsafe {
        match addr_of!((*p).slot.poll).read() {
            Some(poll) => poll(addr_of_mut!((*p).slot.bytes).cast::<u8>(), &mut cx),
            None => Poll::Ready(Ok(Step::Idle(mpagent_core::UnixTime(0)))),
        }
    };
    o.consumed = st.consumed.get();
    let result = match polled {
        Poll::Pending => {
            st.active.set(false);
            o.close = c_int::from(st.close.take());
            match st.want.get() {
                MPAGENT_WANT_CONNECT => {
                    // SAFETY: `net` is only read here (the host text, port and scheme).
                    let net = unsafe { &(*addr_of!((*p).net)) };
                    o.host = net.host.as_ptr();
                    o.port = net.port;
                    o.tls = c_int::from(net.tls);
                }
                MPAGENT_WANT_SEND => {
                    let (tx, len) = st.tx.get();
                    o.tx = tx;
                    o.tx_len = len;
                }
                MPAGENT_WANT_RECV => {}
                _ => {
                    unsafe { drop_step(p) };
                    return unsafe {
                        fail(
                            p,
                            MPAGENT_ERR_AGENT,
                            format_args!("the step waited on nothing the pump provides"),
                        )
                    };
                }
            }
            o.want = st.want.get();
            None
        }
        Poll::Ready(r) => {
            // SAFETY: done: the future is dropped (its connection with it) and the slot freed.
            unsafe { drop_step(p) };
            st.active.set(false);
            o.close = c_int::from(st.close.take());
            st.reset();
            Some(r)
        }
    };
    if failed.get() {
        return unsafe {
            fail(
                p,
                MPAGENT_ERR_RANDOM,
                format_args!("the random callback failed during the step; a message ID may repeat"),
            )
        };
    }
    match result {
        None => {}
        Some(Ok(Step::Idle(t))) => {
            o.want = MPAGENT_WANT_SLEEP;
            o.until = i64::try_from(t.0).unwrap_or(i64::MAX);
        }
        Some(Ok(Step::Did(a))) => {
            o.want = MPAGENT_WANT_STEP;
            o.action = action_code(a);
        }
        Some(Err(e)) => return unsafe { agent_error(p, e) },
    }
    // SAFETY: `out` is writable.
    unsafe { out.write(o) };
    MPAGENT_OK
}
