//! The `policies`, `policy_assignments`, `policy_tampering` and `policy_fetches` tables:
//! published policies, who they are assigned to, bodies served in place of the published ones
//! (a test hook standing in for an attacker on the path), and the log of body downloads.

use super::{smsid_key, SiteDb};
use crate::mp::util::{new_message_id, utc_timestamp};
use anyhow::Context;
use rusqlite::{params, OptionalExtension};

/// Characters allowed in a policy ID (no `.`: the body location is `{id}.{version}`).
fn valid_policy_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"{}-_".contains(&b))
}

/// Characters allowed in a policy version (`1.00`, `2_00`, `7`).
fn valid_policy_version(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._".contains(&b))
}

/// Who a policy is assigned to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyTarget<'a> {
    /// One client (SMSID).
    Client(&'a str),
    /// Every client of the site.
    All,
}

/// A policy to publish and assign.
#[derive(Clone, Debug)]
pub struct NewPolicy<'a> {
    /// `[A-Za-z0-9{}_-]`, e.g. `{5C4D3A3E-…}`.
    pub policy_id: &'a str,
    /// `[A-Za-z0-9._]`, e.g. `1.00`.
    pub version: &'a str,
    pub target: PolicyTarget<'a>,
    /// `PolicyCategory`; `None` → [`DEFAULT_POLICY_CATEGORY`].
    pub category: Option<&'a str>,
    /// `PolicyFlags` bit mask (docs/protocol.md §5).
    pub flags: u32,
    /// The policy body XML served at `/SMS_MP/.sms_pol?{id}.{version}`.
    pub body: &'a str,
}

/// `PolicyCategory` of a policy added without one [profile].
pub const DEFAULT_POLICY_CATEGORY: &str = "Custom";
/// `PolicyType` of every policy the emulator serves (machine policy only) [profile].
pub const POLICY_TYPE: &str = "Machine";

/// One policy assignment with its policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRow {
    /// `{GUID}` upper case.
    pub assignment_id: String,
    pub policy_id: String,
    pub version: String,
    pub policy_type: String,
    pub category: String,
    pub flags: u32,
    /// `None`: assigned to every client.
    pub target_smsid: Option<String>,
    pub body: String,
    /// When the assignment was made.
    pub assigned_at: String,
}

impl PolicyRow {
    /// `{id}.{version}`: the query of the body's location.
    pub fn location_query(&self) -> String {
        format!("{}.{}", self.policy_id, self.version)
    }
}

/// One download of a policy body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFetchRow {
    pub id: i64,
    pub at: String,
    pub smsid: String,
    pub policy_id: String,
    pub version: String,
}

const POLICY_COLUMNS: &str = "a.assignment_id, p.policy_id, p.version, p.policy_type, \
     p.category, p.flags, a.target_smsid, p.body, a.created_at";

fn policy_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PolicyRow> {
    Ok(PolicyRow {
        assignment_id: r.get(0)?,
        policy_id: r.get(1)?,
        version: r.get(2)?,
        policy_type: r.get(3)?,
        category: r.get(4)?,
        flags: r.get(5)?,
        target_smsid: r.get(6)?,
        body: r.get(7)?,
        assigned_at: r.get(8)?,
    })
}

impl SiteDb {
    /// Publishes a policy (if new) and assigns it; returns the assignment ID (`{GUID}`). The
    /// same policy assigned to the same target again returns the existing assignment. A policy
    /// ID and version are immutable: publishing them again with another body, category or flags
    /// is refused (publish a new version instead).
    pub fn add_policy(&self, p: &NewPolicy<'_>) -> anyhow::Result<String> {
        anyhow::ensure!(
            valid_policy_id(p.policy_id),
            "policy ID {:?} must be 1-128 characters of A-Z a-z 0-9 {{ }} - _",
            p.policy_id
        );
        anyhow::ensure!(
            valid_policy_version(p.version),
            "policy version {:?} must be 1-32 characters of A-Z a-z 0-9 . _",
            p.version
        );
        let category = p.category.unwrap_or(DEFAULT_POLICY_CATEGORY);
        anyhow::ensure!(
            !category.is_empty()
                && category.len() <= 128
                && !category.chars().any(char::is_control),
            "policy category must be 1-128 printable characters"
        );
        anyhow::ensure!(
            p.body.trim_start().starts_with('<') && !p.body.contains('\0'),
            "the policy body must be XML text"
        );
        crate::mp::messages::check_no_dtd(p.body)
            .map_err(|e| anyhow::anyhow!("policy body: {e}"))?;
        let target = match p.target {
            PolicyTarget::All => None,
            PolicyTarget::Client(s) => {
                let key = smsid_key(s);
                let row = self
                    .client(&key)?
                    .with_context(|| format!("no client {key} in the site database"))?;
                Some(row.smsid)
            }
        };
        let existing: Option<(String, String, u32)> = self
            .conn
            .query_row(
                "SELECT body, category, flags FROM policies WHERE policy_id = ?1 AND version = ?2",
                params![p.policy_id, p.version],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        match existing {
            Some((body, cat, flags)) => anyhow::ensure!(
                body == p.body && cat == category && flags == p.flags,
                "policy {} version {} already exists with another body, category or flags; \
                 publish a new version",
                p.policy_id,
                p.version
            ),
            None => {
                self.conn.execute(
                    "INSERT INTO policies (policy_id, version, policy_type, category, flags, body, \
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        p.policy_id,
                        p.version,
                        POLICY_TYPE,
                        category,
                        p.flags,
                        p.body,
                        utc_timestamp()
                    ],
                )?;
            }
        }
        let assigned: Option<String> = self
            .conn
            .query_row(
                "SELECT assignment_id FROM policy_assignments WHERE policy_id = ?1 AND version = ?2 \
                 AND target_smsid IS ?3",
                params![p.policy_id, p.version, target],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = assigned {
            return Ok(id);
        }
        let id = new_message_id();
        self.conn.execute(
            "INSERT INTO policy_assignments (assignment_id, policy_id, version, target_smsid, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, p.policy_id, p.version, target, utc_timestamp()],
        )?;
        self.event(
            target.as_deref(),
            "policy-assigned",
            &format!(
                "{}.{} ({}) to {}",
                p.policy_id,
                p.version,
                id,
                target.as_deref().unwrap_or("all clients")
            ),
        )?;
        Ok(id)
    }

    /// Every policy assignment, oldest first.
    pub fn policies(&self) -> anyhow::Result<Vec<PolicyRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {POLICY_COLUMNS} FROM policy_assignments a JOIN policies p \
             ON p.policy_id = a.policy_id AND p.version = a.version ORDER BY a.rowid"
        ))?;
        let rows = st.query_map([], policy_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The assignments that apply to `smsid` (its own and those for every client), oldest first.
    pub fn policies_for(&self, smsid: &str) -> anyhow::Result<Vec<PolicyRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {POLICY_COLUMNS} FROM policy_assignments a JOIN policies p \
             ON p.policy_id = a.policy_id AND p.version = a.version \
             WHERE a.target_smsid IS NULL OR a.target_smsid = ?1 ORDER BY a.rowid"
        ))?;
        let rows = st.query_map([smsid_key(smsid)], policy_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Serves `body` in place of the published body of this policy (`None`: the published one
    /// again), while assignments keep announcing the published body's hash: what an attacker on
    /// the path would do, for tests that the client refuses it. False if no such policy.
    pub fn tamper_policy(
        &self,
        policy_id: &str,
        version: &str,
        body: Option<&str>,
    ) -> anyhow::Result<bool> {
        if !self.policy_exists(policy_id, version)? {
            return Ok(false);
        }
        match body {
            Some(b) => self.conn.execute(
                "INSERT OR REPLACE INTO policy_tampering (policy_id, version, body)                  VALUES (?1, ?2, ?3)",
                params![policy_id, version, b],
            )?,
            None => self.conn.execute(
                "DELETE FROM policy_tampering WHERE policy_id = ?1 AND version = ?2",
                params![policy_id, version],
            )?,
        };
        self.event(
            None,
            "policy-tampering",
            &format!(
                "{policy_id}.{version}: {}",
                if body.is_some() {
                    "a tampered body is served"
                } else {
                    "the published body is served again"
                }
            ),
        )?;
        Ok(true)
    }

    /// The body served in place of this policy's published one, if a test set one.
    pub fn tampered_body(&self, policy_id: &str, version: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT body FROM policy_tampering WHERE policy_id = ?1 AND version = ?2",
                params![policy_id, version],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// True if a policy with this ID and version exists (assigned or not).
    pub fn policy_exists(&self, policy_id: &str, version: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM policies WHERE policy_id = ?1 AND version = ?2",
                params![policy_id, version],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records that `smsid` downloaded a policy body (and logs a `policy-fetch` event).
    pub fn record_policy_fetch(
        &self,
        smsid: &str,
        policy_id: &str,
        version: &str,
    ) -> anyhow::Result<()> {
        if let Some(w) = &self.writer {
            let (s, p, v) = (smsid.to_owned(), policy_id.to_owned(), version.to_owned());
            return w.run(move |db| db.record_policy_fetch(&s, &p, &v));
        }
        self.conn.execute(
            "INSERT INTO policy_fetches (at, smsid, policy_id, version) VALUES (?1, ?2, ?3, ?4)",
            params![utc_timestamp(), smsid, policy_id, version],
        )?;
        self.event(
            Some(smsid),
            "policy-fetch",
            &format!("{policy_id}.{version}"),
        )
    }

    /// Every policy body download, oldest first.
    pub fn policy_fetches(&self) -> anyhow::Result<Vec<PolicyFetchRow>> {
        let mut st = self
            .conn
            .prepare("SELECT id, at, smsid, policy_id, version FROM policy_fetches ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(PolicyFetchRow {
                id: r.get(0)?,
                at: r.get(1)?,
                smsid: r.get(2)?,
                policy_id: r.get(3)?,
                version: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
