//! `MP_ClientRegistration` behind the envelope: a hostile body (UTF-8 here, re-encoded to the
//! UTF-16LE the signature covers) through `registration::handle` against a real site database.
//! Seeds are real signed requests from the core, so mutations reach signature verification,
//! certificate parsing and the database paths. An accepted request yields a well-formed reply.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::envelope::{encode_utf16le, Body};
use mpagent_sim::mp::registration;
use mpagent_sim::mp::util::normalize_smsid;
use mpagent_sim::mp::Approval;

thread_local! {
    static SITE: RefCell<Option<(tempfile::TempDir, SiteDb)>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let body = Body {
        bytes: encode_utf16le(text),
        text: text.to_string(),
        ..Default::default()
    };
    let approval = if sel & 1 == 0 {
        Approval::Auto
    } else {
        Approval::Pending
    };
    SITE.with(|site| {
        let mut site = site.borrow_mut();
        let (_, db) = site.get_or_insert_with(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = SiteDb::open(dir.path().join("site.db")).expect("site db");
            (dir, db)
        });
        if let Ok(outcome) = registration::handle(db, approval, &body) {
            if let Some(id) = &outcome.smsid {
                assert_eq!(normalize_smsid(id).as_deref(), Some(id.as_str()));
            }
            let xml = outcome.to_xml();
            assert_eq!(xml.matches('<').count(), 1, "{xml}");
        }
    });
});
