//! The `clients` and `imported_certs` tables: registered clients with their approval state, and
//! the certificates an administrator imported for ISV proxies.

use super::{own, SiteDb};
use crate::mp::util::{new_smsid, utc_timestamp};
use crate::mp::verify;
use anyhow::Context;
use rusqlite::{params, OptionalExtension};

/// Approval state of a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientStatus {
    Approved,
    Pending,
    Rejected,
}

impl ClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Approved => "approved",
            ClientStatus::Pending => "pending",
            ClientStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<ClientStatus> {
        match s {
            "approved" => Ok(ClientStatus::Approved),
            "pending" => Ok(ClientStatus::Pending),
            "rejected" => Ok(ClientStatus::Rejected),
            other => Err(rusqlite::Error::InvalidColumnType(
                0,
                format!("status {other}"),
                rusqlite::types::Type::Text,
            )),
        }
    }
}

/// One registered client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    pub smsid: String,
    pub cert_der: Vec<u8>,
    pub cert_sha256: String,
    pub agent_type: u8,
    pub netbios_name: Option<String>,
    pub fqdn: Option<String>,
    pub hash_algorithm: Option<String>,
    pub status: ClientStatus,
    pub registered_by_proxy: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
}

/// A new client to record.
#[derive(Clone, Debug)]
pub struct NewClient<'a> {
    pub smsid: &'a str,
    pub cert_der: &'a [u8],
    pub agent_type: u8,
    pub netbios_name: Option<&'a str>,
    pub fqdn: Option<&'a str>,
    pub hash_algorithm: Option<&'a str>,
    pub status: ClientStatus,
    pub registered_by_proxy: Option<&'a str>,
}

/// What [`SiteDb::insert_client`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Inserted {
    /// The client was recorded.
    New,
    /// Nothing written: the certificate (`cert_sha256`) or the SMSID is taken already.
    Conflict,
}

/// A UNIQUE or PRIMARY KEY constraint failed (other constraints, e.g. foreign keys, are errors).
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// A certificate imported by the administrator (an ISV proxy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedCertRow {
    pub smsid: String,
    pub cert_der: Vec<u8>,
    pub cert_sha256: String,
    pub subject: String,
    pub blocked: bool,
    pub imported_at: String,
}

const CLIENT_COLUMNS: &str = "smsid, cert_der, cert_sha256, agent_type, netbios_name, fqdn, \
     hash_algorithm, status, registered_by_proxy, first_seen, last_seen";

fn client_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok(ClientRow {
        smsid: r.get(0)?,
        cert_der: r.get(1)?,
        cert_sha256: r.get(2)?,
        agent_type: r.get(3)?,
        netbios_name: r.get(4)?,
        fqdn: r.get(5)?,
        hash_algorithm: r.get(6)?,
        status: ClientStatus::parse(&r.get::<_, String>(7)?)?,
        registered_by_proxy: r.get(8)?,
        first_seen: r.get(9)?,
        last_seen: r.get(10)?,
    })
}

fn imported_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImportedCertRow> {
    Ok(ImportedCertRow {
        smsid: r.get(0)?,
        cert_der: r.get(1)?,
        cert_sha256: r.get(2)?,
        subject: r.get(3)?,
        blocked: r.get(4)?,
        imported_at: r.get(5)?,
    })
}

/// A [`NewClient`] that can be sent to the writer thread.
struct OwnedNewClient {
    smsid: String,
    cert_der: Vec<u8>,
    agent_type: u8,
    netbios_name: Option<String>,
    fqdn: Option<String>,
    hash_algorithm: Option<String>,
    status: ClientStatus,
    registered_by_proxy: Option<String>,
}

impl From<&NewClient<'_>> for OwnedNewClient {
    fn from(c: &NewClient<'_>) -> Self {
        OwnedNewClient {
            smsid: c.smsid.to_owned(),
            cert_der: c.cert_der.to_vec(),
            agent_type: c.agent_type,
            netbios_name: own(c.netbios_name),
            fqdn: own(c.fqdn),
            hash_algorithm: own(c.hash_algorithm),
            status: c.status,
            registered_by_proxy: own(c.registered_by_proxy),
        }
    }
}

impl OwnedNewClient {
    fn borrow(&self) -> NewClient<'_> {
        NewClient {
            smsid: &self.smsid,
            cert_der: &self.cert_der,
            agent_type: self.agent_type,
            netbios_name: self.netbios_name.as_deref(),
            fqdn: self.fqdn.as_deref(),
            hash_algorithm: self.hash_algorithm.as_deref(),
            status: self.status,
            registered_by_proxy: self.registered_by_proxy.as_deref(),
        }
    }
}

impl SiteDb {
    /// All clients, oldest first.
    pub fn clients(&self) -> anyhow::Result<Vec<ClientRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY first_seen, rowid"
        ))?;
        let rows = st.query_map([], client_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The client with this SMSID (compared case-insensitively).
    pub fn client(&self, smsid: &str) -> anyhow::Result<Option<ClientRow>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE smsid = ?1"
            ))?
            .query_row([smsid], client_from_row)
            .optional()?)
    }

    /// The client registered with this certificate (SHA-256 thumbprint, hex upper).
    pub fn client_by_thumbprint(&self, thumbprint: &str) -> anyhow::Result<Option<ClientRow>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE cert_sha256 = ?1"
            ))?
            .query_row([thumbprint], client_from_row)
            .optional()?)
    }

    /// Records a new client; [`Inserted::Conflict`] (nothing written) if a client with this
    /// certificate or SMSID exists already, e.g. a concurrent registration of the same certificate
    /// got there first between the caller's look-up and this insert.
    pub fn insert_client(&self, c: &NewClient<'_>) -> anyhow::Result<Inserted> {
        if let Some(w) = &self.writer {
            let c = OwnedNewClient::from(c);
            return w.run(move |db| db.insert_client_here(&c.borrow()));
        }
        if !self.conn.is_autocommit() {
            // Inside a write of the writer thread: its savepoint keeps client and event together.
            return self.insert_client_here(c);
        }
        // The client and its "registered" event in one transaction: one commit, not two (each
        // commit is a WAL append and a lock round), and never a client without its event.
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let inserted = self.insert_client_here(c)?;
        if inserted == Inserted::New {
            tx.commit()?;
        }
        Ok(inserted)
    }

    /// [`insert_client`](Self::insert_client) inside the caller's transaction or savepoint.
    fn insert_client_here(&self, c: &NewClient<'_>) -> anyhow::Result<Inserted> {
        let now = utc_timestamp();
        let inserted = self
            .conn
            .prepare_cached(&format!(
                "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)"
            ))?
            .execute(params![
                c.smsid,
                c.cert_der,
                verify::thumbprint(c.cert_der),
                c.agent_type,
                c.netbios_name,
                c.fqdn,
                c.hash_algorithm,
                c.status.as_str(),
                c.registered_by_proxy,
                now
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(Inserted::Conflict),
            Err(e) => return Err(e.into()),
        }
        self.event(
            Some(c.smsid),
            "registered",
            &format!("agent type {}, {}", c.agent_type, c.status.as_str()),
        )?;
        Ok(Inserted::New)
    }

    /// Updates last-seen time and names of a client that registered again.
    pub fn touch_client(
        &self,
        smsid: &str,
        netbios: Option<&str>,
        fqdn: Option<&str>,
    ) -> anyhow::Result<()> {
        if let Some(w) = &self.writer {
            let (smsid, netbios, fqdn) = (smsid.to_owned(), own(netbios), own(fqdn));
            return w.run(move |db| db.touch_client(&smsid, netbios.as_deref(), fqdn.as_deref()));
        }
        self.conn
            .prepare_cached(
                "UPDATE clients SET last_seen = ?2, netbios_name = COALESCE(?3, netbios_name), \
                 fqdn = COALESCE(?4, fqdn) WHERE smsid = ?1",
            )?
            .execute(params![smsid, utc_timestamp(), netbios, fqdn])?;
        Ok(())
    }

    fn set_status(&self, smsid: &str, status: ClientStatus) -> anyhow::Result<bool> {
        let n = self.conn.execute(
            "UPDATE clients SET status = ?2 WHERE smsid = ?1",
            params![smsid.trim(), status.as_str()],
        )?;
        if n > 0 {
            self.event(Some(smsid.trim()), status.as_str(), "by administrator")?;
        }
        Ok(n > 0)
    }

    /// Approves a client; false if no client has this SMSID.
    pub fn approve(&self, smsid: &str) -> anyhow::Result<bool> {
        self.set_status(smsid, ClientStatus::Approved)
    }

    /// Blocks a client (its registrations and confirmations then get Status 3); false if unknown.
    pub fn reject(&self, smsid: &str) -> anyhow::Result<bool> {
        self.set_status(smsid, ClientStatus::Rejected)
    }

    /// Imports a certificate (DER) as the administrator does for an ISV proxy; returns the SMSID
    /// the site assigned to it. Importing the same certificate again returns the same SMSID.
    pub fn import_cert(&self, der: &[u8]) -> anyhow::Result<String> {
        let cert = verify::parse_cert(der).context("not a usable certificate")?;
        check_proxy_usage(der)?;
        if let Some(existing) = self.imported_by_thumbprint(&cert.thumbprint)? {
            return Ok(existing.smsid);
        }
        anyhow::ensure!(
            self.client_by_thumbprint(&cert.thumbprint)?.is_none(),
            "this certificate is already registered as an ordinary client"
        );
        let smsid = new_smsid();
        self.conn.execute(
            "INSERT INTO imported_certs (smsid, cert_der, cert_sha256, subject, imported_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![smsid, der, cert.thumbprint, cert.subject(), utc_timestamp()],
        )?;
        self.event(Some(&smsid), "imported", &cert.subject())?;
        Ok(smsid)
    }

    /// The imported certificate with this SMSID.
    pub fn imported_cert(&self, smsid: &str) -> anyhow::Result<Option<ImportedCertRow>> {
        // Cached: registration looks every certificate up here (a fresh prepare cost more
        // than the query).
        Ok(self
            .conn
            .prepare_cached(
                "SELECT smsid, cert_der, cert_sha256, subject, blocked, imported_at \
                 FROM imported_certs WHERE smsid = ?1",
            )?
            .query_row([smsid], imported_from_row)
            .optional()?)
    }

    /// The imported certificate with this thumbprint.
    pub fn imported_by_thumbprint(
        &self,
        thumbprint: &str,
    ) -> anyhow::Result<Option<ImportedCertRow>> {
        // Cached: registration looks every certificate up here (a fresh prepare cost more
        // than the query).
        Ok(self
            .conn
            .prepare_cached(
                "SELECT smsid, cert_der, cert_sha256, subject, blocked, imported_at \
                 FROM imported_certs WHERE cert_sha256 = ?1",
            )?
            .query_row([thumbprint], imported_from_row)
            .optional()?)
    }

    /// All imported certificates.
    pub fn imported_certs(&self) -> anyhow::Result<Vec<ImportedCertRow>> {
        let mut st = self.conn.prepare(
            "SELECT smsid, cert_der, cert_sha256, subject, blocked, imported_at \
             FROM imported_certs ORDER BY imported_at, rowid",
        )?;
        let rows = st.query_map([], imported_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// True if this SMSID is taken by a client or an imported certificate.
    pub fn smsid_in_use(&self, smsid: &str) -> anyhow::Result<bool> {
        Ok(self.client(smsid)?.is_some() || self.imported_cert(smsid)?.is_some())
    }
}

/// The extended key usage "SMS signing" (docs/protocol.md §7).
const EKU_SMS_SIGNING: &str = "1.3.6.1.4.1.311.101.2";
/// TLS client authentication (RFC 5280 §4.2.1.12).
const EKU_CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";

/// An ISV proxy's certificate signs messages as a client does: a CA certificate
/// (basicConstraints cA) or one whose extended key usages allow neither SMS signing nor TLS
/// client authentication (an MP's server certificate, say) is refused with the rule it breaks.
/// One without an EKU extension is unrestricted (RFC 5280) and accepted.
fn check_proxy_usage(der: &[u8]) -> anyhow::Result<()> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage};
    let cert = x509_cert::Certificate::from_der(der).context("not a usable certificate")?;
    let extensions = cert.tbs_certificate.extensions.unwrap_or_default();
    for ext in &extensions {
        match ext.extn_id.to_string().as_str() {
            "2.5.29.19" => {
                let bc = BasicConstraints::from_der(ext.extn_value.as_bytes())
                    .context("the certificate's basicConstraints extension is malformed")?;
                anyhow::ensure!(
                    !bc.ca,
                    "this is a CA certificate (basicConstraints cA=TRUE): import the ISV proxy's \
                     own certificate, not the CA that issued it"
                );
            }
            "2.5.29.37" => {
                let eku = ExtendedKeyUsage::from_der(ext.extn_value.as_bytes())
                    .context("the certificate's extendedKeyUsage extension is malformed")?;
                let usages: Vec<String> = eku.0.iter().map(ToString::to_string).collect();
                anyhow::ensure!(
                    usages
                        .iter()
                        .any(|u| u == EKU_SMS_SIGNING || u == EKU_CLIENT_AUTH),
                    "its extended key usages ({}) allow neither SMS signing ({EKU_SMS_SIGNING}) \
                     nor TLS client authentication ({EKU_CLIENT_AUTH}): an ISV proxy certificate \
                     needs one (is this the MP's server certificate?)",
                    usages.join(", ")
                );
            }
            _ => {}
        }
    }
    Ok(())
}
