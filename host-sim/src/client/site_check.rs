//! Asks the MP which site it serves (`GET /SMS_MP/.sms_aut?MPKEYINFORMATION`, docs/protocol.md §1)
//! before a registration, so that a client configured for another site is stopped with both codes
//! named instead of registering and reporting to the wrong site.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The MP serves another site than `--site-code` says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--site-code {configured}: the MP at {mp} serves site {served} (its MPKEYINFORMATION says \
     so); use --site-code {served}, or the MP of site {configured}"
)]
pub struct SiteMismatch {
    /// What the client was given.
    pub configured: String,
    /// What the MP answered.
    pub served: String,
    /// The MP's location.
    pub mp: String,
}

/// Largest look-up answer read (the MP's answer is a few hundred bytes plus its certificate).
const MAX_ANSWER: usize = 64 * 1024;

/// The site code in an `MPKEYINFORMATION` document, if there is one of three letters or digits.
pub fn site_code_of(answer: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(answer).ok()?;
    let start = text.find("<SITECODE>")? + "<SITECODE>".len();
    let len = text.get(start..)?.find("</SITECODE>")?;
    let code = text.get(start..start + len)?.trim();
    (code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| code.to_ascii_uppercase())
}

/// The site code the plain-HTTP MP at `host:port` announces; `None` when it does not answer
/// the look-up (older or stricter MPs): the registration then goes ahead and the MP's own
/// refusal, if any, is what the user sees.
pub async fn served_site(host: &str, port: u16) -> Option<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let request = format!(
            "GET /SMS_MP/.sms_aut?MPKEYINFORMATION HTTP/1.1\r\nHost: {host}:{port}\r\n\
             User-Agent: mpagent\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut answer)
            .await
            .ok()?;
        let status_ok = answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200");
        if !status_ok {
            return None;
        }
        let body = memchr::memmem::find(&answer, b"\r\n\r\n").map(|i| &answer[i + 4..])?;
        site_code_of(body)
    };
    tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_code_is_read_only_from_a_well_formed_element() {
        assert_eq!(
            site_code_of(b"<MPKEYINFORMATION><SITECODE>ps1</SITECODE></MPKEYINFORMATION>"),
            Some("PS1".into())
        );
        assert_eq!(site_code_of(b"<SITECODE>PS12</SITECODE>"), None);
        assert_eq!(site_code_of(b"<SITECODE>P&1</SITECODE>"), None);
        assert_eq!(site_code_of(b"<SITECODE>PS1"), None);
        assert_eq!(site_code_of(b"</SITECODE>PS1<SITECODE>"), None);
        assert_eq!(site_code_of(&[0xff, 0xfe, 0x00]), None);
        assert_eq!(site_code_of(b""), None);
    }
}
