//! Agent configuration, validated on construction: site code, site mode, MP location, the
//! site's generation ([`SiteGeneration`], the one setting the wire forms that differ between
//! ConfigMgr 2007 and current sites follow from) and the hash the site expects in signatures
//! ([`SignatureHash`]).

use crate::sign::SignatureScheme;
use crate::wire::registration::ConfirmationForm;
use crate::wire::reply::StatusNumbering;

/// A configuration value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// Site codes are exactly three ASCII letters or digits.
    InvalidSiteCode,
    /// The MP URL is not `http://host[:port][/]` or `https://host[:port][/]`.
    InvalidMpUrl,
    /// Mixed mode speaks HTTP and native mode HTTPS (docs/protocol.md §1); the URL's scheme says otherwise.
    SchemeDoesNotMatchMode,
    /// Host names travel in XML and HTTP headers: letters, digits, `-`, `.`, `_` only, 1–255 bytes.
    InvalidHostName,
    /// `SignatureHash::Sha1` (feature `sha1-sites`) is the ConfigMgr 2007 RSA form; an ECDSA key
    /// cannot use it.
    Sha1NeedsRsa,
    /// A site generation is `2007` or `current` ([`SiteGeneration`]'s `FromStr`).
    UnknownSiteGeneration,
}

/// A three-character Configuration Manager site code, stored upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SiteCode([u8; 3]);

impl SiteCode {
    /// Validate `s` (three ASCII alphanumerics, any case).
    pub fn new(s: &str) -> Result<Self, ConfigError> {
        let b: [u8; 3] = s
            .as_bytes()
            .try_into()
            .map_err(|_| ConfigError::InvalidSiteCode)?;
        if !b.iter().all(u8::is_ascii_alphanumeric) {
            return Err(ConfigError::InvalidSiteCode);
        }
        Ok(Self(b.map(|c| c.to_ascii_uppercase())))
    }
    /// The code, upper case.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("???")
    }
}

/// How the site authenticates clients (docs/protocol.md §1, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SiteMode {
    /// HTTP and a self-signed certificate made on first run.
    Mixed,
    /// HTTPS with a CA-issued certificate provisioned by the administrator.
    Native,
}

/// The hash a site expects in signatures, and so whether the `HashAlgorithm` attribute (in the
/// registration `<Data>`) and property (in the `clientauth` hook) are sent (docs/protocol.md §4, §6). This
/// is the one place that ties the two together: a signer wrapped with
/// [`crate::sign::SiteHashSigner`] hashes registration, `ClientIDSignature`, `PayloadSignature`
/// and `ClientTokenSignature` input with it, and the builders send the OID it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SignatureHash {
    /// SHA-256, announced with the scheme's OID: what current sites expect (the default).
    #[default]
    Sha256,
    /// SHA-1 with no `HashAlgorithm` at all: sites (and public tools) in the ConfigMgr 2007
    /// form. RSA only: SHA-1 is implied for RSA where the OID is absent. Needs the
    /// `sha1-sites` feature.
    #[cfg(feature = "sha1-sites")]
    Sha1,
}

impl SignatureHash {
    /// The `HashAlgorithm` OID to send with `scheme`'s signatures; `None`: send none.
    pub fn hash_algorithm_oid(self, scheme: SignatureScheme) -> Option<&'static str> {
        match self {
            Self::Sha256 => Some(scheme.hash_algorithm_oid()),
            #[cfg(feature = "sha1-sites")]
            Self::Sha1 => None,
        }
    }

    /// Whether a key of `scheme` can sign this way.
    pub fn check(self, scheme: SignatureScheme) -> Result<(), ConfigError> {
        match (self, scheme) {
            #[cfg(feature = "sha1-sites")]
            (Self::Sha1, SignatureScheme::EcdsaP256Sha256) => Err(ConfigError::Sha1NeedsRsa),
            _ => Ok(()),
        }
    }
}

/// Which generation of Configuration Manager the site runs (docs/protocol.md §4, §5): ConfigMgr 2007 or a
/// current branch. The public record documents both forms where they differ and cannot say
/// which one a given MP insists on, so every such choice follows from this one setting:
/// [`Self::status_numbering`], [`Self::attachment_naming`], [`Self::confirmation_form`] and
/// [`Self::default_signature_hash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SiteGeneration {
    /// ConfigMgr 2007, as its SDK documents the messages (`2007`).
    Sms2007,
    /// Current branch, as the Messaging SDK and captures of current clients show them
    /// (`current`, the default).
    #[default]
    Current,
}

/// How a report's attachment is named (docs/protocol.md §5, report framing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AttachmentNaming {
    /// The report's inventory action ID (`{00000000-0000-0000-0000-000000000003}` for
    /// discovery): the 2007 SDK's rule.
    InventoryActionId,
    /// A GUID of the message's own (its message ID): the captured current-branch form.
    MessageId,
}

impl SiteGeneration {
    /// The accepted spellings, for messages that refuse another one.
    pub const ACCEPTED: &'static str = "2007 or current";

    /// How the site numbers registration `Status`.
    pub fn status_numbering(self) -> StatusNumbering {
        match self {
            Self::Sms2007 => StatusNumbering::Sms2007,
            Self::Current => StatusNumbering::Current,
        }
    }

    /// How a discovery or inventory report's attachment is named.
    pub fn attachment_naming(self) -> AttachmentNaming {
        match self {
            Self::Sms2007 => AttachmentNaming::InventoryActionId,
            Self::Current => AttachmentNaming::MessageId,
        }
    }

    /// Which `RequestType="Confirmation"` form the agent sends.
    pub fn confirmation_form(self) -> ConfirmationForm {
        match self {
            Self::Sms2007 => ConfirmationForm::Sms2007,
            Self::Current => ConfirmationForm::Current,
        }
    }

    /// The hash a key of `scheme` signs with unless the integrator says otherwise: SHA-1
    /// without `HashAlgorithm` for RSA keys on 2007 sites (where SHA-1 was implied), SHA-256
    /// with the OID everywhere else. ECDSA keys cannot use SHA-1 (no 2007 site takes them
    /// anyway), and without the `sha1-sites` feature there is no SHA-1 to choose.
    pub fn default_signature_hash(self, scheme: SignatureScheme) -> SignatureHash {
        match (self, scheme) {
            #[cfg(feature = "sha1-sites")]
            (Self::Sms2007, SignatureScheme::RsaPkcs1Sha256) => SignatureHash::Sha1,
            _ => SignatureHash::Sha256,
        }
    }
}

impl core::fmt::Display for SiteGeneration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Sms2007 => "2007",
            Self::Current => "current",
        })
    }
}

impl core::str::FromStr for SiteGeneration {
    type Err = ConfigError;

    /// `2007` or `current` (ASCII case ignored), as [`Display`](core::fmt::Display) writes them.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        if s == "2007" {
            Ok(Self::Sms2007)
        } else if s.eq_ignore_ascii_case("current") {
            Ok(Self::Current)
        } else {
            Err(ConfigError::UnknownSiteGeneration)
        }
    }
}

/// Where the management point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MpLocation<'a> {
    /// Host name or address as it goes into `Host:` and `TargetHost` (IPv6 without brackets).
    pub host: &'a str,
    /// TCP port.
    pub port: u16,
    /// HTTPS (native mode) or HTTP.
    pub https: bool,
}

/// Whether `name` is safe to place in XML attributes and HTTP headers as a host or NetBIOS name.
pub fn is_valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':'))
}

impl<'a> MpLocation<'a> {
    /// Parse `http://host[:port][/]` or `https://…`; IPv6 literals in brackets.
    pub fn parse(url: &'a str) -> Result<Self, ConfigError> {
        let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(ConfigError::InvalidMpUrl);
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(ConfigError::InvalidMpUrl);
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or(ConfigError::InvalidMpUrl)?;
            let port = match after {
                "" => default_port,
                p => parse_port(p.strip_prefix(':').ok_or(ConfigError::InvalidMpUrl)?)?,
            };
            (host, port)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, parse_port(p)?),
                None => (rest, default_port),
            }
        };
        if !is_valid_host_name(host) {
            return Err(ConfigError::InvalidHostName);
        }
        Ok(Self { host, port, https })
    }
}

fn parse_port(p: &str) -> Result<u16, ConfigError> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(ConfigError::InvalidMpUrl),
        Ok(port) => Ok(port),
    }
}

/// Everything an appliance is configured with.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AgentConfig<'a> {
    /// The site the appliance joins.
    pub site_code: SiteCode,
    /// Mixed (HTTP + self-signed) or native (HTTPS + PKI).
    pub mode: SiteMode,
    /// The management point.
    pub mp: MpLocation<'a>,
    /// The appliance's NetBIOS name (also `SourceHost` and `ReplyTo`).
    pub netbios_name: &'a str,
    /// The appliance's fully qualified name.
    pub fqdn: &'a str,
    /// The site's generation ([`SiteGeneration::Current`] unless
    /// [`Self::with_site_generation`] says otherwise).
    pub site_generation: SiteGeneration,
}

impl<'a> AgentConfig<'a> {
    /// Validate and assemble a configuration.
    pub fn new(
        site_code: &str,
        mode: SiteMode,
        mp_url: &'a str,
        netbios_name: &'a str,
        fqdn: &'a str,
    ) -> Result<Self, ConfigError> {
        let site_code = SiteCode::new(site_code)?;
        let mp = MpLocation::parse(mp_url)?;
        if mp.https != (mode == SiteMode::Native) {
            return Err(ConfigError::SchemeDoesNotMatchMode);
        }
        if !is_valid_host_name(netbios_name) || !is_valid_host_name(fqdn) {
            return Err(ConfigError::InvalidHostName);
        }
        Ok(Self {
            site_code,
            mode,
            mp,
            netbios_name,
            fqdn,
            site_generation: SiteGeneration::default(),
        })
    }

    /// The same configuration for a site of `generation`.
    pub fn with_site_generation(mut self, generation: SiteGeneration) -> Self {
        self.site_generation = generation;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_codes() {
        assert_eq!(SiteCode::new("ps1").unwrap().as_str(), "PS1");
        for bad in ["", "PS", "PS12", "P-1", "P 1", "PÄ"] {
            assert_eq!(
                SiteCode::new(bad),
                Err(ConfigError::InvalidSiteCode),
                "{bad}"
            );
        }
    }

    #[test]
    fn mp_urls() {
        let l = MpLocation::parse("http://mp.corp.example:8080/").unwrap();
        assert_eq!((l.host, l.port, l.https), ("mp.corp.example", 8080, false));
        let l = MpLocation::parse("https://mp").unwrap();
        assert_eq!((l.host, l.port, l.https), ("mp", 443, true));
        let l = MpLocation::parse("http://[::1]:81").unwrap();
        assert_eq!((l.host, l.port), ("::1", 81));
        for bad in [
            "ftp://mp",
            "http://",
            "http://mp:0",
            "http://mp:99999",
            "http://mp/x",
            "http://m p",
            "http://mp\r\nX: y",
            "http://[::1",
        ] {
            assert!(MpLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    #[cfg(feature = "sha1-sites")]
    fn signature_hash_names_the_oid_or_none() {
        use crate::profile;
        let (ec, rsa) = (
            SignatureScheme::EcdsaP256Sha256,
            SignatureScheme::RsaPkcs1Sha256,
        );
        assert_eq!(SignatureHash::default(), SignatureHash::Sha256);
        assert_eq!(
            SignatureHash::Sha256.hash_algorithm_oid(rsa),
            Some(profile::RSA_SHA256_OID)
        );
        assert_eq!(
            SignatureHash::Sha256.hash_algorithm_oid(ec),
            Some(profile::ECDSA_P256_SHA256_OID)
        );
        assert_eq!(SignatureHash::Sha1.hash_algorithm_oid(rsa), None);
        assert_eq!(SignatureHash::Sha1.check(rsa), Ok(()));
        assert_eq!(
            SignatureHash::Sha1.check(ec),
            Err(ConfigError::Sha1NeedsRsa)
        );
        assert_eq!(SignatureHash::Sha256.check(ec), Ok(()));
    }

    #[test]
    fn site_generation_reads_and_writes_its_two_names() {
        use core::str::FromStr;
        extern crate std;
        use std::string::ToString;
        assert_eq!(SiteGeneration::default(), SiteGeneration::Current);
        for g in [SiteGeneration::Sms2007, SiteGeneration::Current] {
            assert_eq!(SiteGeneration::from_str(&g.to_string()), Ok(g));
        }
        assert_eq!(SiteGeneration::Sms2007.to_string(), "2007");
        assert_eq!(SiteGeneration::Current.to_string(), "current");
        assert_eq!("CURRENT".parse(), Ok(SiteGeneration::Current));
        for bad in ["", "2012", "sms2007", "current ", "latest"] {
            assert_eq!(
                bad.parse::<SiteGeneration>(),
                Err(ConfigError::UnknownSiteGeneration),
                "{bad}"
            );
        }
        let text = ConfigError::UnknownSiteGeneration.to_string();
        assert!(text.contains("`2007` or `current`"), "{text}");
    }

    #[test]
    fn status_numbering_and_attachment_naming_follow_the_generation() {
        assert_eq!(
            SiteGeneration::Sms2007.status_numbering(),
            StatusNumbering::Sms2007
        );
        assert_eq!(
            SiteGeneration::Current.status_numbering(),
            StatusNumbering::Current
        );
        // The same code 2 means "send again" on one and "reset" on the other.
        use crate::wire::reply::RegistrationStatus as S;
        assert_eq!(
            SiteGeneration::Sms2007.status_numbering().status(2),
            S::RetryLater
        );
        assert_eq!(
            SiteGeneration::Current.status_numbering().status(2),
            S::Reset
        );
        assert_eq!(
            SiteGeneration::Sms2007.attachment_naming(),
            AttachmentNaming::InventoryActionId
        );
        assert_eq!(
            SiteGeneration::Current.attachment_naming(),
            AttachmentNaming::MessageId
        );
        assert_eq!(
            SiteGeneration::Sms2007.confirmation_form(),
            ConfirmationForm::Sms2007
        );
        assert_eq!(
            SiteGeneration::Current.confirmation_form(),
            ConfirmationForm::Current
        );
    }

    #[test]
    fn default_signature_hash_follows_the_generation_and_the_key() {
        let (ec, rsa) = (
            SignatureScheme::EcdsaP256Sha256,
            SignatureScheme::RsaPkcs1Sha256,
        );
        assert_eq!(
            SiteGeneration::Current.default_signature_hash(rsa),
            SignatureHash::Sha256
        );
        assert_eq!(
            SiteGeneration::Current.default_signature_hash(ec),
            SignatureHash::Sha256
        );
        // An ECDSA key has no SHA-1 form, even on a 2007 site.
        assert_eq!(
            SiteGeneration::Sms2007.default_signature_hash(ec),
            SignatureHash::Sha256
        );
        #[cfg(feature = "sha1-sites")]
        let want = SignatureHash::Sha1;
        #[cfg(not(feature = "sha1-sites"))]
        let want = SignatureHash::Sha256;
        assert_eq!(SiteGeneration::Sms2007.default_signature_hash(rsa), want);
        // Whatever the default, the key can sign that way.
        for g in [SiteGeneration::Sms2007, SiteGeneration::Current] {
            for k in [ec, rsa] {
                assert_eq!(g.default_signature_hash(k).check(k), Ok(()));
            }
        }
    }

    #[test]
    fn the_configuration_carries_the_generation() {
        let c = AgentConfig::new("PS1", SiteMode::Mixed, "http://mp", "dev", "dev.corp").unwrap();
        assert_eq!(c.site_generation, SiteGeneration::Current);
        let c = c.with_site_generation(SiteGeneration::Sms2007);
        assert_eq!(c.site_generation, SiteGeneration::Sms2007);
    }

    #[test]
    fn mode_must_match_scheme() {
        assert!(AgentConfig::new("PS1", SiteMode::Mixed, "http://mp", "dev", "dev.corp").is_ok());
        assert_eq!(
            AgentConfig::new("PS1", SiteMode::Native, "http://mp", "dev", "dev.corp").err(),
            Some(ConfigError::SchemeDoesNotMatchMode)
        );
        assert_eq!(
            AgentConfig::new("PS1", SiteMode::Mixed, "http://mp", "dev<x>", "dev.corp").err(),
            Some(ConfigError::InvalidHostName)
        );
    }
}
