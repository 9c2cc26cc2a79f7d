//! Link-time no-panic proof: the core's parsers of untrusted bytes — HTTP response head,
//! chunked decoding in place and streamed, the registration and policy reply pipelines (multipart,
//! `<Msg>` header, UTF-16, XML reader), and the persistent store's record decoding — linked with
//! a panic handler that calls a function which exists nowhere. With LTO, code that cannot reach a
//! panic drops every reference to the handler; if any panic stays reachable the link fails with
//! `undefined symbol: mpagent_parser_reaches_a_panic`. Inputs are read with volatile loads so the
//! compiler cannot specialise the parsers to them. Feature `no-panic-sign` adds the signing path
//! (P-256 key load, self-signed certificate, signed registration request, streamed and hashed);
//! `no-panic-http` adds the HTTP head parser, i.e. httparse, which still reaches two panics that
//! its logic rules out but the optimiser cannot (swar.rs `offsetnz`'s `unreachable!`, lib.rs's
//! trailing-whitespace trim): that image is linked with the symbol defined and checked by
//! `panic-sites.py --allow httparse`, which fails on any panic site outside httparse.
//!
//! Built by `tests/run-all.sh` with `--features no-panic --bin no-panic`; run under QEMU it checks
//! what each parser returned and exits non-zero on an unexpected result.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};
use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::{Guid, Smsid};
#[cfg(not(feature = "no-panic-http"))]
use mpagent_core::http::response::parse_http_date;
use mpagent_core::http::stream::BodyDecoder;
use mpagent_core::http::BodyFraming;
#[cfg(not(feature = "no-panic-http"))]
use mpagent_core::http::{decode_chunked_in_place, ChunkedProgress};
#[cfg(feature = "no-panic-http")]
use mpagent_core::http::{poll_response, ResponseProgress};
use mpagent_core::sink::{CountingSink, Emit, Overflow, Sink};
use mpagent_core::store::testing::RamFlash;
use mpagent_core::store::{Endpoint, Layout, MessageMeta, Store, StoredIdentity};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::header::ReplyMode;
use mpagent_core::wire::policy::parse_policy_reply_in;
use mpagent_core::wire::reply::{parse_registration_reply, RegistrationStatus};
use mpagent_core::wire::xml_reader::{Event, Reader};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    extern "Rust" {
        // Defined nowhere: referencing it from reachable code fails the link.
        fn mpagent_parser_reaches_a_panic() -> !;
    }
    // SAFETY: never runs: an image in which this is reachable does not link.
    unsafe { mpagent_parser_reaches_a_panic() }
}

const REGISTRATION: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/registration.http"));
const POLICY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy.http"));
#[cfg(not(feature = "no-panic-http"))]
const BOUNDARY: &str = "aAbBcCdDv1234567890VxXyYzZ";
const XML: &[u8] =
    b"<?xml version=\"1.0\"?><a x=\"1&amp;2\"><b>t&#x41;</b><![CDATA[<c>]]><!-- c --></a>";

/// Copies `src` into `dst` with volatile loads: the compiler knows nothing of the bytes.
fn opaque_copy(dst: &mut [u8], src: &[u8]) -> usize {
    let mut n = 0;
    for (d, s) in dst.iter_mut().zip(src) {
        // SAFETY: `s` is a valid reference.
        *d = unsafe { core::ptr::read_volatile(s) };
        n += 1;
    }
    n
}

fn say(line: &str) {
    if let Ok(mut out) = hio::hstdout() {
        let _ = out.write_all(line.as_bytes());
    }
}

/// The response read by `poll_response` (head through httparse, chunked body decoded in place),
/// then `parse` on the body and its boundary.
#[cfg(feature = "no-panic-http")]
fn http_body(buf: &mut [u8], wire: &[u8], parse: impl FnOnce(&[u8], &str) -> bool) -> bool {
    let filled = opaque_copy(buf, wire);
    match poll_response(buf, filled, true) {
        Ok(ResponseProgress::Complete { head, body }) => buf
            .get(body)
            .is_some_and(|body| parse(body, &head.boundary)),
        _ => false,
    }
}

/// Without httparse (whose two unprovable panics `panic-sites.py` lists): the head is skipped
/// by hand, its `Date` parsed, and the chunked body decoded in place.
#[cfg(not(feature = "no-panic-http"))]
fn http_body(buf: &mut [u8], wire: &[u8], parse: impl FnOnce(&[u8], &str) -> bool) -> bool {
    let filled = opaque_copy(buf, wire);
    let Some(data) = buf.get_mut(..filled) else {
        return false;
    };
    let Some(head_len) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let date = data
        .windows(6)
        .position(|w| w == b"Date: ")
        .and_then(|at| data.get(at + 6..at + 35))
        .and_then(parse_http_date);
    let Some(body) = data.get_mut(head_len + 4..) else {
        return false;
    };
    match decode_chunked_in_place(body) {
        Ok(ChunkedProgress::Complete { body_len }) => {
            date.is_some() && body.get(..body_len).is_some_and(|b| parse(b, BOUNDARY))
        }
        _ => false,
    }
}

fn registration_reply() -> bool {
    let mut buf = [0u8; 2048];
    http_body(&mut buf, REGISTRATION, |body, boundary| {
        matches!(
            parse_registration_reply(body, boundary),
            Ok(r) if r.status == RegistrationStatus::Registered && r.smsid.is_some()
        )
    })
}

fn policy_reply() -> bool {
    let mut buf = [0u8; 4096];
    http_body(&mut buf, POLICY, policy_body)
}

fn policy_body(body: &[u8], boundary: &str) -> bool {
    let mut scratch = [0u8; 4096];
    match parse_policy_reply_in(body, boundary, &mut scratch) {
        Ok(reply) => {
            let mut ok = true;
            let n = reply.for_each(&mut |a| {
                let mut loc = [0u8; 128];
                ok &= a.location.unescape_into(&mut loc).is_ok();
            });
            ok && n == Ok(2)
        }
        Err(_) => false,
    }
}

/// The chunked body decoded as a stream, in 7-byte reads.
fn streamed_body() -> bool {
    let mut buf = [0u8; 2048];
    let n = opaque_copy(&mut buf, REGISTRATION);
    let wire = buf.get(..n).unwrap_or(&[]);
    let Some(start) = wire.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
    let mut out = CountingSink::default();
    for piece in wire.get(start + 4..).unwrap_or(&[]).chunks(7) {
        if decoder.feed(piece, &mut out).is_err() {
            return false;
        }
    }
    decoder.finish().is_ok() && out.count > 0
}

fn xml_events() -> bool {
    let mut buf = [0u8; 128];
    let n = opaque_copy(&mut buf, XML);
    let Ok(xml) = core::str::from_utf8(buf.get(..n).unwrap_or(&[])) else {
        return false;
    };
    let mut reader = Reader::new(xml);
    let mut texts = 0;
    loop {
        match reader.next_event() {
            Ok(Some(Event::Text(t) | Event::CData(t))) => {
                let mut out = [0u8; 16];
                texts += usize::from(t.unescape_into(&mut out).is_ok());
            }
            Ok(Some(Event::StartTag { attrs, .. })) => {
                let mut out = [0u8; 16];
                texts += usize::from(
                    attrs
                        .get("x")
                        .is_some_and(|v| v.unescape_into(&mut out) == Ok("1&2")),
                );
            }
            Ok(Some(_)) => {}
            Ok(None) => return texts == 3,
            Err(_) => return false,
        }
    }
}

const LAYOUT: Layout = Layout {
    identity_start: 0,
    identity_slot_len: 512,
    queue_start: 1024,
    queue_len: 7168,
};
type Flash = RamFlash<8192, 1, 4, 256>;

struct Bytes(usize);
impl Emit for Bytes {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        for i in 0..self.0 {
            out.write(&[i as u8])?;
        }
        Ok(())
    }
}

/// A store written, its image copied opaquely, then opened and read back: the record decoders
/// (page headers, identity slots, queue records) run on bytes the compiler does not know.
fn store_records(flash: &mut Flash, copy: &mut Flash) -> bool {
    let smsid = Smsid(Guid([0x5A; 16]));
    let meta = MessageMeta {
        message_id: Guid([1; 16]),
        endpoint: Endpoint::Hinv,
        reply_mode: ReplyMode::Async,
        sent_time: UnixTime(1_795_428_000),
        source_id: Some(smsid),
    };
    let Ok(mut s) = Store::format(&mut *flash, LAYOUT) else {
        return false;
    };
    let id = StoredIdentity {
        key: &[7; 32],
        cert_der: &[0x30; 200],
        registration: RegistrationState::Registered(smsid),
    };
    let mut scratch = [0u8; 40];
    if s.save_identity(&id).is_err() || s.enqueue(&meta, &Bytes(300), &mut scratch).is_err() {
        return false;
    }
    // `s` borrowed `flash` and is done with it here.
    let _ = s.into_flash();
    opaque_copy(copy.image_mut(), flash.image());
    let Ok(mut s) = Store::open(copy, LAYOUT) else {
        return false;
    };
    let mut buf = [0u8; 512];
    let identity_ok =
        matches!(s.load_identity(&mut buf), Ok(Some(loaded)) if loaded.cert_der.len() == 200);
    let Ok(Some(m)) = s.peek() else {
        return false;
    };
    let mut count = CountingSink::default();
    identity_ok && s.body(&m).emit(&mut count).is_ok() && count.count == 300 && s.pop(&m).is_ok()
}

#[cfg(feature = "no-panic-sign")]
fn signing() -> bool {
    use mpagent_core::agent::outbound::{Post, PostParams};
    use mpagent_core::agent::registration::{build_request, SigningIdentity};
    use mpagent_core::config::{AgentConfig, SiteMode};
    use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
    use mpagent_core::sign::P256Signer;
    use mpagent_core::sink::{emitted_len, Sha256Sink, WindowSink};
    use mpagent_core::wire::header::endpoint;
    use mpagent_core::wire::registration::{AgentType, RequestType};

    const NOW: UnixTime = UnixTime(1_795_428_000);
    let mut secret = [0u8; 32];
    opaque_copy(&mut secret, &[0x5A; 32]);
    let Ok(signer) = P256Signer::from_secret_bytes(&secret) else {
        return false;
    };
    let params = CertParams {
        common_name: "PROBE-1",
        not_before: NOW.minus(86_400),
        not_after: NOW.plus(10 * 365 * 86_400),
        serial: [0x11; 16],
    };
    let mut cert = [0u8; MAX_CERT_LEN];
    let Ok(len) = build_self_signed_p256(&params, &signer, &mut cert) else {
        return false;
    };
    let Ok(config) = AgentConfig::new(
        "PS1",
        SiteMode::Mixed,
        "http://10.0.2.2:8080",
        "PROBE-1",
        "probe-1.local",
    ) else {
        return false;
    };
    let identity = SigningIdentity {
        signer: &signer,
        cert_der: cert.get(..len).unwrap_or(&[]),
    };
    let Ok(request) = build_request(
        &config,
        &identity,
        AgentType::Client,
        RequestType::Registration,
        None,
        NOW,
    ) else {
        return false;
    };
    let params = PostParams {
        endpoint: endpoint::CLIENT_REGISTRATION,
        reply_mode: ReplyMode::Sync,
        source_id: None,
        message_id: Guid([0x22; 16]),
        now: NOW,
        hooks: None,
    };
    let Ok(post) = Post::new(&config, params, &request) else {
        return false;
    };
    let Ok(total) = emitted_len(&post) else {
        return false;
    };
    let mut hash = Sha256Sink::default();
    let mut window = [0u8; 512];
    let mut off = 0;
    while off < total {
        let mut w = WindowSink::new(&mut window, off);
        if post.emit(&mut w).is_err() {
            return false;
        }
        let n = w.filled();
        if n == 0 || hash.write(window.get(..n).unwrap_or(&[])).is_err() {
            return false;
        }
        off += n;
    }
    hash.finish() != [0; 32]
}

#[entry]
fn main() -> ! {
    static mut FLASH: Flash = Flash::new();
    static mut COPY: Flash = Flash::new();
    type Check = (&'static str, fn() -> bool);
    let checks: [Check; 4] = [
        (
            "registration reply (HTTP body + chunked + multipart + utf-16 + xml)",
            registration_reply,
        ),
        (
            "policy reply (HTTP body + chunked + multipart + utf-16 + xml)",
            policy_reply,
        ),
        ("chunked body streamed", streamed_body),
        ("xml reader", xml_events),
    ];
    let mut ok = true;
    for (name, check) in checks {
        let passed = check();
        ok &= passed;
        say(if passed {
            "no-panic ok: "
        } else {
            "no-panic FAILED: "
        });
        say(name);
        say("\n");
    }
    let passed = store_records(FLASH, COPY);
    ok &= passed;
    say(if passed {
        "no-panic ok: store records\n"
    } else {
        "no-panic FAILED: store records\n"
    });
    #[cfg(feature = "no-panic-sign")]
    {
        let passed = signing();
        ok &= passed;
        say(if passed {
            "no-panic ok: signing\n"
        } else {
            "no-panic FAILED: signing\n"
        });
    }
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}
