//! The C API's contract from the caller's side, with a RAM flash and no network: argument and
//! order checks, configuration refusals naming the setting, identity made once and loaded after.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;

use mpagent_ffi::*;

const FLASH: usize = 16 * MPAGENT_FLASH_ERASE_SIZE as usize;

struct Device {
    flash: RefCell<Vec<u8>>,
    seed: RefCell<u64>,
}

fn device() -> Box<Device> {
    Box::new(Device {
        flash: RefCell::new(vec![0xFF; FLASH]),
        seed: RefCell::new(0x9E37_79B9_7F4A_7C15),
    })
}

unsafe fn dev<'a>(user: *mut c_void) -> &'a Device {
    unsafe { &*user.cast::<Device>() }
}

unsafe extern "C" fn flash_read(user: *mut c_void, at: u32, buf: *mut u8, len: usize) -> c_int {
    let f = unsafe { dev(user) }.flash.borrow();
    let src = &f[at as usize..at as usize + len];
    unsafe { ptr::copy_nonoverlapping(src.as_ptr(), buf, len) };
    0
}

unsafe extern "C" fn flash_write(user: *mut c_void, at: u32, buf: *const u8, len: usize) -> c_int {
    let mut f = unsafe { dev(user) }.flash.borrow_mut();
    let src = unsafe { std::slice::from_raw_parts(buf, len) };
    for (d, s) in f[at as usize..at as usize + len].iter_mut().zip(src) {
        *d &= *s;
    }
    0
}

unsafe extern "C" fn flash_erase(user: *mut c_void, from: u32, to: u32) -> c_int {
    unsafe { dev(user) }.flash.borrow_mut()[from as usize..to as usize].fill(0xFF);
    0
}

unsafe extern "C" fn now(_: *mut c_void) -> i64 {
    1_796_000_000
}

unsafe extern "C" fn random(user: *mut c_void, buf: *mut u8, len: usize) -> c_int {
    let mut s = unsafe { dev(user) }.seed.borrow_mut();
    for i in 0..len {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        unsafe { *buf.add(i) = *s as u8 };
    }
    0
}

unsafe extern "C" fn failing_random(_: *mut c_void, _: *mut u8, _: usize) -> c_int {
    -1
}

fn callbacks(d: &Device) -> mpagent_callbacks {
    mpagent_callbacks {
        user: ptr::from_ref(d).cast_mut().cast(),
        flash_size: FLASH as u32,
        flash_read: Some(flash_read),
        flash_write: Some(flash_write),
        flash_erase: Some(flash_erase),
        now: Some(now),
        random: Some(random),
        connect: None,
        send: None,
        recv: None,
        close: None,
        io_timeout_ms: 1000,
        inventory_item: None,
        policy_applied: None,
        policy_body: None,
        policy_done: None,
        event: None,
    }
}

fn config(site_code: &CStr, mode: c_int) -> mpagent_config {
    mpagent_config {
        site_code: site_code.as_ptr(),
        site_mode: mode,
        mp_url: c"http://mp.example.com:8080".as_ptr(),
        site_generation: MPAGENT_SITE_CURRENT,
        netbios_name: c"DEVICE-1".as_ptr(),
        fqdn: c"device-1.example.com".as_ptr(),
        ip_address: ptr::null(),
        mac_address: ptr::null(),
    }
}

fn context() -> Box<mpagent_context> {
    // SAFETY: the context is plain bytes until mpagent_init.
    unsafe { Box::new(std::mem::zeroed()) }
}

fn last_error(ctx: &mut mpagent_context) -> String {
    let mut buf = [0 as c_char; 256];
    unsafe { mpagent_last_error(ctx, buf.as_mut_ptr(), buf.len()) };
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn the_context_size_is_the_header_constant_and_every_code_has_a_sentence() {
    assert_eq!(mpagent_context_size(), MPAGENT_CONTEXT_SIZE);
    assert_eq!(std::mem::size_of::<mpagent_context>(), MPAGENT_CONTEXT_SIZE);
    assert_eq!(
        std::mem::align_of::<mpagent_context>(),
        MPAGENT_CONTEXT_ALIGN
    );
    let mut seen = std::collections::HashSet::new();
    for code in 0..=11 {
        let text = unsafe { CStr::from_ptr(mpagent_strerror(-code)) }
            .to_str()
            .unwrap();
        assert!(
            !text.is_empty() && !text.starts_with("unknown"),
            "{code}: {text}"
        );
        assert!(seen.insert(text), "{code}: {text} twice");
    }
    let text = unsafe { CStr::from_ptr(mpagent_strerror(-99)) }
        .to_str()
        .unwrap();
    assert_eq!(text, "unknown mpagent error code");
}

#[test]
fn init_refuses_null_small_or_misaligned_memory() {
    let d = device();
    let cb = callbacks(&d);
    let cfg = config(c"PS1", MPAGENT_SITE_MIXED);
    let mut ctx = context();
    unsafe {
        assert_eq!(
            mpagent_init(ptr::null_mut(), MPAGENT_CONTEXT_SIZE, &cfg, &cb),
            MPAGENT_ERR_ARGUMENT
        );
        assert_eq!(
            mpagent_init(&mut *ctx, MPAGENT_CONTEXT_SIZE, ptr::null(), &cb),
            MPAGENT_ERR_ARGUMENT
        );
        assert_eq!(
            mpagent_init(&mut *ctx, MPAGENT_CONTEXT_SIZE - 1, &cfg, &cb),
            MPAGENT_ERR_CONTEXT
        );
        let mut raw = vec![0u64; MPAGENT_CONTEXT_SIZE / 8 + 1];
        let misaligned = raw
            .as_mut_ptr()
            .cast::<u8>()
            .add(4)
            .cast::<mpagent_context>();
        assert_eq!(
            mpagent_init(misaligned, MPAGENT_CONTEXT_SIZE, &cfg, &cb),
            MPAGENT_ERR_CONTEXT
        );
        // A context never set up is refused by every other call.
        assert_eq!(
            mpagent_identity(&mut *ctx, ptr::null_mut()),
            MPAGENT_ERR_ARGUMENT
        );
        assert_eq!(mpagent_registration_state(&mut *ctx), MPAGENT_ERR_ARGUMENT);
    }
}

#[test]
fn configuration_refusals_name_the_setting() {
    let d = device();
    let cb = callbacks(&d);
    let mut ctx = context();
    let cases: [(mpagent_config, &str); 4] = [
        (config(c"P-1", MPAGENT_SITE_MIXED), "site code"),
        (config(c"PS1", 7), "config.site_mode is 7"),
        // An http:// MP in native mode.
        (config(c"PS1", MPAGENT_SITE_NATIVE), "the configuration:"),
        (
            mpagent_config {
                netbios_name: ptr::null(),
                ..config(c"PS1", MPAGENT_SITE_MIXED)
            },
            "config.netbios_name is NULL",
        ),
    ];
    for (cfg, needle) in cases {
        let rc = unsafe { mpagent_init(&mut *ctx, MPAGENT_CONTEXT_SIZE, &cfg, &cb) };
        assert_eq!(rc, MPAGENT_ERR_CONFIG, "{needle}");
        let why = last_error(&mut ctx);
        assert!(
            why.to_lowercase().contains(&needle.to_lowercase()),
            "{needle}: {why}"
        );
    }
    let missing = mpagent_callbacks {
        random: None,
        ..callbacks(&d)
    };
    let cfg = config(c"PS1", MPAGENT_SITE_MIXED);
    let rc = unsafe { mpagent_init(&mut *ctx, MPAGENT_CONTEXT_SIZE, &cfg, &missing) };
    assert_eq!(rc, MPAGENT_ERR_ARGUMENT);
    assert!(
        last_error(&mut ctx).contains("random"),
        "{}",
        last_error(&mut ctx)
    );
}

#[test]
fn a_flash_region_below_four_erase_blocks_is_refused_naming_its_size() {
    let d = device();
    let cb = mpagent_callbacks {
        flash_size: 3 * MPAGENT_FLASH_ERASE_SIZE,
        ..callbacks(&d)
    };
    let cfg = config(c"PS1", MPAGENT_SITE_MIXED);
    let mut ctx = context();
    let rc = unsafe { mpagent_init(&mut *ctx, MPAGENT_CONTEXT_SIZE, &cfg, &cb) };
    assert_eq!(rc, MPAGENT_ERR_STORE);
    assert!(
        last_error(&mut ctx).contains("12288-byte flash region"),
        "{}",
        last_error(&mut ctx)
    );
}

#[test]
fn the_identity_is_made_once_saved_and_loaded_by_the_next_context() {
    let d = device();
    let cb = callbacks(&d);
    let cfg = config(c"PS1", MPAGENT_SITE_MIXED);
    let mut ctx = context();
    unsafe {
        assert_eq!(
            mpagent_init(&mut *ctx, MPAGENT_CONTEXT_SIZE, &cfg, &cb),
            MPAGENT_OK
        );
        let mut r = mpagent_step_result::default();
        assert_eq!(
            mpagent_step(&mut *ctx, &mut r),
            MPAGENT_ERR_STATE,
            "step before identity"
        );
        let mut created = -1;
        assert_eq!(mpagent_identity(&mut *ctx, &mut created), MPAGENT_OK);
        assert_eq!(created, 1);
        assert_eq!(
            mpagent_identity(&mut *ctx, &mut created),
            MPAGENT_ERR_STATE,
            "twice"
        );
        assert_eq!(mpagent_registration_state(&mut *ctx), MPAGENT_UNREGISTERED);
        let mut smsid = [0 as c_char; MPAGENT_SMSID_LEN];
        assert_eq!(
            mpagent_smsid(&mut *ctx, smsid.as_mut_ptr(), smsid.len()),
            MPAGENT_ERR_NO_SMSID
        );
        assert_eq!(
            mpagent_smsid(&mut *ctx, smsid.as_mut_ptr(), 8),
            MPAGENT_ERR_BUFFER
        );
        // Without transport callbacks the blocking variant says what it lacks.
        assert_eq!(mpagent_step(&mut *ctx, &mut r), MPAGENT_ERR_ARGUMENT);
        assert!(last_error(&mut ctx).contains("connect, send and recv"));
    }
    let saved = d.flash.borrow().clone();
    assert!(
        saved.iter().any(|&b| b != 0xFF),
        "the identity is on the flash"
    );

    // A restart: a new context over the same flash loads what the first one saved.
    let mut ctx2 = context();
    unsafe {
        assert_eq!(
            mpagent_init(&mut *ctx2, MPAGENT_CONTEXT_SIZE, &cfg, &cb),
            MPAGENT_OK
        );
        let mut created = -1;
        assert_eq!(mpagent_identity(&mut *ctx2, &mut created), MPAGENT_OK);
        assert_eq!(created, 0);
    }
    assert_eq!(*d.flash.borrow(), saved, "loading writes nothing");
}

#[test]
fn a_failing_rng_makes_no_identity() {
    let d = device();
    let cb = mpagent_callbacks {
        random: Some(failing_random),
        ..callbacks(&d)
    };
    let cfg = config(c"PS1", MPAGENT_SITE_MIXED);
    let mut ctx = context();
    unsafe {
        assert_eq!(
            mpagent_init(&mut *ctx, MPAGENT_CONTEXT_SIZE, &cfg, &cb),
            MPAGENT_OK
        );
        assert_eq!(
            mpagent_identity(&mut *ctx, ptr::null_mut()),
            MPAGENT_ERR_RANDOM
        );
    }
    assert!(
        d.flash.borrow().iter().all(|&b| b == 0xFF),
        "nothing was saved"
    );
}

#[test]
fn the_pump_asks_to_connect_and_a_timeout_backs_off() {
    let d = device();
    let cb = callbacks(&d);
    let cfg = config(c"PS1", MPAGENT_SITE_MIXED);
    let mut ctx = context();
    let t0 = 1_796_000_000;
    let input = |event, now| mpagent_pump_in {
        now,
        event,
        sent: 0,
        rx: ptr::null(),
        rx_len: 0,
    };
    unsafe {
        assert_eq!(
            mpagent_init(&mut *ctx, MPAGENT_CONTEXT_SIZE, &cfg, &cb),
            MPAGENT_OK
        );
        assert_eq!(mpagent_identity(&mut *ctx, ptr::null_mut()), MPAGENT_OK);
        let mut out: mpagent_pump_out = std::mem::zeroed();
        // An answer with nothing asked is out of order.
        assert_eq!(
            mpagent_pump(&mut *ctx, &input(MPAGENT_PUMP_SENT, t0), &mut out),
            MPAGENT_ERR_STATE
        );
        assert_eq!(
            mpagent_pump(&mut *ctx, &input(MPAGENT_PUMP_NONE, t0), &mut out),
            MPAGENT_OK
        );
        assert_eq!(out.want, MPAGENT_WANT_CONNECT);
        assert_eq!(CStr::from_ptr(out.host).to_str().unwrap(), "mp.example.com");
        assert_eq!((out.port, out.tls), (8080, 0));
        assert_eq!(mpagent_registration_state(&mut *ctx), MPAGENT_ERR_BUSY);
        assert_eq!(
            mpagent_pump(&mut *ctx, &input(MPAGENT_PUMP_CONNECTED, t0), &mut out),
            MPAGENT_OK
        );
        assert_eq!(out.want, MPAGENT_WANT_SEND);
        assert!(out.tx_len > 0);
        let head = std::slice::from_raw_parts(out.tx, out.tx_len);
        assert!(
            head.starts_with(b"CCM_POST /ccm_system/request HTTP/1.1\r\n"),
            "{:?}",
            String::from_utf8_lossy(head)
        );
        // The MP stalls: the caller's deadline passes.
        assert_eq!(
            mpagent_pump(&mut *ctx, &input(MPAGENT_PUMP_TIMEOUT, t0 + 30), &mut out),
            MPAGENT_OK
        );
        assert_eq!(out.close, 1);
        assert_eq!(mpagent_registration_state(&mut *ctx), MPAGENT_UNREGISTERED);
        // Backed off: nothing to do right after.
        assert_eq!(
            mpagent_pump(&mut *ctx, &input(MPAGENT_PUMP_NONE, t0 + 30), &mut out),
            MPAGENT_OK
        );
        assert_eq!(out.want, MPAGENT_WANT_SLEEP);
        assert!(out.until > t0 + 30, "{}", out.until);
    }
}

#[test]
fn a_provisioned_identity_is_checked_stored_and_loaded() {
    use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
    let secret = [7u8; 32];
    let other = [9u8; 32];
    let signer = mpagent_core::P256Signer::from_secret_bytes(&secret).unwrap();
    let mut rng = rand_core::OsRng;
    let params =
        CertParams::self_signed_now("DEVICE-1", mpagent_core::UnixTime(1_796_000_000), &mut rng);
    let mut cert = vec![0u8; MAX_CERT_LEN];
    let len = build_self_signed_p256(&params, &signer, &mut cert).unwrap();
    cert.truncate(len);

    let d = device();
    let cb = callbacks(&d);
    let cfg = config(c"PS1", MPAGENT_SITE_MIXED);
    let mut ctx = context();
    unsafe {
        assert_eq!(
            mpagent_init(&mut *ctx, MPAGENT_CONTEXT_SIZE, &cfg, &cb),
            MPAGENT_OK
        );
        // The certificate names another key than the secret: refused, nothing stored.
        let rc = mpagent_identity_provision(&mut *ctx, other.as_ptr(), cert.as_ptr(), cert.len());
        assert_eq!(rc, MPAGENT_ERR_IDENTITY);
        assert!(
            last_error(&mut ctx).contains("another key"),
            "{}",
            last_error(&mut ctx)
        );
        let rc = mpagent_identity_provision(&mut *ctx, secret.as_ptr(), cert.as_ptr(), 10);
        assert_eq!(rc, MPAGENT_ERR_IDENTITY, "not DER");
        assert!(d.flash.borrow().iter().all(|&b| b == 0xFF));

        let rc = mpagent_identity_provision(&mut *ctx, secret.as_ptr(), cert.as_ptr(), cert.len());
        assert_eq!(rc, MPAGENT_OK, "{}", last_error(&mut ctx));
        let mut created = -1;
        assert_eq!(mpagent_identity(&mut *ctx, &mut created), MPAGENT_OK);
        assert_eq!(
            created, 0,
            "the provisioned identity is loaded, not a new one made"
        );
        let rc = mpagent_identity_provision(&mut *ctx, secret.as_ptr(), cert.as_ptr(), cert.len());
        assert_eq!(rc, MPAGENT_ERR_STATE, "after mpagent_identity");
    }
}
