//! Puts memory.x where cortex-m-rt's link.x finds it, and writes the sample MP replies the
//! no-panic proof (`src/no_panic.rs`) parses: HTTP/1.1 chunked responses whose bodies are the
//! two-part multipart envelopes an MP sends (UTF-16LE `<Msg>` header and payload).
use std::path::Path;

const B: &str = "aAbBcCdDv1234567890VxXyYzZ";

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// An MP reply: header with BOM, body + NUL + CRLF, closing delimiter; sent chunked.
fn reply(payload_xml: &str) -> Vec<u8> {
    let mut body = utf16(payload_xml);
    body.extend_from_slice(&[0, 0]);
    let header = format!(
        "<Msg SchemaVersion=\"1.1\"><ID>{{5DD100CD-DF1D-45F5-BA17-A327F43465F8}}</ID><SourceHost>MP01</SourceHost>\
         <CorrelationID>{{11111111-2222-3333-4444-555555555555}}</CorrelationID>\
         <Body Type=\"ByteRange\" Offset=\"0\" Length=\"{}\"/><Payload Type=\"inline\"/></Msg>",
        body.len()
    );
    let mut env = format!("--{B}\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n").into_bytes();
    env.extend_from_slice(&[0xFF, 0xFE]);
    env.extend(utf16(&header));
    env.extend_from_slice(
        format!("\r\n--{B}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    env.extend_from_slice(&body);
    env.extend_from_slice(format!("\r\n\r\n--{B}--\r\n").as_bytes());
    let mut http = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=\"{B}\"\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in env.chunks(500) {
        http.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        http.extend_from_slice(chunk);
        http.extend_from_slice(b"\r\n");
    }
    http.extend_from_slice(b"0\r\n\r\n");
    http
}

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    let write =
        |name: &str, bytes: Vec<u8>| std::fs::write(Path::new(&out).join(name), bytes).unwrap();
    write(
        "registration.http",
        reply(
            "<ClientRegistrationResponse ResponseType=\"Registration\" TimeStamp=\"2026-11-23T10:00:00Z\" \
             Status=\"0\" SMSID=\"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42\" ApprovalStatus=\"-1\"/>",
        ),
    );
    write(
        "policy.http",
        reply(
            "<ReplyAssignments SchemaVersion=\"1.00\" ReplyType=\"Full\"><PolicySource>SMS:PS1</PolicySource>\
             <PolicyAssignment PolicyAssignmentID=\"{a1}\"><Policy PolicyID=\"{c6fe32fb-7e9c-4776-abe3-2a6d107447f1}\" \
             PolicyVersion=\"2.00\" PolicyType=\"Machine\" PolicyFlags=\"30\"><PolicyLocation>\
             <![CDATA[http://<mp>/SMS_MP/.sms_pol?{c6fe32fb-7e9c-4776-abe3-2a6d107447f1}.2_00]]></PolicyLocation>\
             </Policy></PolicyAssignment><PolicyAssignment><Policy PolicyID=\"P2\" PolicyVersion=\"1.00\">\
             <PolicyLocation>http://&lt;mp&gt;/SMS_MP/.sms_pol?P2.1_00</PolicyLocation></Policy></PolicyAssignment>\
             </ReplyAssignments>",
        ),
    );
}
