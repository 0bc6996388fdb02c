//! The role page in a real headless Chromium (Debian's, installed by .ci/run) at a phone viewport,
//! 375x812, against the real server on 127.0.0.1. The screenshot is kept under target/tmp/screenshots.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let binary = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Chromium is installed (.ci/run installs Debian's chromium)");
    Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=375,812",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--user-agent={IPHONE}"),
        ])
        .args(args)
        .output()
        .expect("chromium runs")
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_operator_page_renders_at_phone_size_in_chromium() {
    let app = spawn_app();
    let url = app.url(&format!("/c/{PUMP_CODE}"));
    let profile = tempfile::tempdir().unwrap();

    let dom = chromium(&["--dump-dom", &url], profile.path());
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains("VP-300 infusion pump, ICU bed 7"),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(html.contains("Operator quick start"));

    let shot = screenshots_dir().join("pump-operator-375x812.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &[&format!("--screenshot={}", shot.display()), &url],
        profile.path(),
    );
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let (width, height) = (reader.info().width, reader.info().height);
    assert_eq!((width, height), (375, 812), "phone viewport");
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..frame.buffer_size()];
    let channels = frame.color_type.samples();
    let dark = bytes
        .chunks_exact(channels)
        .filter(|px| px[..3.min(channels)].iter().all(|&v| v < 80))
        .count();
    // Text and the dark header bar: a blank or unstyled page would have almost none.
    assert!(
        dark > 2_000,
        "only {dark} dark pixels: the page did not render"
    );

    // The scan by the browser was counted like any other, as an iPhone.
    app.flush_events();
    let devices = app.rows("SELECT DISTINCT device FROM scan_events");
    assert_eq!(devices, vec![vec!["ios"]]);
}

/// The whole path of a person who needs help, in two real browsers (chromium through
/// chromium-driver) at phone size: scan -> ask -> an answer with citations streams in -> tapping a
/// citation lands on the cited section -> back, "talk to a person" -> the ticket shows up live on
/// an agent's console in a second browser -> the agent replies -> the reply appears in the
/// person's chat without a reload.
#[test]
fn a_person_asks_follows_a_citation_escalates_and_sees_the_agents_reply_live() {
    use common::webdriver::Driver;
    use std::time::Duration;
    let wait = Duration::from_secs(60);

    let app = spawn_app();
    let password = "agent-browser-password";
    {
        let store = app.state.store.clone();
        app.block_on(async move {
            scanaid_server::auth::create_user(
                &store,
                "agent-b",
                password,
                scanaid_server::roles::Role::Agent,
            )
            .await
        })
        .unwrap();
    }
    let driver = Driver::start();
    let person = driver.phone(375, 812, IPHONE);
    let agent = driver.phone(414, 896, ANDROID);

    // The agent signs in and watches the queue.
    agent.goto(&app.url("/signin"));
    agent.wait_for("#username", wait).type_text("agent-b");
    agent.wait_for("#password", wait).type_text(password);
    agent.wait_for("form button[type=submit]", wait).click();
    agent.wait_for("header .top, header.top", wait);
    agent.goto(&app.url("/support"));
    agent.wait_for("#tickets", wait);

    // The person scans, asks, and the answer streams in with its citations.
    person.goto(&app.url(&format!("/c/{PUMP_CODE}")));
    person
        .wait_for("#q", wait)
        .type_text("how do I clean the pump");
    person
        .wait_for("form.ask button[type=submit]", wait)
        .click();
    let cite = person.wait_for("#chat-log .turn .sentence a.cite", wait);
    assert!(!person.find_all("#chat-log .sources li a").is_empty());
    let href = cite
        .attribute("href")
        .expect("a citation links to its section");
    let anchor = href.split_once('#').expect("to an anchor").1.to_string();
    assert!(
        person.current_url().contains(&format!("/c/{PUMP_CODE}")),
        "no page load: the answer came by script"
    );

    // Tapping the citation lands on that section of the manual, in view.
    cite.click();
    person.wait_for(&format!("[id='{anchor}']"), wait);
    assert!(person.current_url().ends_with(&format!("#{anchor}")));
    let top = person
        .run(&format!(
            "return document.getElementById({anchor:?}).getBoundingClientRect().top;"
        ))
        .as_f64()
        .unwrap();
    assert!(
        (-2.0..400.0).contains(&top),
        "the cited section is scrolled into view (top at {top}px)"
    );

    // Back on the asset's page, the person asks for a person.
    person.back();
    person.wait_for("#talk-to-person button", wait).click();
    let ticket_note = person.wait_for("#chat-log .ticket", wait);
    let ticket: i64 = ticket_note
        .text()
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a ticket number in {:?}", ticket_note.text()));

    // The agent's queue shows it without a reload; the agent opens it and replies.
    agent.wait_for(&format!("#ticket-{ticket} a"), wait).click();
    agent
        .wait_for("#reply", wait)
        .type_text("I can see the pump; a technician is coming to bed 7.");
    agent.wait_for("#send-reply", wait).click();
    agent.wait_for("#transcript .entry.agent", wait);

    // The person's chat shows the reply, still without a reload.
    let reply = person.wait_for("#chat-log .agent-reply .text", wait);
    assert_eq!(
        reply.text(),
        "I can see the pump; a technician is coming to bed 7."
    );
    assert!(person.current_url().contains(&format!("/c/{PUMP_CODE}")));

    let shot = screenshots_dir().join("chat-agent-reply-375x812.png");
    std::fs::write(&shot, person.screenshot_png()).unwrap();
}

/// A patient at home, on a phone, in Spanish: scan the packet's code, give date of birth and PIN,
/// read their own instructions, ask in Spanish and get an answer that cites their document. Then a
/// stranger with the same paper but wrong PINs ends at the lock.
#[test]
fn a_patient_opens_their_spanish_instructions_asks_and_a_stranger_is_locked_out() {
    use common::webdriver::Driver;
    use std::time::Duration;
    let wait = Duration::from_secs(60);
    let (app, demos, _index) = spawn_with_indexed_packets();
    let ana = demo(&demos, "Ana García");
    let driver = Driver::start();

    let phone = driver.phone(375, 812, IPHONE);
    phone.goto(&app.url(&format!("/c/{}", ana.code)));
    phone.wait_for("#verify", wait);
    assert_eq!(phone.run("return document.documentElement.lang;"), "es");
    // The date input's typing order depends on the browser's locale; the value is what matters.
    phone.run(&format!(
        "document.getElementById('dob').value = {:?}; return true;",
        ana.dob
    ));
    phone.wait_for("#pin", wait).type_text(&ana.pin);
    phone.submit_and_wait("#verify button[type=submit]", wait);
    let name = phone.wait_for("#patient-name", wait);
    assert_eq!(name.text(), "Ana García");
    assert!(phone
        .find_all(".document h2")
        .iter()
        .any(|h| h.text().contains("Indicaciones de su equipo")));

    phone
        .wait_for("form.ask #q", wait)
        .type_text("¿cuándo tengo la revisión de traumatología?");
    phone.wait_for("form.ask button[type=submit]", wait).click();
    let sentence = phone.wait_for("#patient-answer .sentence", wait);
    assert!(sentence.text().contains("día 10"), "{}", sentence.text());
    assert!(!phone
        .find_all("#patient-answer .sentence a.cite")
        .is_empty());
    let shot = screenshots_dir().join("patient-answer-es-375x812.png");
    std::fs::write(&shot, phone.screenshot_png()).unwrap();

    // A stranger's phone: five wrong PINs, then the lock and no form.
    let stranger = driver.phone(375, 812, ANDROID);
    stranger.goto(&app.url(&format!("/c/{}", ana.code)));
    let wrong = if ana.pin == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        stranger.wait_for("#verify", wait);
        stranger.run("document.getElementById('dob').value = '1990-01-01'; return true;");
        stranger.wait_for("#pin", wait).type_text(wrong);
        stranger.submit_and_wait("#verify button[type=submit]", wait);
        stranger.wait_for("#verify-error", wait);
    }
    let error = stranger.wait_for("#verify-error", wait).text();
    assert!(error.contains("bloqueadas"), "{error}");
    assert!(
        stranger.find_all("#verify").is_empty(),
        "no form on a locked packet"
    );
}
