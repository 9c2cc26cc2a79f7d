//! Test-only: MP replies framed as the emulator and real MPs frame them (docs/protocol.md §2), for
//! the io and driver tests that feed a scripted MP.

extern crate std;

use std::vec::Vec;

/// UTF-16LE bytes of `s`, as message XML travels.
pub(crate) fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// The multipart body of an MP reply whose body part is `body_xml` (UTF-16LE, NUL-terminated),
/// and the `Content-Type` that names its boundary.
pub(crate) fn multipart_reply(body_xml: &str) -> (std::string::String, Vec<u8>) {
    const B: &str = crate::wire::multipart::BOUNDARY;
    let mut body = utf16(body_xml);
    body.extend_from_slice(&[0, 0]);
    let header = std::format!(
        "<Msg SchemaVersion=\"1.1\"><Body Type=\"ByteRange\" Length=\"{}\" Offset=\"0\" /><CorrelationID>{{00000000-0000-0000-0000-000000000000}}</CorrelationID></Msg>",
        body.len()
    );
    let mut mp = Vec::new();
    mp.extend_from_slice(
        std::format!("--{B}\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n").as_bytes(),
    );
    mp.extend_from_slice(&[0xFF, 0xFE]);
    mp.extend(utf16(&header));
    mp.extend_from_slice(
        std::format!("\r\n--{B}\r\ncontent-type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    mp.extend_from_slice(&body);
    mp.extend_from_slice(std::format!("\r\n\r\n--{B}--").as_bytes());
    (std::format!("multipart/mixed; boundary=\"{B}\""), mp)
}
