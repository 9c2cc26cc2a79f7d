//! Provisioning: what the installer tells the device, read once at boot from `mpagent.cfg`
//! (`key=value` lines, `#` comments) in QEMU's working directory.
//!
//! ```text
//! mp=http://10.0.2.2:8080      # the management point (an IPv4 literal: no DNS on this image)
//! site=PS1                     # site code
//! name=QEMU-1                  # NetBIOS name, also the certificate's CN
//! fqdn=qemu-1.local            # optional, default <name>.local
//! ip=10.0.2.15/24              # optional, QEMU user networking's guest address
//! gateway=10.0.2.2             # optional, QEMU user networking's host alias
//! max_failures=3               # optional, failed registration attempts in one boot
//! tls_name=mp.test             # native builds, optional: the name the MP's certificate must
//!                              # hold (default: the host in mp=, here an IP SAN)
//! tls_version=1.2              # native builds, optional: 1.2, 1.3 or any (the default)
//! ```
//!
//! A native build (`--features native`, `mp=https://…`) also reads `ca.der` (the CA that issued
//! the MP's certificate), `client.der` (the device's certificate from the site's CA) and
//! `client-key.der` (its key: PKCS#8, SEC1 for P-256 or PKCS#1 for RSA-2048), all DER, from
//! the same directory (see README.md).

use core::net::Ipv4Addr;

use heapless::String;

/// Longest accepted `fqdn` (the default is built from `name`).
pub const MAX_FQDN: usize = 96;

/// A provisioning file was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum ProvisionError {
    /// Not UTF-8.
    NotText,
    /// A line is not `key=value`, or the key is unknown.
    BadLine(usize),
    /// A required key (`mp`, `site` or `name`) is missing.
    Missing(&'static str),
    /// `ip`, `gateway`, `max_failures`, `tls_name` or `tls_version` does not parse.
    BadValue(&'static str),
}

/// The provisioned settings, borrowing the file's text.
#[derive(Debug, Clone)]
pub struct Provisioning<'a> {
    /// `http://host:port` of the MP.
    pub mp_url: &'a str,
    /// Site code.
    pub site: &'a str,
    /// NetBIOS name.
    pub name: &'a str,
    /// Fully qualified name.
    pub fqdn: String<MAX_FQDN>,
    /// Own address.
    pub ip: Ipv4Addr,
    /// Prefix length of `ip`.
    pub prefix_len: u8,
    /// Default gateway.
    pub gateway: Ipv4Addr,
    /// Consecutive failed attempts before giving up.
    pub max_failures: u32,
    /// The name the MP's certificate must hold, when not the host in `mp`.
    pub tls_name: Option<&'a str>,
    /// Which TLS versions to offer.
    pub tls_version: TlsVersions,
}

/// The TLS versions a native build offers (`tls_version=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum TlsVersions {
    /// TLS 1.2 only.
    Only12,
    /// TLS 1.3 only.
    Only13,
    /// 1.2 or 1.3, whichever the MP picks (the default).
    Any,
}

impl<'a> Provisioning<'a> {
    /// Parse the file's bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ProvisionError> {
        let text = core::str::from_utf8(bytes).map_err(|_| ProvisionError::NotText)?;
        let (mut mp_url, mut site, mut name, mut fqdn) = (None, None, None, None);
        let mut ip = (Ipv4Addr::new(10, 0, 2, 15), 24u8);
        let mut gateway = Ipv4Addr::new(10, 0, 2, 2);
        let mut max_failures = 3u32;
        let mut tls_name = None;
        let mut tls_version = TlsVersions::Any;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or(ProvisionError::BadLine(i + 1))?;
            let value = value.trim();
            match key.trim() {
                "mp" => mp_url = Some(value),
                "site" => site = Some(value),
                "name" => name = Some(value),
                "fqdn" => fqdn = Some(value),
                "ip" => {
                    let (addr, len) = value.split_once('/').unwrap_or((value, "24"));
                    let addr = addr.parse().map_err(|_| ProvisionError::BadValue("ip"))?;
                    let len = len.parse().ok().filter(|l| *l <= 32);
                    ip = (addr, len.ok_or(ProvisionError::BadValue("ip"))?);
                }
                "gateway" => {
                    gateway = value
                        .parse()
                        .map_err(|_| ProvisionError::BadValue("gateway"))?
                }
                "max_failures" => {
                    max_failures = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(ProvisionError::BadValue("max_failures"))?
                }
                "tls_name" if !value.is_empty() => tls_name = Some(value),
                "tls_name" => return Err(ProvisionError::BadValue("tls_name")),
                "tls_version" => {
                    tls_version = match value {
                        "1.2" => TlsVersions::Only12,
                        "1.3" => TlsVersions::Only13,
                        "any" => TlsVersions::Any,
                        _ => return Err(ProvisionError::BadValue("tls_version")),
                    }
                }
                _ => return Err(ProvisionError::BadLine(i + 1)),
            }
        }
        let name = name.ok_or(ProvisionError::Missing("name"))?;
        let mut fqdn_buf = String::new();
        let fits = match fqdn {
            Some(f) => fqdn_buf.push_str(f),
            None => fqdn_buf
                .push_str(name)
                .and_then(|()| fqdn_buf.push_str(".local")),
        };
        fits.map_err(|_| ProvisionError::BadValue("fqdn"))?;
        Ok(Self {
            mp_url: mp_url.ok_or(ProvisionError::Missing("mp"))?,
            site: site.ok_or(ProvisionError::Missing("site"))?,
            name,
            fqdn: fqdn_buf,
            ip: ip.0,
            prefix_len: ip.1,
            gateway,
            max_failures,
            tls_name,
            tls_version,
        })
    }
}
