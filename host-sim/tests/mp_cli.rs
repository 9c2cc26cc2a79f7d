//! The `mpagent-sim mp` administration commands against a site database.

use mpagent_sim::mp::cli::PolicyCommand;
use mpagent_sim::mp::db::{ClientStatus, SiteDb};
use mpagent_sim::mp::{run, MpCommand};
use std::str::FromStr;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::{Encode, EncodePem};

fn proxy_cert() -> x509_cert::Certificate {
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
    CertificateBuilder::new(
        // A self-signed end-entity certificate (CA:FALSE), as a client's is.
        Profile::Leaf {
            issuer: x509_cert::name::Name::from_str("CN=ISV Proxy").unwrap(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        x509_cert::serial_number::SerialNumber::from(9u32),
        x509_cert::time::Validity::from_now(std::time::Duration::from_secs(86_400)).unwrap(),
        x509_cert::name::Name::from_str("CN=ISV Proxy").unwrap(),
        spki,
        &key,
    )
    .unwrap()
    .build::<p256::ecdsa::DerSignature>()
    .unwrap()
}

#[tokio::test]
async fn admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("site.db");
    let cert = proxy_cert();
    let pem_path = dir.path().join("proxy.pem");
    let der_path = dir.path().join("proxy.cer");
    std::fs::write(
        &pem_path,
        cert.to_pem(x509_cert::der::pem::LineEnding::LF).unwrap(),
    )
    .unwrap();
    std::fs::write(&der_path, cert.to_der().unwrap()).unwrap();

    // A mistyped database is refused, not created empty.
    assert!(run(MpCommand::ImportCert {
        db: db.clone(),
        file: pem_path.clone(),
        create: false,
    })
    .await
    .is_err());
    assert!(!db.exists());
    run(MpCommand::ImportCert {
        db: db.clone(),
        file: pem_path,
        create: true,
    })
    .await
    .unwrap();
    run(MpCommand::ImportCert {
        db: db.clone(),
        file: der_path,
        create: false,
    })
    .await
    .unwrap();
    let imported = SiteDb::open(&db).unwrap().imported_certs().unwrap();
    assert_eq!(
        imported.len(),
        1,
        "PEM and DER of one certificate import once"
    );
    assert_eq!(imported[0].cert_der, cert.to_der().unwrap());
    assert!(imported[0].subject.contains("ISV Proxy"));

    let junk = dir.path().join("junk.cer");
    std::fs::write(&junk, b"not a certificate").unwrap();
    assert!(run(MpCommand::ImportCert {
        db: db.clone(),
        file: junk,
        create: false,
    })
    .await
    .is_err());

    let unknown = "GUID:00000000-0000-0000-0000-000000000000".to_string();
    assert!(run(MpCommand::Approve {
        db: db.clone(),
        smsid: unknown.clone()
    })
    .await
    .is_err());
    assert!(run(MpCommand::Reject {
        db: db.clone(),
        smsid: unknown
    })
    .await
    .is_err());

    // A client row to approve and block through the CLI.
    let smsid = "GUID:11111111-2222-4333-8444-555555555555";
    let inserted = SiteDb::open(&db)
        .unwrap()
        .insert_client(&mpagent_sim::mp::db::NewClient {
            smsid,
            cert_der: b"c",
            agent_type: 0,
            netbios_name: Some("DEV"),
            fqdn: None,
            hash_algorithm: None,
            status: ClientStatus::Pending,
            registered_by_proxy: None,
        })
        .unwrap();
    assert_eq!(inserted, mpagent_sim::mp::db::Inserted::New);
    run(MpCommand::Approve {
        db: db.clone(),
        smsid: smsid.to_ascii_lowercase(),
    })
    .await
    .unwrap();
    assert_eq!(
        SiteDb::open(&db)
            .unwrap()
            .client(smsid)
            .unwrap()
            .unwrap()
            .status,
        ClientStatus::Approved
    );
    run(MpCommand::Reject {
        db: db.clone(),
        smsid: smsid.into(),
    })
    .await
    .unwrap();
    assert_eq!(
        SiteDb::open(&db)
            .unwrap()
            .client(smsid)
            .unwrap()
            .unwrap()
            .status,
        ClientStatus::Rejected
    );
    run(MpCommand::Clients { db: db.clone() }).await.unwrap();
    run(MpCommand::Rejections { db }).await.unwrap();
}

#[tokio::test]
async fn policy_and_message_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("site.db");
    let smsid = "GUID:11111111-2222-4333-8444-555555555555";
    let inserted = SiteDb::open(&db)
        .unwrap()
        .insert_client(&mpagent_sim::mp::db::NewClient {
            smsid,
            cert_der: b"c",
            agent_type: 0,
            netbios_name: Some("DEV"),
            fqdn: None,
            hash_algorithm: None,
            status: ClientStatus::Approved,
            registered_by_proxy: None,
        })
        .unwrap();
    assert_eq!(inserted, mpagent_sim::mp::db::Inserted::New);
    // A UTF-16 body file (with BOM), assigned to one client; an inline body for all.
    let body_file = dir.path().join("policy.xml");
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(
        "<Policy>é</Policy>"
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    std::fs::write(&body_file, utf16).unwrap();
    let add =
        |id: &str, smsid: Option<&str>, body: Option<&str>, file: Option<&std::path::Path>| {
            MpCommand::Policy {
                command: PolicyCommand::Add {
                    db: db.clone(),
                    id: id.into(),
                    version: "1.00".into(),
                    smsid: smsid.map(Into::into),
                    all: smsid.is_none(),
                    category: Some("Appliance".into()),
                    flags: 2,
                    body_file: file.map(Into::into),
                    body: body.map(Into::into),
                },
            }
        };
    run(add(
        "{P1}",
        Some(&smsid.to_ascii_lowercase()),
        None,
        Some(&body_file),
    ))
    .await
    .unwrap();
    run(add("FLEET", None, Some("<Fleet/>"), None))
        .await
        .unwrap();
    // Unknown client, bad ID, missing file.
    assert!(run(add(
        "X",
        Some("GUID:00000000-0000-0000-0000-000000000000"),
        Some("<x/>"),
        None
    ))
    .await
    .is_err());
    assert!(run(add("a.b", None, Some("<x/>"), None)).await.is_err());
    assert!(
        run(add("Y", None, None, Some(&dir.path().join("missing.xml"))))
            .await
            .is_err()
    );
    run(MpCommand::Policy {
        command: PolicyCommand::List { db: db.clone() },
    })
    .await
    .unwrap();
    let rows = SiteDb::open(&db).unwrap().policies().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].body, "<Policy>é</Policy>");
    assert_eq!(rows[0].target_smsid.as_deref(), Some(smsid));
    assert_eq!((rows[0].category.as_str(), rows[0].flags), ("Appliance", 2));
    assert_eq!(rows[1].target_smsid, None);

    SiteDb::open(&db)
        .unwrap()
        .store_message(&mpagent_sim::mp::db::NewMessage {
            message_id: "{5DD100CD-DF1D-45F5-BA17-A327F43465F8}",
            smsid,
            endpoint: "MP_DdrEndpoint",
            kind: "ddr",
            via_proxy: None,
            sent_time: None,
            body: "<Report/>",
        })
        .unwrap();
    for (smsid, endpoint) in [
        (None, None),
        (Some(smsid.to_string()), Some("mp_ddrendpoint".to_string())),
    ] {
        run(MpCommand::Messages {
            db: db.clone(),
            smsid,
            endpoint,
        })
        .await
        .unwrap();
    }
}

/// `mp next-reply` and `mp policy tamper` name what they could not find.
#[tokio::test]
async fn next_reply_and_tamper_refuse_what_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("site.db");
    let e = run(MpCommand::NextReply {
        db: db.clone(),
        smsid: "GUID:00000000-0000-0000-0000-0000000000AB".into(),
        reply: mpagent_sim::mp::db::NextReply::CertificateReset,
    })
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("no client GUID:00000000-0000-0000-0000-0000000000AB"),
        "{e}"
    );
    let e = run(MpCommand::Policy {
        command: PolicyCommand::Tamper {
            db,
            id: "{P}".into(),
            version: "1.00".into(),
            body_file: None,
        },
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no policy {P} version 1.00"), "{e}");
}
