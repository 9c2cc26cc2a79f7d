//! The MP emulator's XML on hostile text: the `<Msg>` header, the `ClientRegistrationRequest`
//! body, the DTD / markup guards, and the small parsers of `util` and `verify`. Whatever a request
//! says, the reply header the emulator builds from it (ReplyTo, ID, SourceHost, endpoint) is
//! well-formed XML that the emulator's own parser reads back: no markup injection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpagent_sim::mp::envelope::{decode_utf16le, ByteRange};
use mpagent_sim::mp::messages::{
    check_no_dtd, check_plain_markup, registration_response_xml, reply_header_xml,
    strip_xml_declaration, ClientRegistrationRequest, MsgHeader, RegistrationStatus, XmlError,
};
use mpagent_sim::mp::util::{normalize_smsid, parse_utc_timestamp, utc_timestamp_at, xml_escape};
use mpagent_sim::mp::verify::decode_hex;

fn check_text(xml: &str) {
    let _ = check_no_dtd(xml);
    let plain = check_plain_markup(xml).is_ok();
    if plain {
        assert!(check_no_dtd(xml).is_ok());
    }
    assert!(xml.ends_with(strip_xml_declaration(xml)));

    if let Ok(h) = MsgHeader::parse(xml) {
        assert!(check_no_dtd(xml).is_ok());
        assert!(h.body_range().is_ok() && h.attachment_ranges().is_ok());
        for compressed in [false, true] {
            let reply = reply_header_xml(&h, "mp.test.local", 42, compressed);
            match MsgHeader::parse(&reply) {
                Ok(r) => {
                    assert_eq!(r.is_compressed(), compressed);
                    assert_eq!(
                        r.body_range().ok(),
                        Some(ByteRange {
                            offset: 0,
                            length: 42
                        })
                    );
                    assert_eq!(r.correlation_id.as_deref(), Some(h.id.trim()));
                }
                // A field the request left empty (e.g. `ReplyTo` "direct:h:") can make our
                // reply fail our own semantic checks; it must never be malformed XML.
                Err(XmlError::Header(_)) => {}
                Err(e) => panic!("reply header does not parse ({e}): {reply}"),
            }
        }
    }

    if let Ok(r) = ClientRegistrationRequest::parse(xml) {
        assert!(check_plain_markup(strip_xml_declaration(xml)).is_ok());
        let _ = r.data.property("Netbios Name");
        let out = registration_response_xml(
            &r.data.request_type,
            RegistrationStatus::Pending,
            r.data.smsid.as_deref(),
        );
        assert_eq!(out.matches('<').count(), 1, "markup injected: {out}");
    }

    if let Some(t) = parse_utc_timestamp(xml) {
        assert_eq!(utc_timestamp_at(t), xml);
    }
    if let Some(n) = normalize_smsid(xml) {
        assert_eq!(normalize_smsid(&n).as_deref(), Some(n.as_str()));
        assert_eq!(n, n.to_ascii_uppercase());
    }
    if let Ok(bytes) = decode_hex(xml, "fuzz") {
        assert!(hex_eq(&bytes, xml.trim()));
    }
    let esc = xml_escape(xml);
    assert!(!esc.contains(['<', '>', '"']));
}

fn hex_eq(bytes: &[u8], text: &str) -> bool {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let upper: String = bytes
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
        .map(char::from)
        .collect();
    upper.eq_ignore_ascii_case(text)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(xml) = std::str::from_utf8(data) {
        check_text(xml);
    }
    if let Ok(xml) = decode_utf16le(data) {
        check_text(&xml);
    }
});
