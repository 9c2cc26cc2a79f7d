//! Native mode through the command line, as the README shows it: `pki init`, `pki issue`,
//! `mp serve --tls-cert …`, `client register --mode native …`, `pki revoke`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn sim<S: AsRef<std::ffi::OsStr>>(args: &[S], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mpagent-sim"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("mpagent-sim runs")
}

/// `client COMMAND` in native mode: device `name` with the certificate and key `pki issue` made
/// for it, against the MP at `url` for site `site`, its state in `state`.
fn native_client(command: &str, url: &str, site: &str, state: &str, name: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "client",
        command,
        "--mp",
        url,
        "--site-code",
        site,
        "--state",
        state,
        "--name",
        name,
        "--mode",
        "native",
        "--ca",
        "pki/ca.pem",
    ]
    .map(String::from)
    .into();
    args.extend([
        "--cert".into(),
        format!("pki/{name}.pem"),
        "--key-file".into(),
        format!("pki/{name}.key.pem"),
    ]);
    args
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A child process that is ended when the test ends, also when it fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The MP in native mode on a free port; returns the process and its URL.
fn serve(dir: &Path) -> (Running, String) {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_mpagent-sim"))
            .args([
                "mp",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db",
                "site.db",
                "--site-code",
                "PS1",
                "--tls-cert",
                "pki/mp.test.pem",
                "--tls-key",
                "pki/mp.test.key.pem",
                "--client-ca",
                "pki/ca.pem",
                "--crl",
                "pki/crl.pem",
            ])
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mp serve starts"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("MP emulator listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    (child, url)
}

#[test]
fn native_mode_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |args: &[&str]| {
        let o = sim(args, d);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        text(&o)
    };
    ok(&["pki", "init", "--dir", "pki"]);
    ok(&[
        "pki",
        "issue",
        "--dir",
        "pki",
        "--cn",
        "mp.test",
        "--kind",
        "server",
        "--dns",
        "127.0.0.1",
    ]);
    ok(&[
        "pki", "issue", "--dir", "pki", "--cn", "PRN-1", "--kind", "device",
    ]);
    ok(&[
        "pki", "issue", "--dir", "pki", "--cn", "PRN-2", "--kind", "device",
    ]);
    // PRN-2 is revoked before the MP starts (it reads the CRL at start).
    ok(&["pki", "revoke", "--dir", "pki", "--cert", "pki/PRN-2.pem"]);
    let (mp, url) = serve(d);
    // One attempt: a refusal is final.
    let register_at = |url: &str, name: &str| {
        let mut args = native_client("register", url, "PS1", &format!("state-{name}"), name);
        args.extend(["--max-failures".into(), "1".into()]);
        sim(&args, d)
    };
    let register = |name: &str| register_at(&url, name);

    let first = register("PRN-1");
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("registered GUID:"),
        "{}",
        text(&first)
    );
    let revoked = register("PRN-2");
    assert!(!revoked.status.success(), "{}", text(&revoked));

    // Start-up validation: native mode without the certificate files.
    let o = sim(
        &[
            "client",
            "register",
            "--mp",
            &url,
            "--site-code",
            "PS1",
            "--state",
            "s3",
            "--mode",
            "native",
        ],
        d,
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("native mode needs"), "{}", text(&o));

    let rejections = ok(&["mp", "rejections", "--db", "site.db"]);
    assert!(rejections.contains("Revoked"), "{rejections}");
    let clients = ok(&["mp", "clients", "--db", "site.db"]);
    assert!(
        clients.contains("PRN-1") && !clients.contains("PRN-2"),
        "{clients}"
    );

    // A device configured for another site is stopped before it registers, over TLS too, by
    // `register` and by `run` alike.
    for command in ["register", "run"] {
        let mut args = native_client(command, &url, "PS2", "state-wrong", "PRN-1");
        if command == "run" {
            args.push("--once".into());
        }
        let wrong = sim(&args, d);
        assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
        assert!(
            text(&wrong).contains("--site-code PS2: the MP at")
                && text(&wrong).contains("serves site PS1"),
            "{}",
            text(&wrong)
        );
    }

    // A stored registration is confirmed with the site, not taken on trust.
    let again = register("PRN-1");
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("Confirmation message"),
        "{}",
        text(&again)
    );
    // Revoked after it registered: the next `register` reaches the MP, is refused, and says so
    // with its exit code.
    ok(&["pki", "revoke", "--dir", "pki", "--cert", "pki/PRN-1.pem"]);
    drop(mp);
    let (mp, url2) = serve(d);
    let revoked_later = register_at(&url2, "PRN-1");
    assert!(!revoked_later.status.success(), "{}", text(&revoked_later));
    assert!(
        text(&revoked_later).contains("registration failed"),
        "{}",
        text(&revoked_later)
    );
    drop(mp);
}
