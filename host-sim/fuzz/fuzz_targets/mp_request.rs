//! A whole `CCM_POST` body through the emulator's pipeline (`handler::handle_ccm_post`): content
//! type, envelope, header, body, endpoint dispatch, registration, reply envelope. Input: the
//! `Content-Type` value, `\n`, the HTTP body. An accepted request's reply must parse with the
//! agent's own reply parser (the two implementations share no code).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use mpagent_core::wire::reply::{parse_registration_reply_in, ReplyError};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::envelope::BOUNDARY;
use mpagent_sim::mp::handler::handle_ccm_post;
use mpagent_sim::mp::{Approval, Limits, MpConfig};

thread_local! {
    static SITE: RefCell<Option<(tempfile::TempDir, SiteDb, MpConfig)>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    SITE.with(|site| {
        let mut site = site.borrow_mut();
        let (_, db, config) = site.get_or_insert_with(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let config = MpConfig {
                site_code: "PS1".into(),
                db_path: dir.path().join("site.db"),
                approval: Approval::Auto,
                limits: Limits {
                    max_body_bytes: 1 << 16,
                    ..Limits::default()
                },
                mp_host: "mp.test.local".into(),
                strict: false,
            };
            let db = SiteDb::open(&config.db_path).expect("site db");
            (dir, db, config)
        });
        match handle_ccm_post(config, db, ct, body) {
            Ok(reply) => {
                if !reply.body.is_empty() {
                    assert!(reply.content_type.contains(BOUNDARY));
                    let mut scratch = vec![0u8; 1 << 16];
                    match parse_registration_reply_in(&reply.body, BOUNDARY, &mut scratch) {
                        Ok(_) => {}
                        // Devices never ask for compressed replies, and refuse them.
                        Err(ReplyError::Compressed) => {}
                        // Another endpoint's reply (not a registration response).
                        Err(ReplyError::WrongRoot) if !is_registration_reply(&reply.body) => {}
                        Err(e) => panic!("the agent cannot read the MP's reply: {e:?}"),
                    }
                }
            }
            Err(r) => assert!(!r.reason.is_empty()),
        }
    });
});

fn is_registration_reply(body: &[u8]) -> bool {
    let needle: Vec<u8> = "<ClientRegistrationResponse"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    body.windows(needle.len()).any(|w| w == needle)
}
