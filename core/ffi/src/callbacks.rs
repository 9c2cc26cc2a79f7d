//! The caller's callbacks and the core's seams over them: flash, clock, RNG, transport, host.

use core::cell::Cell;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::fmt::Write as _;
use core::future::poll_fn;
use core::task::Poll;

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use mpagent_core::agent::lifecycle::ReportKind;
use mpagent_core::io::driver::Persist;
use mpagent_core::io::SendError;
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::embedded_storage::nor_flash::{
    ErrorType as FlashErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash,
};
use mpagent_core::store::{MessageMeta, StoredIdentity};
use mpagent_core::wire::report::{
    BasicDiscovery, InstanceContent, InstanceSource, InstanceWriter, Namespace, Report,
    ReportIdentity, ReportType, ReportVersion,
};
use mpagent_core::{Clock, Connector, Event, Host, RegistrationState, Store, UnixTime};
use rand_core::{CryptoRng, RngCore};

use crate::context::{
    MPAGENT_EVENT_DELIVERED, MPAGENT_EVENT_DELIVERY_FAILED, MPAGENT_EVENT_POLICY,
    MPAGENT_EVENT_QUEUED, MPAGENT_EVENT_REFUSED, MPAGENT_EVENT_REGISTRATION,
    MPAGENT_EVENT_REGISTRATION_FAILED, MPAGENT_EVENT_REGISTRATION_SENDING,
};

/// Bytes one erase of the flash region covers: `flash_erase` is called with ranges aligned to it.
pub const MPAGENT_FLASH_ERASE_SIZE: u32 = 4096;
/// Bytes one write of the flash region covers: `flash_write` is called with offsets and lengths
/// that are multiples of it.
pub const MPAGENT_FLASH_WRITE_SIZE: u32 = 4;
/// Longest text handed to the `event` callback, NUL included.
pub const MPAGENT_EVENT_TEXT_MAX: usize = 192;
/// Most instances one inventory report asks `inventory_item` for.
pub const MPAGENT_INVENTORY_MAX_ITEMS: usize = 1024;

/// One property of an inventory instance: `<name>value</name>`. Both UTF-8, NUL-terminated;
/// repeat a name for an array property.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mpagent_property {
    /// The property name (an XML name, e.g. `"TotalPhysicalMemory"`).
    pub name: *const c_char,
    /// Its value (escaped by the library).
    pub value: *const c_char,
}

/// One inventory instance, filled by the `inventory_item` callback. The pointers must stay valid
/// until the callback is called again or the report is done.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mpagent_instance {
    /// The WMI class (e.g. `"Win32_ComputerSystem"`).
    pub class_name: *const c_char,
    /// The namespace; NULL means `\\NAME\root\cimv2`.
    pub namespace_name: *const c_char,
    /// The properties, in order.
    pub properties: *const mpagent_property,
    /// How many `properties` there are.
    pub property_count: usize,
}

/// What the library asks of the caller. Every function gets `user` first. Return codes: 0 (or a
/// byte count) for success, negative for failure; a NULL callback means "not available" where
/// the field says so.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mpagent_callbacks {
    /// Handed back to every callback.
    pub user: *mut c_void,
    /// Bytes of the flash region the store uses (a multiple of `MPAGENT_FLASH_ERASE_SIZE`, at
    /// least 4 of them: two identity slots and two queue pages).
    pub flash_size: u32,
    /// Read `len` bytes at `offset` of the region into `buf`.
    pub flash_read: Option<
        unsafe extern "C" fn(user: *mut c_void, offset: u32, buf: *mut u8, len: usize) -> c_int,
    >,
    /// Program `len` bytes at `offset` (NOR rules: bits only go from 1 to 0).
    pub flash_write: Option<
        unsafe extern "C" fn(user: *mut c_void, offset: u32, buf: *const u8, len: usize) -> c_int,
    >,
    /// Erase `[from, to)` to 0xFF (both multiples of `MPAGENT_FLASH_ERASE_SIZE`).
    pub flash_erase: Option<unsafe extern "C" fn(user: *mut c_void, from: u32, to: u32) -> c_int>,
    /// UTC now, in seconds since 1970.
    pub now: Option<unsafe extern "C" fn(user: *mut c_void) -> i64>,
    /// Fill `buf` with `len` bytes from the device's TRNG (or a DRBG seeded from it).
    pub random: Option<unsafe extern "C" fn(user: *mut c_void, buf: *mut u8, len: usize) -> c_int>,
    /// Open a connection to the MP (`tls`: HTTPS, native mode). One connection at a time;
    /// `timeout_ms` bounds the connect and every later send and recv on it.
    pub connect: Option<
        unsafe extern "C" fn(
            user: *mut c_void,
            host: *const c_char,
            port: u16,
            tls: c_int,
            timeout_ms: u32,
        ) -> c_int,
    >,
    /// Send up to `len` bytes; returns how many were sent (> 0) or a negative code.
    pub send: Option<unsafe extern "C" fn(user: *mut c_void, buf: *const u8, len: usize) -> isize>,
    /// Receive up to `len` bytes; returns how many arrived, 0 when the MP closed, or negative.
    pub recv: Option<unsafe extern "C" fn(user: *mut c_void, buf: *mut u8, len: usize) -> isize>,
    /// Close the connection `connect` opened.
    pub close: Option<unsafe extern "C" fn(user: *mut c_void)>,
    /// Milliseconds passed to `connect` as its timeout.
    pub io_timeout_ms: u32,
    /// Fill `item` with inventory instance number `index` (0, 1, …) and return 1, or return 0
    /// after the last one. Called once per pass over the report (it is hashed, measured and
    /// sent in passes), so it must give the same items every time. NULL: no inventory is sent.
    pub inventory_item: Option<
        unsafe extern "C" fn(user: *mut c_void, index: usize, item: *mut mpagent_instance) -> c_int,
    >,
    /// Whether policy `id` at `version` is applied already (1) or not (0). NULL: never.
    pub policy_applied: Option<
        unsafe extern "C" fn(user: *mut c_void, id: *const c_char, version: *const c_char) -> c_int,
    >,
    /// The next bytes of the policy body being fetched (from its first byte); negative stops the
    /// fetch. NULL: policy bodies are fetched and thrown away.
    pub policy_body:
        Option<unsafe extern "C" fn(user: *mut c_void, bytes: *const u8, len: usize) -> c_int>,
    /// The body is whole (`keep` 1: its hash matched, keep it) or not (`keep` 0: throw it away).
    /// Returns 1 when it was kept. NULL: bodies are not kept.
    pub policy_done: Option<
        unsafe extern "C" fn(
            user: *mut c_void,
            id: *const c_char,
            version: *const c_char,
            len: usize,
            keep: c_int,
        ) -> c_int,
    >,
    /// Something happened: `event` is one of `MPAGENT_EVENT_*`, `text` a sentence for a log.
    /// NULL: nothing is told.
    pub event: Option<unsafe extern "C" fn(user: *mut c_void, event: c_int, text: *const c_char)>,
}

/// A NUL-terminated copy of a text for a callback (cut short when longer than `N - 1`).
pub(crate) struct CText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> CText<N> {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }
    pub(crate) fn of(s: &str) -> Self {
        let mut t = Self::new();
        let _ = t.write_str(s);
        t
    }
    pub(crate) const fn buf_len(&self) -> usize {
        N
    }
    pub(crate) fn as_ptr(&self) -> *const c_char {
        self.buf.as_ptr().cast()
    }
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl<const N: usize> core::fmt::Write for CText<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if b == 0 || self.len.saturating_add(1) >= N {
                continue;
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        if let Some(end) = self.buf.get_mut(self.len) {
            *end = 0;
        }
        Ok(())
    }
}

/// A C string the caller handed in, as UTF-8 (`None`: NULL or not UTF-8).
///
/// # Safety
/// `p` is NULL or points at a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's contract (see above).
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

/// The flash region, over `flash_read` / `flash_write` / `flash_erase`.
pub(crate) struct CbFlash {
    pub(crate) cb: mpagent_callbacks,
}

impl FlashErrorType for CbFlash {
    type Error = NorFlashErrorKind;
}

impl CbFlash {
    fn in_range(&self, offset: u32, len: usize) -> Result<(), NorFlashErrorKind> {
        let end = u64::from(offset).saturating_add(len as u64);
        if end > u64::from(self.cb.flash_size) {
            return Err(NorFlashErrorKind::OutOfBounds);
        }
        Ok(())
    }
}

impl ReadNorFlash for CbFlash {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.in_range(offset, bytes.len())?;
        let f = self.cb.flash_read.ok_or(NorFlashErrorKind::Other)?;
        // SAFETY: `bytes` is a live buffer of `bytes.len()` bytes; the callback's contract.
        match unsafe { f(self.cb.user, offset, bytes.as_mut_ptr(), bytes.len()) } {
            0.. => Ok(()),
            _ => Err(NorFlashErrorKind::Other),
        }
    }
    fn capacity(&self) -> usize {
        self.cb.flash_size as usize
    }
}

impl NorFlash for CbFlash {
    const WRITE_SIZE: usize = MPAGENT_FLASH_WRITE_SIZE as usize;
    const ERASE_SIZE: usize = MPAGENT_FLASH_ERASE_SIZE as usize;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if from > to || to > self.cb.flash_size {
            return Err(NorFlashErrorKind::OutOfBounds);
        }
        if !from.is_multiple_of(MPAGENT_FLASH_ERASE_SIZE)
            || !to.is_multiple_of(MPAGENT_FLASH_ERASE_SIZE)
        {
            return Err(NorFlashErrorKind::NotAligned);
        }
        let f = self.cb.flash_erase.ok_or(NorFlashErrorKind::Other)?;
        // SAFETY: the callback's contract.
        match unsafe { f(self.cb.user, from, to) } {
            0.. => Ok(()),
            _ => Err(NorFlashErrorKind::Other),
        }
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.in_range(offset, bytes.len())?;
        if !offset.is_multiple_of(MPAGENT_FLASH_WRITE_SIZE)
            || !bytes
                .len()
                .is_multiple_of(MPAGENT_FLASH_WRITE_SIZE as usize)
        {
            return Err(NorFlashErrorKind::NotAligned);
        }
        let f = self.cb.flash_write.ok_or(NorFlashErrorKind::Other)?;
        // SAFETY: `bytes` is live for the call; the callback's contract.
        match unsafe { f(self.cb.user, offset, bytes.as_ptr(), bytes.len()) } {
            0.. => Ok(()),
            _ => Err(NorFlashErrorKind::Other),
        }
    }
}

/// What the pump variant ([`crate::mpagent_pump`]) and the exchange it drives tell each other:
/// the connection asks (`want`) and returns pending; the caller's answer is put here and the
/// step is polled again. Shared through `Cell`s: the driver holds the connection, the context
/// the state.
pub(crate) struct PumpState {
    /// Set while `mpagent_pump` polls: IO and time come from here instead of the callbacks.
    pub(crate) active: Cell<bool>,
    pub(crate) now: Cell<u64>,
    pub(crate) want: Cell<c_int>,
    pub(crate) connected: Cell<Option<bool>>,
    pub(crate) tx: Cell<(*const u8, usize)>,
    pub(crate) sent: Cell<Option<usize>>,
    pub(crate) rx: Cell<(*const u8, usize)>,
    pub(crate) consumed: Cell<usize>,
    pub(crate) peer_closed: Cell<bool>,
    pub(crate) io_failed: Cell<bool>,
    pub(crate) close: Cell<bool>,
    pub(crate) open: Cell<bool>,
}

impl PumpState {
    pub(crate) const fn new() -> Self {
        Self {
            active: Cell::new(false),
            now: Cell::new(0),
            want: Cell::new(0),
            connected: Cell::new(None),
            tx: Cell::new((core::ptr::null(), 0)),
            sent: Cell::new(None),
            rx: Cell::new((core::ptr::null(), 0)),
            consumed: Cell::new(0),
            peer_closed: Cell::new(false),
            io_failed: Cell::new(false),
            close: Cell::new(false),
            open: Cell::new(false),
        }
    }

    /// Forgets every answer (a new exchange, or one given up).
    pub(crate) fn reset(&self) {
        self.want.set(0);
        self.connected.set(None);
        self.tx.set((core::ptr::null(), 0));
        self.sent.set(None);
        self.rx.set((core::ptr::null(), 0));
        self.peer_closed.set(false);
        self.io_failed.set(false);
    }
}

/// The pump state of a connection or clock, when `mpagent_pump` is polling.
fn pumping(state: Option<&'static PumpState>) -> Option<&'static PumpState> {
    state.filter(|s| s.active.get())
}

/// The clock, over `now` (or the time `mpagent_pump` was handed). It never sleeps: the step
/// hands the deadline back.
pub(crate) struct CbClock {
    pub(crate) cb: mpagent_callbacks,
    pub(crate) pump: Option<&'static PumpState>,
}

impl CbClock {
    pub(crate) fn now_secs(&self) -> UnixTime {
        if let Some(p) = pumping(self.pump) {
            return UnixTime(p.now.get());
        }
        match self.cb.now {
            // SAFETY: the callback's contract.
            Some(f) => UnixTime(u64::try_from(unsafe { f(self.cb.user) }).unwrap_or(0)),
            None => UnixTime(0),
        }
    }
}

impl Clock for CbClock {
    fn now(&self) -> UnixTime {
        self.now_secs()
    }
    async fn sleep_until(&mut self, _t: UnixTime) {}
}

/// The RNG, over `random`. A failed fill is remembered (`failed`) and the call that used it
/// reports [`crate::MPAGENT_ERR_RANDOM`] instead of its result.
pub(crate) struct CbRng {
    pub(crate) cb: mpagent_callbacks,
    pub(crate) failed: Option<&'static core::cell::Cell<bool>>,
}

impl RngCore for CbRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.try_fill_bytes(dest).is_err() {
            // Not zeros: key generation rejects a zero scalar and would ask again for ever. The
            // flag makes the call that asked refuse whatever was made from these bytes.
            dest.fill(0x5A);
            if let Some(failed) = self.failed {
                failed.set(true);
            }
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        let ok = match self.cb.random {
            // SAFETY: `dest` is live for the call; the callback's contract.
            Some(f) => (unsafe { f(self.cb.user, dest.as_mut_ptr(), dest.len()) }) >= 0,
            None => false,
        };
        if ok {
            Ok(())
        } else {
            let code = core::num::NonZeroU32::new(rand_core::Error::CUSTOM_START)
                .unwrap_or(core::num::NonZeroU32::MIN);
            Err(rand_core::Error::from(code))
        }
    }
}

// The caller's `random` is documented as a TRNG or a DRBG seeded from one.
impl CryptoRng for CbRng {}

/// The transport, over `connect` / `send` / `recv` / `close`.
pub(crate) struct CbNet {
    pub(crate) cb: mpagent_callbacks,
    /// The MP as `connect` is told it (NUL-terminated host, port, TLS).
    pub(crate) host: CText<256>,
    pub(crate) port: u16,
    pub(crate) tls: bool,
    pub(crate) pump: Option<&'static PumpState>,
}

/// One open connection; dropping it calls `close` (or tells `mpagent_pump`'s caller to close).
pub(crate) struct CbConnection<'c> {
    cb: &'c mpagent_callbacks,
    pump: Option<&'static PumpState>,
}

impl Drop for CbConnection<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pump {
            p.close.set(true);
            p.open.set(false);
            return;
        }
        if let Some(f) = self.cb.close {
            // SAFETY: the callback's contract.
            unsafe { f(self.cb.user) }
        }
    }
}

impl ErrorType for CbConnection<'_> {
    type Error = ErrorKind;
}

impl Read for CbConnection<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if let Some(p) = self.pump {
            return poll_fn(|_| {
                let (at, left) = p.rx.get();
                if left > 0 && !at.is_null() {
                    let n = left.min(buf.len());
                    // SAFETY: `rx` points at `left` bytes the caller handed to this very
                    // `mpagent_pump` call, which is polling now.
                    let from = unsafe { core::slice::from_raw_parts(at, n) };
                    if let Some(to) = buf.get_mut(..n) {
                        to.copy_from_slice(from);
                    }
                    // SAFETY: `n` ≤ `left`: still inside the caller's bytes (or one past them).
                    p.rx.set((unsafe { at.add(n) }, left - n));
                    p.consumed.set(p.consumed.get().saturating_add(n));
                    return Poll::Ready(Ok(n));
                }
                if p.peer_closed.take() {
                    return Poll::Ready(Ok(0));
                }
                if p.io_failed.take() {
                    return Poll::Ready(Err(ErrorKind::Other));
                }
                p.want.set(crate::context::MPAGENT_WANT_RECV);
                Poll::Pending
            })
            .await;
        }
        let f = self.cb.recv.ok_or(ErrorKind::Unsupported)?;
        // SAFETY: `buf` is live for the call; the callback's contract.
        let n = unsafe { f(self.cb.user, buf.as_mut_ptr(), buf.len()) };
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= buf.len())
            .ok_or(ErrorKind::Other)
    }
}

impl Write for CbConnection<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(p) = self.pump {
            return poll_fn(|_| {
                if let Some(n) = p.sent.take() {
                    p.tx.set((core::ptr::null(), 0));
                    return Poll::Ready(match n {
                        0 => Err(ErrorKind::WriteZero),
                        n => Ok(n.min(buf.len())),
                    });
                }
                if p.io_failed.take() {
                    return Poll::Ready(Err(ErrorKind::Other));
                }
                // `buf` stays where it is until this write is polled again: the step's future
                // is pinned in the context and the bytes live in it or in the exchange buffer.
                p.tx.set((buf.as_ptr(), buf.len()));
                p.want.set(crate::context::MPAGENT_WANT_SEND);
                Poll::Pending
            })
            .await;
        }
        let f = self.cb.send.ok_or(ErrorKind::Unsupported)?;
        // SAFETY: `buf` is live for the call; the callback's contract.
        let n = unsafe { f(self.cb.user, buf.as_ptr(), buf.len()) };
        match usize::try_from(n) {
            Ok(0) => Err(ErrorKind::WriteZero),
            Ok(n) if n <= buf.len() => Ok(n),
            _ => Err(ErrorKind::Other),
        }
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Connector for CbNet {
    type Error = ErrorKind;
    type Connection<'c> = CbConnection<'c>;
    async fn connect(&mut self) -> Result<CbConnection<'_>, ErrorKind> {
        if let Some(p) = pumping(self.pump) {
            let ok = poll_fn(|_| match p.connected.take() {
                Some(ok) => Poll::Ready(ok),
                None => {
                    p.want.set(crate::context::MPAGENT_WANT_CONNECT);
                    Poll::Pending
                }
            })
            .await;
            if !ok {
                return Err(ErrorKind::ConnectionRefused);
            }
            p.open.set(true);
            return Ok(CbConnection {
                cb: &self.cb,
                pump: Some(p),
            });
        }
        let f = self.cb.connect.ok_or(ErrorKind::Unsupported)?;
        // SAFETY: `host` is NUL-terminated and lives for the call; the callback's contract.
        let rc = unsafe {
            f(
                self.cb.user,
                self.host.as_ptr(),
                self.port,
                c_int::from(self.tls),
                self.cb.io_timeout_ms,
            )
        };
        if rc < 0 {
            return Err(ErrorKind::ConnectionRefused);
        }
        Ok(CbConnection {
            cb: &self.cb,
            pump: None,
        })
    }
}

/// The inventory, asked of `inventory_item` one instance at a time (constant RAM).
struct CbInventory<'a> {
    cb: &'a mpagent_callbacks,
}

impl InstanceSource for CbInventory<'_> {
    fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        let Some(f) = self.cb.inventory_item else {
            return Ok(());
        };
        for index in 0..MPAGENT_INVENTORY_MAX_ITEMS {
            let mut item = mpagent_instance {
                class_name: core::ptr::null(),
                namespace_name: core::ptr::null(),
                properties: core::ptr::null(),
                property_count: 0,
            };
            // SAFETY: `item` is live for the call; the callback's contract.
            if unsafe { f(self.cb.user, index, &mut item) } <= 0 {
                break;
            }
            // SAFETY: the pointers the callback filled in are valid until its next call.
            let Some(class) = (unsafe { c_str(item.class_name) }) else {
                continue;
            };
            let namespace = match unsafe { c_str(item.namespace_name) } {
                Some(ns) => Namespace::Custom(ns),
                None => Namespace::Cimv2,
            };
            let props: &[mpagent_property] = if item.properties.is_null() {
                &[]
            } else {
                // SAFETY: `property_count` properties at `properties`, valid as above.
                unsafe { core::slice::from_raw_parts(item.properties, item.property_count) }
            };
            w.instance(InstanceContent::New, namespace, class, |p| {
                for prop in props {
                    // SAFETY: as above; an item that is not UTF-8 is left out.
                    if let (Some(name), Some(value)) =
                        unsafe { (c_str(prop.name), c_str(prop.value)) }
                    {
                        p.prop(name, value)?;
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// Where a policy body streams: `policy_body`, or nowhere.
struct CbPolicyBody {
    cb: mpagent_callbacks,
    len: usize,
}

impl Sink for CbPolicyBody {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.len = self.len.saturating_add(bytes.len());
        match self.cb.policy_body {
            // SAFETY: `bytes` is live for the call; the callback's contract.
            Some(f) if unsafe { f(self.cb.user, bytes.as_ptr(), bytes.len()) } < 0 => Err(Overflow),
            _ => Ok(()),
        }
    }
}

/// The device's side of the driver, over the callbacks.
pub(crate) struct CbHost {
    pub(crate) cb: mpagent_callbacks,
    /// Names for the heartbeat (set with the configuration).
    pub(crate) fqdn: &'static str,
    pub(crate) ip: Option<&'static str>,
    pub(crate) mac: Option<&'static str>,
    /// The identity the registration state is stored with.
    pub(crate) secret: [u8; 32],
    pub(crate) cert_der: &'static [u8],
    body: CbPolicyBody,
}

impl CbHost {
    pub(crate) fn new(cb: mpagent_callbacks) -> Self {
        Self {
            cb,
            fqdn: "",
            ip: None,
            mac: None,
            secret: [0; 32],
            cert_der: &[],
            body: CbPolicyBody { cb, len: 0 },
        }
    }

    pub(crate) fn tell(&self, event: c_int, text: core::fmt::Arguments<'_>) {
        if let Some(f) = self.cb.event {
            let mut t = CText::<MPAGENT_EVENT_TEXT_MAX>::new();
            let _ = t.write_fmt(text);
            let _ = t.write_str("");
            // SAFETY: `t` is NUL-terminated and lives for the call; the callback's contract.
            unsafe { f(self.cb.user, event, t.as_ptr()) }
        }
    }
}

impl Host<CbFlash> for CbHost {
    fn report(
        &mut self,
        kind: ReportKind,
        identity: ReportIdentity<'_>,
        now: UnixTime,
        queue: &mut dyn FnMut(&dyn Emit),
    ) {
        let date = now.to_datetime();
        match kind {
            ReportKind::Heartbeat => {
                let ips: &[&str] = match &self.ip {
                    Some(ip) => core::slice::from_ref(ip),
                    None => &[],
                };
                let macs: &[&str] = match &self.mac {
                    Some(mac) => core::slice::from_ref(mac),
                    None => &[],
                };
                let discovery = BasicDiscovery {
                    fqdn: self.fqdn,
                    client_version: mpagent_core::profile::REPORT_CLIENT_VERSION,
                    platform_id: mpagent_core::profile::DISCOVERY_PLATFORM_ID,
                    domain: None,
                    ip_addresses: ips,
                    mac_addresses: macs,
                };
                queue(&Report::discovery(identity, date, &discovery));
            }
            ReportKind::Inventory => {
                if self.cb.inventory_item.is_none() {
                    return;
                }
                let inventory = CbInventory { cb: &self.cb };
                queue(&Report::hardware_inventory(
                    identity,
                    ReportType::Full,
                    ReportVersion::default(),
                    date,
                    &inventory,
                ));
            }
            ReportKind::OnlineStatus => {}
        }
    }

    fn persist(
        &mut self,
        store: &mut Store<CbFlash>,
        state: RegistrationState,
    ) -> Result<(), Persist> {
        let record = StoredIdentity {
            key: &self.secret,
            cert_der: self.cert_der,
            registration: state,
        };
        store.save_identity(&record).map_err(|e| {
            self.tell(
                MPAGENT_EVENT_REGISTRATION_FAILED,
                format_args!("saving the registration state failed: {e}"),
            );
            Persist
        })
    }

    fn file_refused(
        &mut self,
        meta: &MessageMeta,
        _body: &dyn Emit,
        error: SendError,
    ) -> Result<(), Persist> {
        self.tell(
            MPAGENT_EVENT_REFUSED,
            format_args!(
                "the MP refused {} {} for good: {}",
                meta.endpoint.name(),
                meta.message_id,
                error
            ),
        );
        Ok(())
    }

    fn policy_applied(&mut self, id: &str, version: &str) -> bool {
        let Some(f) = self.cb.policy_applied else {
            return false;
        };
        let (id, version) = (CText::<128>::of(id), CText::<64>::of(version));
        // SAFETY: both texts are NUL-terminated and live for the call.
        unsafe { f(self.cb.user, id.as_ptr(), version.as_ptr()) > 0 }
    }

    fn policy_body(&mut self) -> &mut dyn Sink {
        self.body.len = 0;
        &mut self.body
    }

    fn policy_done(&mut self, id: &str, version: &str, len: usize, keep: bool) -> bool {
        let Some(f) = self.cb.policy_done else {
            return false;
        };
        let (id, version) = (CText::<128>::of(id), CText::<64>::of(version));
        // SAFETY: both texts are NUL-terminated and live for the call.
        unsafe {
            f(
                self.cb.user,
                id.as_ptr(),
                version.as_ptr(),
                len,
                c_int::from(keep),
            ) > 0
        }
    }

    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::RegistrationSending {
                request_type,
                message_id,
            } => self.tell(
                MPAGENT_EVENT_REGISTRATION_SENDING,
                format_args!("sending a {request_type} request, message {message_id}"),
            ),
            Event::RegistrationFailed(failure) => self.tell(
                MPAGENT_EVENT_REGISTRATION_FAILED,
                format_args!("the registration attempt failed: {failure}"),
            ),
            Event::Registration(moved) => self.tell(
                MPAGENT_EVENT_REGISTRATION,
                format_args!("registration: {moved}"),
            ),
            Event::Queued {
                kind,
                message_id,
                queued,
                ..
            } => self.tell(
                MPAGENT_EVENT_QUEUED,
                format_args!("queued {} {message_id} ({queued} queued)", kind.name()),
            ),
            Event::Delivered {
                endpoint,
                message_id,
            } => self.tell(
                MPAGENT_EVENT_DELIVERED,
                format_args!("delivered {} {message_id}", endpoint.name()),
            ),
            Event::DeliveryFailed { error, .. } => self.tell(
                MPAGENT_EVENT_DELIVERY_FAILED,
                format_args!("delivery failed, the message stays queued: {error}"),
            ),
            Event::Refused { .. } => {}
            Event::PolicyAssignments(n) => self.tell(
                MPAGENT_EVENT_POLICY,
                format_args!("policy request answered with {n} assignments"),
            ),
            Event::PolicyEmpty => self.tell(
                MPAGENT_EVENT_POLICY,
                format_args!("policy request answered with no assignments"),
            ),
            Event::PolicyFailed(e) => self.tell(
                MPAGENT_EVENT_POLICY,
                format_args!("the policy request failed: {e}"),
            ),
            Event::PolicyApplied { id, version, bytes } => self.tell(
                MPAGENT_EVENT_POLICY,
                format_args!("policy {id}.{version} applied ({bytes} bytes)"),
            ),
            Event::PolicyHashMismatch { id, .. } => self.tell(
                MPAGENT_EVENT_POLICY,
                format_args!("policy {id} did not match its hash and was not applied"),
            ),
            Event::PolicyFetchFailed { id, error } => self.tell(
                MPAGENT_EVENT_POLICY,
                format_args!("policy {id} could not be fetched: {error}"),
            ),
            _ => {}
        }
    }
}

impl<const N: usize> core::fmt::Debug for CText<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::str::from_utf8(self.as_bytes()).unwrap_or(""))
    }
}
