//! `mpagent-sim proxy demo`: the ISV proxy flow with no setup. An in-process MP on a free
//! loopback port, a proxy's first run and export, the refusal before import, the
//! administrator's import, the proxy's registration, three constrained devices registered and
//! reporting through it, and a second proxy refused when it tries to speak for one of them.

use anyhow::{bail, Context, Result};

use super::client::{describe, run_device, DeviceOptions};
use super::protocol::Frame;
use super::registry::Registry;
use super::{export_cert, start, ProxyOptions};
use crate::mp::db::SiteDb;
use crate::mp::{Approval, Limits, MpConfig, MpServer};

/// Run the demo.
pub async fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db_path = dir.path().join("site.db");
    let mp = MpServer::start(
        MpConfig {
            site_code: "PS1".into(),
            db_path: db_path.clone(),
            approval: Approval::Auto,
            limits: Limits::default(),
            mp_host: "mp.demo.local".into(),
            strict: false,
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let url = format!("http://{}", mp.local_addr());
    println!("== ISV proxy demo: MP emulator at {url}, site PS1");
    let db = SiteDb::open(&db_path)?;

    println!("\n1. First run: the proxy makes its key and self-signed certificate and exports it");
    let state = dir.path().join("proxy");
    let cer = dir.path().join("proxy.cer");
    let e = export_cert(&state, &cer, "PROXY-1")?;
    println!(
        "   wrote proxy.cer ({} bytes DER) and proxy.pem",
        e.cert_der.len()
    );
    let mut opts = ProxyOptions::new(&url, "PS1", state.clone());
    opts.name = "PROXY-1".into();

    println!("\n2. Before the administrator imports it, the MP refuses the proxy");
    match start(opts.clone(), "127.0.0.1:0".parse()?).await {
        Ok(_) => bail!("an unimported proxy was accepted"),
        Err(e) => println!("   refused: {e:#}"),
    }

    println!("\n3. The administrator imports the certificate: mp import-cert");
    let proxy_smsid = db.import_cert(&e.cert_der)?;
    println!("   the site assigned the proxy {proxy_smsid}");

    println!(
        "\n4. The proxy registers itself (AgentType 4, signed with its key) and serves devices"
    );
    let proxy = start(opts, "127.0.0.1:0".parse()?).await?;
    println!(
        "   registered as {}; devices connect to {}",
        proxy.smsid(),
        proxy.local_addr()
    );

    println!("\n5. Three devices without crypto speak the compact protocol to the proxy");
    for i in 1..=3 {
        let opts = DeviceOptions {
            proxy: proxy.local_addr(),
            id: format!("dev-{i}"),
            name: format!("THING-{i}"),
            heartbeat: true,
            inventory: 3,
            status: i == 1,
            state: (i == 1).then(|| ("fw-update".to_string(), 2)),
            policy: i == 1,
        };
        println!("   device dev-{i} (THING-{i}):");
        let answers = run_device(&opts, &mut |what, f| {
            println!("     {what:<10} {}", describe(f))
        })
        .await?;
        if let Some((what, Frame::Error { text, .. })) = answers.last() {
            bail!("dev-{i} {what}: {text}");
        }
    }

    println!("\n6. At the MP: each device under its own SMSID, registered and signed by the proxy");
    for c in db.clients()? {
        if c.agent_type == 8 {
            let kinds: Vec<String> = db
                .messages(Some(&c.smsid))?
                .into_iter()
                .map(|m| format!("{}(via {})", m.kind, short(m.via_proxy.as_deref())))
                .collect();
            println!(
                "   {} {:<8} AgentType 8, registered by {}: {}",
                c.smsid,
                c.netbios_name.unwrap_or_default(),
                short(c.registered_by_proxy.as_deref()),
                kinds.join(", ")
            );
        }
    }

    println!(
        "\n7. A second (imported, registered) proxy handed dev-1's mapping is refused by the MP"
    );
    let state2 = dir.path().join("proxy2");
    let e2 = export_cert(&state2, &dir.path().join("proxy2.cer"), "PROXY-2")?;
    db.import_cert(&e2.cert_der)?;
    let mut opts2 = ProxyOptions::new(&url, "PS1", state2.clone());
    opts2.name = "PROXY-2".into();
    let proxy2 = start(opts2, "127.0.0.1:0".parse()?).await?;
    let record = Registry::open(&state)?
        .device("dev-1")?
        .context("dev-1 is not in the first proxy's registry")?;
    Registry::open(&state2)?.put(record).await?;
    let opts = DeviceOptions {
        proxy: proxy2.local_addr(),
        id: "dev-1".into(),
        name: "THING-1".into(),
        heartbeat: false,
        inventory: 0,
        status: false,
        state: None,
        policy: false,
    };
    run_device(&opts, &mut |what, f| {
        println!("     {what:<10} {}", describe(f))
    })
    .await?;
    if let Some(r) = db.rejections()?.last() {
        println!("   MP's reason: {}", r.reason);
    }

    tokio::task::spawn_blocking(move || {
        proxy.shutdown();
        proxy2.shutdown();
    })
    .await?;
    mp.shutdown().await;
    println!("\nDone.");
    Ok(())
}

fn short(smsid: Option<&str>) -> String {
    smsid
        .map(|s| s.chars().take(13).collect::<String>() + "…")
        .unwrap_or_else(|| "-".into())
}
