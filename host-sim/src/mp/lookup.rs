//! Anonymous look-ups on `GET /SMS_MP/.sms_aut?{QUERY}` (docs/protocol.md §1) and the MP's own
//! identity. Reply shapes are [profile] and live only here: `MPLIST` and `MPKEYINFORMATION` as
//! small XML documents (UTF-8), `MPCERT` and `SITESIGNCERT` as the hex DER of the MP's self-signed
//! P-256 certificate, made at start-up.

use super::util::xml_escape;
use super::MpConfig;
use p256::pkcs8::EncodePublicKey;
use std::str::FromStr;
use x509_cert::der::asn1::BitString;
use x509_cert::der::{Decode, Encode};
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};

/// The MP's own certificate (signing key discarded: the emulator signs nothing yet).
#[derive(Clone, Debug)]
pub struct MpIdentity {
    pub cert_der: Vec<u8>,
}

impl MpIdentity {
    /// Makes a fresh self-signed ECDSA P-256 certificate `CN={mp_host}`, valid for ten years.
    pub fn generate(mp_host: &str) -> anyhow::Result<MpIdentity> {
        use p256::ecdsa::signature::Signer;
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let spki_der = p256::PublicKey::from(key.verifying_key()).to_public_key_der()?;
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())?;
        let cn: String = mp_host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = x509_cert::name::Name::from_str(&format!(
            "CN={}",
            if cn.is_empty() { "mp" } else { &cn }
        ))?;
        let alg = AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
            parameters: None,
        };
        let mut serial = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        let tbs = x509_cert::TbsCertificate {
            version: x509_cert::Version::V3,
            serial_number: x509_cert::serial_number::SerialNumber::new(&serial)?,
            signature: alg.clone(),
            issuer: name.clone(),
            validity: x509_cert::time::Validity::from_now(std::time::Duration::from_secs(
                10 * 365 * 86_400,
            ))?,
            subject: name,
            subject_public_key_info: spki,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: None,
        };
        let sig: p256::ecdsa::DerSignature = key.sign(&tbs.to_der()?);
        let cert = x509_cert::Certificate {
            tbs_certificate: tbs,
            signature_algorithm: alg,
            signature: BitString::from_bytes(sig.as_bytes())?,
        };
        Ok(MpIdentity {
            cert_der: cert.to_der()?,
        })
    }
}

/// The answer to `/SMS_MP/.sms_aut?{query}`: (content type, body), or `None` for an unknown query.
pub fn answer(
    query: &str,
    config: &MpConfig,
    identity: &MpIdentity,
) -> Option<(&'static str, Vec<u8>)> {
    let host = xml_escape(&config.mp_host);
    let site = xml_escape(&config.site_code);
    let cert_hex = hex::encode_upper(&identity.cert_der);
    let netbios = xml_escape(
        config
            .mp_host
            .split('.')
            .next()
            .unwrap_or("")
            .to_ascii_uppercase()
            .as_str(),
    );
    let xml = |s: String| Some(("text/xml; charset=utf-8", s.into_bytes()));
    match query.to_ascii_uppercase().as_str() {
        "MPLIST" => xml(format!(
            "<MPList><MP Name=\"{netbios}\" FQDN=\"{host}\"><Version>9128</Version>\
             <Capabilities SchemaVersion=\"1.0\"><Property Name=\"SSLState\" Value=\"0\" /></Capabilities>\
             <SiteCode>{site}</SiteCode></MP></MPList>"
        )),
        "MPKEYINFORMATION" => xml(format!(
            "<MPKEYINFORMATION><FQDN>{host}</FQDN><NAME>{netbios}</NAME><SITECODE>{site}</SITECODE>\
             <SIGNINGCERT>{cert_hex}</SIGNINGCERT><ENCRYPTIONCERT>{cert_hex}</ENCRYPTIONCERT></MPKEYINFORMATION>"
        )),
        "MPCERT" | "SITESIGNCERT" => Some(("text/plain", cert_hex.into_bytes())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_certificate_parses_with_our_verifier() {
        let id = MpIdentity::generate("mp1.example.com").unwrap();
        let cert = super::super::verify::parse_cert(&id.cert_der).unwrap();
        assert!(
            cert.subject().contains("mp1.example.com"),
            "{}",
            cert.subject()
        );
    }

    #[test]
    fn answers() {
        let config = MpConfig {
            site_code: "P01".into(),
            db_path: "unused".into(),
            approval: super::super::Approval::Auto,
            limits: Default::default(),
            mp_host: "mp1.example.com".into(),
            strict: false,
        };
        let id = MpIdentity::generate(&config.mp_host).unwrap();
        let (_, list) = answer("MPLIST", &config, &id).unwrap();
        let list = String::from_utf8(list).unwrap();
        assert!(
            list.contains("<SiteCode>P01</SiteCode>") && list.contains("FQDN=\"mp1.example.com\"")
        );
        let (_, cert) = answer("mpcert", &config, &id).unwrap();
        assert_eq!(hex::decode(cert).unwrap(), id.cert_der);
        let (_, keys) = answer("MPKEYINFORMATION", &config, &id).unwrap();
        assert!(String::from_utf8(keys)
            .unwrap()
            .contains("<SITECODE>P01</SITECODE>"));
        assert!(answer("NOPE", &config, &id).is_none());
    }
}
