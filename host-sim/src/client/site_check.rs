//! Asks the MP which site it serves (`GET /SMS_MP/.sms_aut?MPKEYINFORMATION`, docs/protocol.md §1)
//! before a registration, so that a client configured for another site is stopped with both codes
//! named instead of registering and reporting to the wrong site.

use std::time::Duration;

use embedded_io_async::{Read as _, Write as _};
use mpagent_core::io::Connector;

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

/// The site code the MP announces, asked over `connector` (plain TCP in mixed mode, the
/// client's TLS session in native mode); `None` when it does not answer the look-up (older or
/// stricter MPs) or cannot be reached: the registration then goes ahead and the MP's own
/// refusal, if any, is what the user sees.
pub async fn served_site<C: Connector>(connector: &mut C, host: &str, port: u16) -> Option<String> {
    let fetch = async {
        let mut conn = connector.connect().await.ok()?;
        let request = format!(
            "GET /SMS_MP/.sms_aut?MPKEYINFORMATION HTTP/1.1\r\nHost: {host}:{port}\r\n\
             User-Agent: mpagent\r\nConnection: close\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await.ok()?;
        conn.flush().await.ok()?;
        let mut answer = vec![0u8; MAX_ANSWER];
        let mut len = 0;
        while len < answer.len() {
            match conn.read(&mut answer[len..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
        }
        let answer = &answer[..len];
        let status_ok = answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200");
        if !status_ok {
            return None;
        }
        let body = memchr::memmem::find(answer, b"\r\n\r\n").map(|i| &answer[i + 4..])?;
        site_code_of(body)
    };
    tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .ok()
        .flatten()
}

/// Stop with [`SiteMismatch`] when the MP says it serves another site than `configured`.
pub async fn check_site<C: Connector>(
    connector: &mut C,
    host: &str,
    port: u16,
    configured: &str,
    mp_url: &str,
) -> Result<(), SiteMismatch> {
    match served_site(connector, host, port).await {
        Some(served) if !served.eq_ignore_ascii_case(configured) => Err(SiteMismatch {
            configured: configured.to_ascii_uppercase(),
            served,
            mp: mp_url.to_string(),
        }),
        Some(_) => Ok(()),
        None => {
            tracing::info!("the MP did not answer MPKEYINFORMATION; its site code is not checked");
            Ok(())
        }
    }
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
