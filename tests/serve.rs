//! End-to-end tests of `scanaid serve` and `scanaid codes` as a user runs them: the real binary, the
//! bundled manuals and registry, a real SQLite file, HTTP on 127.0.0.1, and SIGTERM for shutdown.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scanaid(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scanaid"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the binary runs")
}

/// The bundled manuals' index, shared with the server crate's tests (same directory, so embeddings
/// computed by either are reused by the other).
fn bundled_index() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-e2e-index");
    let out = scanaid(&[
        "index",
        "--manuals",
        "manuals",
        "--index",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn codes_lists_every_printed_code_as_json() {
    let data = tempfile::tempdir().unwrap();
    let out = scanaid(&[
        "codes",
        "--data",
        data.path().to_str().unwrap(),
        "--json",
        "--public-url",
        "https://scan.example.org",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    assert_eq!(list.len(), 35, "every code of manuals/assets.toml");
    for entry in &list {
        let code = entry["code"].as_str().unwrap();
        assert_eq!(entry["kind"], "asset");
        assert!(entry["asset"].as_str().is_some_and(|a| !a.is_empty()));
        assert!(entry["placement"].as_str().is_some_and(|p| !p.is_empty()));
        assert_eq!(entry["url"], format!("https://scan.example.org/c/{code}"));
        assert!(code.len() >= 6 && code.chars().all(|c| c.is_ascii_alphanumeric()));
    }
    assert!(
        data.path().join("scanaid.db").is_file(),
        "the store is a real SQLite file"
    );
}

#[test]
fn serve_answers_scans_and_writes_every_event_before_exiting_on_sigterm() {
    // A copy: the server adds the demo patients' documents to its index, and the shared one is read
    // by other tests meanwhile. The copy's embedding cache means only those documents are embedded.
    let shared = bundled_index();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&shared, copy.path());
    let index = copy.path().to_path_buf();
    let data = tempfile::tempdir().unwrap();
    // As an install made under a usual umask would have them: anyone may enter.
    use std::os::unix::fs::PermissionsExt;
    let mode = |dir: &Path| std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    for dir in [data.path(), index.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_scanaid"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data",
            data.path().to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    let mut printed_password = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed_password |= line.contains("username admin, password ");
        if let Some(rest) = line.strip_prefix("scanaid listening on http://") {
            addr = Some(rest.split_whitespace().next().unwrap().to_string());
            break;
        }
    }
    let addr = addr.expect("the server says where it listens");
    // The folders with patients' documents and conversations are closed to other users.
    assert_eq!(mode(data.path()), 0o700);
    assert_eq!(mode(&index), 0o700);
    assert!(
        printed_password,
        "first start prints the demo admin's password once"
    );

    let agent = ureq::AgentBuilder::new().redirects(0).build();
    for _ in 0..25 {
        let r = agent
            .get(&format!("http://{addr}/c/tJ6bpUpB"))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(child.wait().unwrap().success());
    assert!(
        rest.iter()
            .any(|l| l.contains("every scan event was written")),
        "{rest:?}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let n = runtime.block_on(async {
        let store = scanaid_server::store::Store::open(data.path())
            .await
            .unwrap();
        store.count_scan_events().await.unwrap()
    });
    assert_eq!(n, 25, "no scan event lost on shutdown");

    // A second start keeps the store: no new admin password, same events.
    let again = Command::new(env!("CARGO_BIN_EXE_scanaid"))
        .args(["codes", "--data", data.path().to_str().unwrap()])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(again.status.success());
    // Without --public-url, the codes' links reach the server that last ran on this data.
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(&format!("http://{addr}/c/tJ6bpUpB")),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    // The demo discharge packets: listed as kind "discharge", their second factors only in the
    // private demo file (never printed).
    let demo = data.path().join("demo-patients.txt");
    let text = std::fs::read_to_string(&demo).expect("the demo file is written on first start");
    assert_eq!(text.matches("PIN ").count(), 3, "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&demo).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(!rest.iter().any(|l| l.contains("PIN")));
    let json = Command::new(env!("CARGO_BIN_EXE_scanaid"))
        .args(["codes", "--json", "--data", data.path().to_str().unwrap()])
        .current_dir(repo())
        .output()
        .unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    let discharge: Vec<&serde_json::Value> =
        list.iter().filter(|c| c["kind"] == "discharge").collect();
    assert_eq!(discharge.len(), 3);
    for c in discharge {
        let code = c["code"].as_str().unwrap();
        assert!(code.len() >= 22, "at least 128 bits: {code}");
        assert!(text.contains(code));
        assert!(c["asset"].is_null());
    }
}

#[test]
fn a_sole_administrator_locked_out_gets_a_new_password_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    // No store yet: said, and none is made.
    let none = scanaid(&["users", "list", "--data", d]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no store at"));
    assert!(!data
        .path()
        .join(scanaid_server::store::DATABASE_FILE)
        .exists());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let old = "the forgotten password";
    runtime.block_on(async {
        let store = scanaid_server::store::Store::open(data.path())
            .await
            .unwrap();
        scanaid_server::auth::create_user(&store, "boss", old, scanaid_server::roles::Role::Admin)
            .await
            .unwrap();
        store.close().await;
    });
    let listed = scanaid(&["users", "list", "--data", d]);
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).starts_with("boss\tadmin\t"));

    let reset = scanaid(&["users", "reset-password", "--username", "Boss", "--data", d]);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let out = String::from_utf8_lossy(&reset.stdout).to_string();
    let new = out
        .lines()
        .find_map(|l| l.strip_prefix("new password for boss: "))
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .to_string();
    assert!(new.len() >= 12, "{new}");
    runtime.block_on(async {
        let store = scanaid_server::store::Store::open(data.path())
            .await
            .unwrap();
        assert!(scanaid_server::auth::sign_in(&store, "boss", old)
            .await
            .unwrap()
            .is_none());
        assert!(scanaid_server::auth::sign_in(&store, "boss", &new)
            .await
            .unwrap()
            .is_some());
        store.close().await;
    });
    let nobody = scanaid(&[
        "users",
        "reset-password",
        "--username",
        "nobody",
        "--data",
        d,
    ]);
    assert!(!nobody.status.success());
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("there is no user \"nobody\""));
}

#[test]
fn rules_explain_says_which_rule_fires_and_why_the_others_did_not() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let check = scanaid(&["rules", "check", "--data", d]);
    assert!(
        check.status.success(),
        "the bundled rules have no dead rule: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    // A rule scoped to a site the registry does not have is reported, not silently dead.
    let manuals = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("manuals"), manuals.path());
    let rules = manuals.path().join("rules.toml");
    let text = std::fs::read_to_string(&rules).unwrap();
    assert!(text.contains("site = \"mercy-general\""));
    std::fs::write(
        &rules,
        text.replacen("site = \"mercy-general\"", "site = \"mercy-generl\"", 1),
    )
    .unwrap();
    let other_data = tempfile::tempdir().unwrap();
    let typo = scanaid(&[
        "rules",
        "check",
        "--data",
        other_data.path().to_str().unwrap(),
        "--manuals",
        manuals.path().to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&typo.stdout);
    assert_eq!(typo.status.code(), Some(2), "{out}");
    assert!(
        out.contains("it is scoped to site \"mercy-generl\", which the registry does not have"),
        "{out}"
    );
    let evening = scanaid(&[
        "rules",
        "explain",
        "--data",
        d,
        "--code",
        "tJ6bpUpB",
        "--role",
        "anonymous",
        "--at",
        "2026-11-24 20:30",
    ]);
    let text = String::from_utf8_lossy(&evening.stdout);
    assert!(evening.status.success(), "{text}");
    assert!(text.contains("mercy-after-hours: fired (role is anonymous, Biomedical Engineering is closed at Tue 20:30 America/Chicago (hours Mon-Fri 07:00-18:00))"), "{text}");
    assert!(
        text.contains("=> rule mercy-after-hours: the on-call page"),
        "{text}"
    );
    let morning = scanaid(&[
        "rules",
        "explain",
        "--data",
        d,
        "--code",
        "tJ6bpUpB",
        "--role",
        "technician",
        "--at",
        "2026-11-24T10:00:00-06:00",
    ]);
    let text = String::from_utf8_lossy(&morning.stdout);
    assert!(
        text.contains("mercy-after-hours: did not match (role is technician"),
        "{text}"
    );
    assert!(
        text.contains("kestrel-off-shift: not for this code (site kestrel-plant-2)"),
        "{text}"
    );
    assert!(text.contains("=> default: the technician page"), "{text}");
    let unknown = scanaid(&["rules", "explain", "--data", d, "--code", "nope2345"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown code \"nope2345\""));
    let bad_time = scanaid(&[
        "rules", "explain", "--data", d, "--code", "tJ6bpUpB", "--at", "teatime",
    ]);
    assert!(!bad_time.status.success());
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("\"teatime\": use RFC 3339"));
}

#[test]
fn printed_labels_decode_to_their_code_url_with_a_real_qr_decoder() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let png = data.path().join("label.png");
    let out = scanaid(&[
        "qr",
        "--data",
        d,
        "--code",
        "tJ6bpUpB",
        "--out",
        png.to_str().unwrap(),
        "--public-url",
        "https://scan.mercy.example",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // zbarimg from Debian's zbar-tools (installed by .ci/run).
    let decoded = Command::new("zbarimg")
        .args(["--raw", "-q", png.to_str().unwrap()])
        .output()
        .expect("zbarimg is installed");
    assert!(
        decoded.status.success(),
        "zbarimg found no code: {}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&decoded.stdout).trim(),
        "https://scan.mercy.example/c/tJ6bpUpB"
    );

    let svg = data.path().join("label.svg");
    let out = scanaid(&[
        "qr",
        "--data",
        d,
        "--code",
        "tJ6bpUpB",
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("VP-300 infusion pump, ICU bed 7"));
    // The lines under the code, read in order (long ones wrap onto two).
    let shown: Vec<&str> = text
        .split("</text>")
        .filter_map(|piece| piece.rsplit_once('>').map(|(_, text)| text))
        .collect();
    let shown = shown.join(" ");
    assert!(
        shown.contains("Scan for manuals, fault codes and help"),
        "{shown}"
    );
    assert!(
        shown.contains("Help: Biomedical Engineering, ext. 4410, (555) 010-4410"),
        "the site's help number: {shown}"
    );

    let bad = scanaid(&[
        "qr",
        "--data",
        d,
        "--code",
        "nope2345",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown code"));
    let bad_ext = scanaid(&[
        "qr",
        "--data",
        d,
        "--code",
        "tJ6bpUpB",
        "--out",
        "label.gif",
    ]);
    assert!(String::from_utf8_lossy(&bad_ext.stderr).contains(".svg or .png"));
}

#[test]
fn a_port_in_use_fails_at_once_and_says_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let index = tempfile::tempdir().unwrap();
    let out = scanaid(&[
        "serve",
        "--addr",
        &addr,
        "--data",
        data.path().to_str().unwrap(),
        "--index",
        index.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is scanaid already running?") && stderr.contains("--addr"),
        "{stderr}"
    );
    // Refused before the slow steps: nothing was indexed into the empty index folder.
    assert_eq!(std::fs::read_dir(index.path()).unwrap().count(), 0);
}

#[test]
fn serving_on_every_interface_without_a_public_url_warns_before_anything_slow() {
    let data = tempfile::tempdir().unwrap();
    let index = tempfile::tempdir().unwrap();
    let (mut child, lines) = serve_reading_output("0.0.0.0:0", data.path(), index.path());
    let (warned, seen) = wait_for_line(&lines, |l| l.contains("no phone can open"), 60);
    child.kill().unwrap();
    child.wait().unwrap();
    let warned = warned.unwrap_or_else(|| panic!("no warning in {seen:?}"));
    assert!(warned.contains("--public-url"), "{warned}");
}

#[test]
fn an_index_this_scanaid_cannot_read_is_rebuilt_at_start() {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&bundled_index(), copy.path());
    // As an older scanaid would have left it: another format version.
    let current = std::fs::read_to_string(copy.path().join("CURRENT")).unwrap();
    let meta_path = copy
        .path()
        .join("generations")
        .join(current.trim())
        .join("meta.json");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    let older = meta.replacen("\"format_version\": ", "\"format_version\": 9", 1);
    assert_ne!(older, meta);
    std::fs::write(&meta_path, older).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (mut child, lines) = serve_reading_output("127.0.0.1:0", data.path(), copy.path());
    let (listening, seen) = wait_for_line(&lines, |l| l.starts_with("scanaid listening on"), 240);
    let listening = listening.is_some();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(listening, "the server did not start: {seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("cannot be used as it is") && l.contains("re-indexing")),
        "{seen:?}"
    );
}

/// A typo in `assets.toml` or `rules.toml` found at a restart does not take the labels offline:
/// the store's registry from the first start and the saved rules (none here) serve, and the
/// server says what it found. (Without an earlier start there is nothing to serve, and it fails.)
#[test]
fn a_broken_registry_or_rules_file_at_a_restart_still_serves_every_label() {
    let manuals = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("manuals"), manuals.path());
    let index = tempfile::tempdir().unwrap();
    copy_dir(&bundled_index(), index.path());
    let data = tempfile::tempdir().unwrap();
    let manuals_arg = manuals.path().to_str().unwrap();
    // What a first start leaves: the store with the registry (`codes` seeds it the same way).
    let seeded = scanaid(&[
        "codes",
        "--data",
        data.path().to_str().unwrap(),
        "--manuals",
        manuals_arg,
    ]);
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let assets = manuals.path().join("assets.toml");
    let mut broken = std::fs::read_to_string(&assets).unwrap();
    broken.push_str("\n[[site]]\nid = \n");
    std::fs::write(&assets, broken).unwrap();
    std::fs::write(
        manuals.path().join("rules.toml"),
        "[[rule]]\npage = \"nowhere\"\n",
    )
    .unwrap();

    let (mut child, lines) = serve_reading_output_with(
        "127.0.0.1:0",
        data.path(),
        index.path(),
        &["--manuals", manuals_arg],
    );
    let (listening, seen) = wait_for_line(&lines, |l| l.starts_with("scanaid listening on"), 240);
    let Some(listening) = listening else {
        child.kill().unwrap();
        panic!("the server did not start: {seen:?}");
    };
    let addr = listening
        .trim_start_matches("scanaid listening on http://")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let page = ureq::get(&format!("http://{addr}/c/tJ6bpUpB")).call();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(page.unwrap().status(), 200);
    let warned = |what: &str| {
        seen.iter()
            .any(|l| l.starts_with("warning:") && l.contains(what) && l.contains("serve"))
    };
    assert!(warned("assets.toml could not be read"), "{seen:?}");
    assert!(warned("rules.toml could not be read"), "{seen:?}");

    // A fresh data directory has no registry to fall back on: that start fails and says why.
    let fresh = tempfile::tempdir().unwrap();
    let (mut child, lines) = serve_reading_output_with(
        "127.0.0.1:0",
        fresh.path(),
        index.path(),
        &["--manuals", manuals_arg],
    );
    let (listening, seen) = wait_for_line(&lines, |l| l.starts_with("scanaid listening on"), 60);
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(listening.is_none() && !status.success(), "{seen:?}");
    assert!(
        seen.iter().any(|l| l.contains("asset registry")),
        "{seen:?}"
    );
}

/// `scanaid serve` on `addr` with `data` and `index`, its stdout and stderr lines arriving on one
/// channel (read on threads, so a line that never comes fails a test instead of hanging it).
fn serve_reading_output(
    addr: &str,
    data: &Path,
    index: &Path,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    serve_reading_output_with(addr, data, index, &[])
}

/// `serve_reading_output` with more arguments.
fn serve_reading_output_with(
    addr: &str,
    data: &Path,
    index: &Path,
    more: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scanaid"))
        .args([
            "serve",
            "--addr",
            addr,
            "--data",
            data.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ])
        .args(more)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    (child, rx)
}

/// The first line `wanted` accepts within `secs` seconds of silence, and every line before it.
fn wait_for_line(
    lines: &std::sync::mpsc::Receiver<String>,
    wanted: impl Fn(&str) -> bool,
    secs: u64,
) -> (Option<String>, Vec<String>) {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(std::time::Duration::from_secs(secs)) {
            Ok(line) if wanted(&line) => return (Some(line), seen),
            Ok(line) => seen.push(line),
            Err(_) => return (None, seen),
        }
    }
}
