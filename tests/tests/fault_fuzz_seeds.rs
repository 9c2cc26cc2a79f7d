//! Regenerates the seed corpora of `host-sim/fuzz` from real requests the core builds and signs
//! (the MP emulator's fuzz targets start from messages that pass every check, so mutations reach
//! signature verification and the site database):
//!
//! ```sh
//! cargo test -p mpagent-tests --test fault_fuzz_seeds -- --ignored
//! ```
//!
//! The ordinary run only checks that the committed seeds exist.

use std::path::PathBuf;

use mpagent_core::agent::outbound::{Post, PostParams};
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::header::{endpoint, ReplyMode};
use mpagent_core::wire::registration::{AgentType, RequestType};
use mpagent_sim::client::state::StateDir;
use mpagent_sim::mp::envelope::{
    body_stream, build_multipart, decode_header_part, message_parts, split_multipart,
    zlib_compress, BOUNDARY,
};
use mpagent_sim::mp::messages::{reply_header_xml, MsgHeader};
use mpagent_tests::emit_to_vec;

fn seeds() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../host-sim/fuzz/seeds")
}

const TARGETS: [&str; 4] = ["mp_envelope", "mp_message", "mp_registration", "mp_request"];

/// (HTTP body, header XML, body XML) of one request.
fn request(
    config: &AgentConfig<'_>,
    identity: &SigningIdentity<'_>,
    kind: RequestType,
    smsid: Option<Smsid>,
) -> (Vec<u8>, String, String) {
    let now = UnixTime(1_795_428_000);
    let req = build_request(config, identity, AgentType::Client, kind, smsid, now).unwrap();
    let params = PostParams {
        endpoint: endpoint::CLIENT_REGISTRATION,
        reply_mode: ReplyMode::Sync,
        source_id: None,
        message_id: Guid([0x5D; 16]),
        now,
        hooks: None,
    };
    let wire = emit_to_vec(&Post::new(config, params, &req).unwrap());
    let split = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = wire[split..].to_vec();
    let parts = split_multipart(&body, BOUNDARY).unwrap();
    let (h, b) = message_parts(&parts).unwrap();
    let header = decode_header_part(h).unwrap();
    let units: Vec<u16> = b[..b.len() - 4]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let xml = String::from_utf16(&units).unwrap();
    (body, header, xml)
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = seeds().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
#[ignore = "writes host-sim/fuzz/seeds; run on purpose"]
fn regenerate_host_sim_fuzz_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let identity = StateDir::open(dir.path())
        .unwrap()
        .load_or_create_identity("SEED-1", UnixTime(1_795_428_000))
        .unwrap();
    let signing = SigningIdentity {
        signer: &identity.signer,
        cert_der: &identity.cert_der,
    };
    let config = AgentConfig::new(
        "PS1",
        SiteMode::Mixed,
        "http://mp.test.local",
        "SEED-1",
        "seed-1.local",
    )
    .unwrap();
    let smsid = Smsid::parse(b"GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42").unwrap();
    let (reg_body, header, reg_xml) = request(&config, &signing, RequestType::Registration, None);
    let (conf_body, _, conf_xml) =
        request(&config, &signing, RequestType::Confirmation, Some(smsid));
    let ct = format!("multipart/mixed; boundary=\"{BOUNDARY}\"\n");

    // The same registration with a zlib-compressed octet stream, as Windows clients send it
    // (`Length` stays the uncompressed length, docs/protocol.md §2).
    let (stream, _) = body_stream(&reg_xml);
    let z_header = if header.contains("<Hooks>") {
        header.replace("<Hooks>", "<Hooks><Hook3 Name=\"zlib-compress\" />")
    } else {
        header.replace(
            "<ID>",
            "<Hooks><Hook3 Name=\"zlib-compress\" /></Hooks><ID>",
        )
    };
    let zipped = build_multipart(&z_header, &zlib_compress(&stream));

    write(
        "mp_request",
        "registration",
        &cat(&[ct.as_bytes(), &reg_body]),
    );
    write(
        "mp_request",
        "confirmation",
        &cat(&[ct.as_bytes(), &conf_body]),
    );
    write(
        "mp_request",
        "registration_zlib",
        &cat(&[ct.as_bytes(), &zipped]),
    );
    write("mp_envelope", "registration", &cat(&[&[0], &reg_body]));
    write("mp_envelope", "registration_zlib", &cat(&[&[4], &zipped]));
    write("mp_message", "header", header.as_bytes());
    write("mp_message", "registration", reg_xml.as_bytes());
    write("mp_message", "confirmation", conf_xml.as_bytes());
    let h = MsgHeader::parse(&header).unwrap();
    write(
        "mp_message",
        "reply_header",
        reply_header_xml(&h, "mp.test.local", 42, true).as_bytes(),
    );
    write(
        "mp_registration",
        "registration",
        &cat(&[&[0], reg_xml.as_bytes()]),
    );
    write(
        "mp_registration",
        "confirmation",
        &cat(&[&[1], conf_xml.as_bytes()]),
    );
    write(
        "mp_registration",
        "pending",
        &cat(&[&[1], reg_xml.as_bytes()]),
    );
}

#[test]
fn every_host_sim_fuzz_target_has_seeds() {
    for t in TARGETS {
        let n = std::fs::read_dir(seeds().join(t))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(n > 0, "no seeds for {t}: run the ignored test of this file");
    }
}
