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
    // Waits for the page the sign-in leads to: going on while the form's POST is in flight cancels it
    // (a CI run under load went to /support unsigned and was sent back to /signin).
    agent.submit_and_wait("form button[type=submit]", wait);
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
    // A citation marker is a tap target of at least 24 x 24 px (WCAG 2.2).
    let size = person.run(
        "var r = document.querySelector('#chat-log .turn .sentence a.cite').getBoundingClientRect(); return [r.width, r.height];",
    );
    let (w, h) = (size[0].as_f64().unwrap(), size[1].as_f64().unwrap());
    assert!(w >= 24.0 && h >= 24.0, "citation marker {w} x {h} px");
    let href = cite
        .attribute("href")
        .expect("a citation links to its section");
    let anchor = href.split_once('#').expect("to an anchor").1.to_string();
    assert!(
        person.current_url().contains(&format!("/c/{PUMP_CODE}")),
        "no page load: the answer came by script"
    );
    // Each message goes with a random request id, which a retry after a lost answer sends again.
    let ids = app.rows("SELECT request_id FROM chat_turns");
    assert!(
        ids.len() == 1 && ids[0][0].len() == 32 && ids[0][0].bytes().all(|b| b.is_ascii_hexdigit()),
        "{ids:?}"
    );
    // The conversation can be left at once, and the button is back for the next question.
    person.wait_for("#new-conversation", wait);
    assert_eq!(
        person.run("return document.querySelector('form.ask button[type=submit]').disabled;"),
        serde_json::Value::Bool(false)
    );
    // A question that does not go through (here too long: refused with 4xx) says so and is put
    // back in the box, not lost.
    let long = "x".repeat(1001);
    person.run(&format!(
        "document.getElementById('q').value = {long:?}; document.querySelector('form.ask button[type=submit]').click();"
    ));
    person.wait_for("#chat-log .turn .failed", wait);
    person.wait_for_value("#q", &long, wait);
    person.run("document.getElementById('q').value = '';");

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

    // Back on the asset's page, the person asks for a person, leaving a number to call back.
    person.back();
    person
        .wait_for("#person-contact", wait)
        .type_text("+1 555 0100");
    person.wait_for("#talk-to-person button", wait).click();
    let ticket_note = person.wait_for("#chat-log .ticket", wait);
    let ticket: i64 = ticket_note
        .text()
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a ticket number in {:?}", ticket_note.text()));
    // With the ticket open, the person form stays, now only for a phone or email to call back
    // (someone may close the page before the agent answers).
    assert_eq!(
        person.wait_for("#talk-to-person button", wait).text(),
        "Send for a call back"
    );

    // The agent's queue shows it without a reload; the agent opens it and replies.
    let row_link = agent.wait_for(&format!("#ticket-{ticket} a"), wait);
    // The tab's title counts who is waiting, for a console in a background tab.
    let title = agent.run("return document.title;");
    assert!(
        title.as_str().is_some_and(|t| t.starts_with('(')),
        "{title:?}"
    );
    row_link.click();
    agent
        .wait_for("#reply", wait)
        .type_text("I can see the pump; a technician is coming to bed 7.");
    agent.wait_for("#send-reply", wait).click();
    agent.wait_for("#transcript .entry.agent", wait);
    // Replying took the ticket: the page offers to let go of it.
    agent.wait_for_text("#ticket-agent", "you", wait);
    agent.wait_for("#release-form", wait);
    // A colleague takes it over. The open page says so at once and puts its let-go form away,
    // which acted on who had the ticket when the page was drawn.
    let colleague = staff_cookie(&app, "agent-c", scanaid_server::roles::Role::Agent);
    let colleague_page = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &colleague)],
    );
    let taken = post_form(
        &app.url(&format!("/support/tickets/{ticket}/take")),
        &[("cookie", &colleague)],
        &[
            ("csrf", &colleague_page.hidden("csrf").unwrap()),
            ("expected", "agent-b"),
        ],
    );
    assert_eq!(taken.status, 303, "{}", taken.body);
    agent.wait_for_text(
        "#ticket-agent",
        "agent-c (changed since this page opened: reload to take or let go of it)",
        wait,
    );
    assert_eq!(
        agent.run("return getComputedStyle(document.getElementById('release-form')).display;"),
        "none"
    );

    // The person's chat shows the reply, still without a reload.
    let reply = person.wait_for("#chat-log .agent-reply .text", wait);
    assert_eq!(
        reply.text(),
        "I can see the pump; a technician is coming to bed 7."
    );
    assert!(person.current_url().contains(&format!("/c/{PUMP_CODE}")));

    // The phone reloads the page (or dropped the tab): the conversation comes back, with the
    // agent's reply and the ticket, and the next reply still arrives live.
    person.goto(&app.url(&format!("/c/{PUMP_CODE}")));
    let restored = person.wait_for("#chat-log .agent-reply .text", wait);
    assert_eq!(
        restored.text(),
        "I can see the pump; a technician is coming to bed 7."
    );
    assert!(person
        .find_all("#chat-log .turn .meta")
        .iter()
        .any(|m| m.text().contains("how do I clean the pump")));
    assert!(!person
        .find_all("#chat-log .turn .sentence a.cite")
        .is_empty());
    person.wait_for("#chat-log .ticket", wait);
    agent
        .wait_for("#reply", wait)
        .type_text("The technician is at the lift now.");
    agent.wait_for("#send-reply", wait).click();
    person.wait_for_text(
        "#chat-log .agent-reply:last-child .text",
        "The technician is at the lift now.",
        wait,
    );
    // The person leaves a number for a call back. The agent's open page shows it and the message
    // at once, and its reply and close forms now count that message as read.
    let seen_input = "return document.querySelector('#close-form input[name=seen]').value;";
    let seen_before = agent.run(seen_input);
    person
        .wait_for("#person-contact", wait)
        .type_text("+34 600 555 666");
    person.wait_for("#talk-to-person button", wait).click();
    agent.wait_for_text("#ticket-contact", "+34 600 555 666", wait);
    agent.wait_for("#transcript .entry.person.live", wait);
    let seen_after = agent.run(seen_input);
    let latest_turn = app.rows(&format!(
        "SELECT MAX(c.id) FROM chat_turns c JOIN tickets t ON t.conversation_id = c.conversation_id WHERE t.id = {ticket}"
    ))[0][0]
        .clone();
    assert_ne!(seen_after, seen_before);
    assert_eq!(seen_after.as_str(), Some(latest_turn.as_str()));
    assert_eq!(
        agent.run("return document.querySelector('#reply-form input[name=seen]').value;"),
        seen_after
    );
    // Closed too soon: the chat says it closed and offers a person again; the colleague reopens
    // it, and the chat, still listening, says so, asks for a call-back number again, and shows
    // the next reply, all without a reload.
    let colleague_csrf = colleague_page.hidden("csrf").unwrap();
    let ticket_action = |action: &str, form: &[(&str, &str)]| {
        let done = post_form(
            &app.url(&format!("/support/tickets/{ticket}/{action}")),
            &[("cookie", &colleague)],
            form,
        );
        assert_eq!(done.status, 303, "{action}: {}", done.body);
    };
    ticket_action("close", &[("csrf", &colleague_csrf)]);
    person.wait_for("#chat-log .closed", wait);
    assert_eq!(
        person.wait_for("#talk-to-person button", wait).text(),
        "Talk to a person"
    );
    ticket_action("reopen", &[("csrf", &colleague_csrf)]);
    person.wait_for("#chat-log .reopened", wait);
    assert_eq!(
        person.wait_for("#talk-to-person button", wait).text(),
        "Send for a call back"
    );
    ticket_action(
        "reply",
        &[
            ("csrf", &colleague_csrf),
            ("body", "Reopened: is the pump running again?"),
        ],
    );
    person.wait_for_text(
        "#chat-log .agent-reply:last-child .text",
        "Reopened: is the pump running again?",
        wait,
    );
    // One note each, however often the stream reconnected meanwhile.
    assert_eq!(person.find_all("#chat-log .closed").len(), 1);
    assert_eq!(person.find_all("#chat-log .reopened").len(), 1);

    // Starting over while the ticket is open asks first (the agent's reply would go unseen); a
    // "no" keeps the conversation.
    person.run("window.confirm = function (m) { window.__asked = m; return false; }; return true;");
    person.wait_for("#new-conversation", wait).click();
    let asked = person.run("return window.__asked || null;");
    assert!(
        asked
            .as_str()
            .is_some_and(|m| m.contains(&format!("ticket {ticket}"))),
        "{asked:?}"
    );
    assert!(!person.find_all("#chat-log .turn").is_empty());
    // Starting over leaves the conversation, and a reload no longer brings it back.
    person.run("window.confirm = function () { return true; }; return true;");
    person.wait_for("#new-conversation", wait).click();
    assert!(person.find_all("#chat-log .turn").is_empty());
    person.goto(&app.url(&format!("/c/{PUMP_CODE}")));
    person.wait_for("#q", wait);
    assert_eq!(
        person.run("return sessionStorage.length;"),
        0,
        "nothing kept to restore after starting over"
    );
    assert!(person.find_all("#chat-log .turn").is_empty());

    assert_eq!(
        app.rows(&format!("SELECT contact FROM tickets WHERE id = {ticket}")),
        vec![vec!["+34 600 555 666"]],
        "the contact left on the page reaches the ticket (the later one replaces the first)"
    );

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

/// Polls `script` (returning a string) until it returns `want`.
fn wait_until(
    browser: &common::webdriver::Browser,
    script: &str,
    want: &str,
    timeout: std::time::Duration,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let got = browser.run(script);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{script}: {got} after {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A content editor in a real browser: edit a manual, see the problems, publish, watch the job, ask
/// the chat and get the new text cited, roll back, and get the old answer again.
#[test]
fn an_editor_publishes_a_manual_sees_it_cited_and_rolls_it_back() {
    use common::webdriver::Driver;
    use std::time::Duration;
    let wait = Duration::from_secs(120);
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let password = "editor-browser-password";
    {
        let store = app.state.store.clone();
        app.block_on(async move {
            scanaid_server::auth::create_user(
                &store,
                "editor-b",
                password,
                scanaid_server::roles::Role::Editor,
            )
            .await
        })
        .unwrap();
    }
    let original =
        std::fs::read_to_string(manuals.path().join("equipment/vp300-service.md")).unwrap();
    let section = "\n## Flow sensor purge {#flow-sensor-purge}\n\nTo purge the flow sensor, flush it with 40 ml of sterile saline through the purge port marked FS-9, then run the self-test.\n";
    let edited = original.replace(
        "revision = \"C (2026-03-14)\"",
        "revision = \"D (browser)\"",
    ) + section;
    let driver = Driver::start();
    let editor = driver.phone(1024, 900, IPHONE);
    editor.goto(&app.url("/signin"));
    editor.wait_for("#username", wait).type_text("editor-b");
    editor.wait_for("#password", wait).type_text(password);
    editor.submit_and_wait("form button[type=submit]", wait);

    // The manual in the editor; a broken link is listed with its line before anything is published.
    editor.goto(&app.url("/admin/manuals/vp300-service"));
    editor.wait_for("#markdown", wait);
    let set_text = |text: &str| {
        editor.run(&format!(
            "document.getElementById('markdown').value = {}; return true;",
            serde_json::to_string(text).unwrap()
        ));
    };
    set_text(&format!("{edited}\nSee [the purge port](#purge-port).\n"));
    editor.submit_and_wait("button[value=check]", wait);
    let problem = editor.wait_for("#findings li", wait).text();
    assert!(
        problem.contains("#purge-port") && problem.starts_with("line "),
        "{problem}"
    );

    // The session ends while the editor is open (idle too long, or signed out elsewhere): the
    // next Check lands on the sign-in page, and nothing typed is lost: signed in again, the
    // editor offers the text back.
    app.rows("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = 'editor-b') RETURNING 1");
    set_text(&format!(
        "{edited}\nA sentence typed before the session ended.\n"
    ));
    editor.submit_and_wait("button[value=check]", wait);
    assert!(
        editor.current_url().contains("/signin"),
        "{}",
        editor.current_url()
    );
    editor.wait_for("#username", wait).type_text("editor-b");
    editor.wait_for("#password", wait).type_text(password);
    editor.submit_and_wait("form button[type=submit]", wait);
    editor.goto(&app.url("/admin/manuals/vp300-service"));
    editor.wait_for(".draft-restore", wait).click();
    wait_until(
        &editor,
        "return document.getElementById('markdown').value.indexOf('typed before the session ended') >= 0 ? 'back' : 'not yet';",
        "back",
        wait,
    );

    // Fixed (the file loaded through the upload picker) and published: the job page follows the
    // build live and ends promoted.
    let upload = tempfile::tempdir().unwrap();
    let file = upload.path().join("vp300-service.md");
    std::fs::write(&file, &edited).unwrap();
    editor
        .wait_for("#upload", wait)
        .type_text(file.to_str().unwrap());
    wait_until(
        &editor,
        "return document.getElementById('markdown').value.indexOf('Flow sensor purge') >= 0 ? 'loaded' : 'not yet';",
        "loaded",
        wait,
    );
    editor.submit_and_wait("#publish", wait);
    assert!(
        editor.current_url().contains("/admin/jobs/"),
        "{}",
        editor.current_url()
    );
    editor.wait_for("#job-progress", wait);
    wait_until(
        &editor,
        "var s = document.getElementById('job-status'); return s ? s.textContent : '';",
        "promoted",
        wait,
    );
    let job_url = editor.current_url();
    editor.wait_for("#rollback", wait);

    // The chat on the pump's page cites the new section.
    let ask = |question: &str| -> (String, Vec<String>) {
        editor.goto(&app.url(&format!("/c/{PUMP_CODE}")));
        editor.wait_for("#q", wait).type_text(question);
        editor
            .wait_for("form.ask button[type=submit]", wait)
            .click();
        // The last turn: this tab's earlier conversation on the page is shown again above it.
        editor.wait_for("#chat-log > .turn:last-child .sentence", wait);
        let answer = editor
            .find_all("#chat-log > .turn:last-child .sentence")
            .iter()
            .map(|s| s.text())
            .collect::<Vec<_>>()
            .join(" ");
        let links = editor
            .find_all("#chat-log > .turn:last-child a.cite")
            .iter()
            .filter_map(|a| a.attribute("href"))
            .collect();
        (answer, links)
    };
    let (answer, links) = ask("how do I purge the flow sensor with saline?");
    assert!(answer.contains("40 ml"), "{answer}");
    assert!(
        links.iter().any(|l| l.ends_with("#flow-sensor-purge")),
        "{links:?}"
    );
    let shot = screenshots_dir().join("editor-published-answer.png");
    std::fs::write(&shot, editor.screenshot_png()).unwrap();

    // Roll back from the job page: asked first (declined here: nothing changes) ...
    editor.goto(&job_url);
    editor.run(
        "window.__asked = []; window.confirm = function (m) { window.__asked.push(m); return false; }; return true;",
    );
    editor.wait_for("#rollback button", wait).click();
    assert_eq!(editor.run("return window.__asked.length;"), 1);
    assert_eq!(
        editor.run("return document.getElementById('job-status').textContent;"),
        "promoted"
    );
    // ... then confirmed: the old text is served again.
    editor.run("window.confirm = function () { return true; }; return true;");
    editor.submit_and_wait("#rollback button", wait);
    wait_until(
        &editor,
        "var s = document.getElementById('job-status'); return s ? s.textContent : '';",
        "rolled back",
        wait,
    );
    let (answer, links) = ask("how do I purge the flow sensor with saline?");
    assert!(!answer.contains("40 ml"), "{answer}");
    assert!(
        !links.iter().any(|l| l.ends_with("#flow-sensor-purge")),
        "{links:?}"
    );
    assert_eq!(
        std::fs::read_to_string(manuals.path().join("equipment/vp300-service.md")).unwrap(),
        original
    );
    // The rolled-back text is not lost: its job page opens it in the editor again.
    editor.goto(&job_url);
    editor.submit_and_wait("#reopen a", wait);
    let reopened = editor.run("return document.getElementById('markdown').value;");
    assert!(
        reopened
            .as_str()
            .is_some_and(|t| t.contains("Flow sensor purge")),
        "{reopened:?}"
    );
}

/// The dark pixels of a PNG screenshot, as (width, height, is-dark per pixel).
fn dark_pixels(path: &Path) -> (usize, usize, Vec<bool>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let (width, height) = (reader.info().width as usize, reader.info().height as usize);
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let channels = frame.color_type.samples();
    let dark = buf[..frame.buffer_size()]
        .chunks_exact(channels)
        .map(|px| px[..3.min(channels)].iter().all(|&v| v < 128))
        .collect();
    (width, height, dark)
}

/// The SVG label a print shop gets, drawn by a real browser: the QR code in it decodes (zbarimg)
/// to the code's address, and no line of text runs off its edges (a long asset name or its site's
/// phone number wraps instead).
#[test]
fn a_printed_svg_label_renders_whole_in_chromium_and_decodes() {
    let app = spawn_app();
    let admin = staff_cookie(&app, "admin4", scanaid_server::roles::Role::Admin);
    let label = get(
        &app.url(&format!("/admin/codes/{PUMP_CODE}.svg")),
        &[("cookie", &admin)],
    );
    assert_eq!(label.status, 200);
    assert!(
        label.body.contains("(555) 010-4410"),
        "the site's help number is on the label: {}",
        label.body
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("label.svg"), &label.body).unwrap();
    // Drawn at the phone viewport's width, on a grey page so the label's own edges show.
    std::fs::write(
        dir.path().join("label.html"),
        "<!doctype html><body style=\"margin:0;background:#888\"><img src=\"label.svg\" style=\"display:block;width:375px\"></body>",
    )
    .unwrap();
    let shot = screenshots_dir().join("pump-label-svg.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let page = format!("file://{}", dir.path().join("label.html").display());
    let out = chromium(
        &[&format!("--screenshot={}", shot.display()), &page],
        profile.path(),
    );
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded = Command::new("zbarimg")
        .args(["--raw", "-q", shot.to_str().unwrap()])
        .output()
        .expect("zbarimg is installed");
    assert_eq!(
        String::from_utf8_lossy(&decoded.stdout).trim(),
        app.url(&format!("/c/{PUMP_CODE}")),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    // Text touching the label's left or right edge was cut off there: the outermost columns of
    // the label (white, not the grey page) hold no dark pixel.
    let (width, height, dark) = dark_pixels(&shot);
    for x in [0, 1, 2, width - 3, width - 2, width - 1] {
        let touching = (0..height).filter(|y| dark[y * width + x]).count();
        assert_eq!(touching, 0, "text reaches column {x} of the label");
    }
    // And the text under the code is drawn: the bottom part of the label has ink in it.
    let text_rows = (height / 2..height)
        .filter(|y| (0..width).any(|x| dark[y * width + x]))
        .count();
    assert!(
        text_rows > 40,
        "only {text_rows} rows of text under the code"
    );
}

/// In a real browser, on a machine no manual is for yet: the chat (streamed, by script) says so,
/// not "these are the closest parts", and a person takes the question.
#[test]
fn on_a_machine_without_manuals_the_chat_says_so_and_hands_over_to_a_person() {
    use common::webdriver::Driver;
    use std::time::Duration;
    let wait = Duration::from_secs(60);
    let app = spawn_app();
    add_machine_without_manuals(&app);
    let driver = Driver::start();
    let person = driver.phone(375, 812, IPHONE);
    person.goto(&app.url("/c/nEwCh9Lz"));
    person
        .wait_for("#q", wait)
        .type_text("how do I clean the filter");
    person
        .wait_for("form.ask button[type=submit]", wait)
        .click();
    person.wait_for_text(
        "#chat-log .turn p.error",
        "There is no manual for this machine here yet, so I cannot answer from one. A person can help.",
        wait,
    );
    person.wait_for("#chat-log .ticket", wait);
    assert!(person
        .find_all("#chat-log .turn .sentence a.cite")
        .is_empty());
    let shown = person
        .run("return document.getElementById('chat-log').textContent;")
        .as_str()
        .unwrap()
        .to_string();
    assert!(!shown.contains("closest parts"), "{shown}");
    assert!(
        person.current_url().ends_with("/c/nEwCh9Lz"),
        "answered by script"
    );
    assert_eq!(
        app.rows("SELECT reason FROM tickets"),
        vec![vec!["no manuals for this machine"]]
    );
}

/// The agents' queue in a real browser keeps its order live: a ticket an agent answers moves below
/// the ones still waiting, one the person writes on again moves back up among them, and a closed
/// one goes last, without a reload. On a ticket's page, sending a reply disables its button (a
/// double tap sends one reply).
#[test]
fn the_queue_reorders_live_and_a_reply_is_sent_once() {
    use common::webdriver::Driver;
    use std::time::Duration;
    let wait = Duration::from_secs(60);
    let app = spawn_app();
    let password = "agent-queue-password";
    {
        let store = app.state.store.clone();
        app.block_on(async move {
            scanaid_server::auth::create_user(
                &store,
                "agent-q",
                password,
                scanaid_server::roles::Role::Agent,
            )
            .await
        })
        .unwrap();
    }
    // Two people ask for a person: tickets 1 and 2, both waiting.
    let mut conversations = Vec::new();
    for contact in ["+1 555 0101", "+1 555 0102"] {
        let body = serde_json::json!({"code": PUMP_CODE, "message": "Talk to a person", "contact": contact});
        let reply = post_json(&app.url("/api/chat"), &[], &body.to_string());
        assert_eq!(reply.status, 200, "{}", reply.body);
        let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        conversations.push(json["conversation"].as_str().unwrap().to_string());
    }

    let driver = Driver::start();
    let agent = driver.phone(414, 896, ANDROID);
    agent.goto(&app.url("/signin"));
    agent.wait_for("#username", wait).type_text("agent-q");
    agent.wait_for("#password", wait).type_text(password);
    agent.submit_and_wait("form button[type=submit]", wait);
    agent.wait_for("header .top, header.top", wait);
    agent.goto(&app.url("/support"));
    agent.wait_for("#ticket-2", wait);
    let order = |browser: &common::webdriver::Browser| -> String {
        browser
            .run("return Array.from(document.querySelectorAll('#tickets tr')).map(function (r) { return r.id + ':' + r.className.split(' ')[0]; }).join(',');")
            .as_str()
            .unwrap()
            .to_string()
    };
    let wait_for_order = |browser: &common::webdriver::Browser, want: &str| {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let now = order(browser);
            if now == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "queue reads {now}, not {want}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for_order(&agent, "ticket-1:status-open,ticket-2:status-open");

    // A second agent session (another console) answers ticket 1 over plain HTTP.
    let other = staff_cookie(&app, "agent-r", scanaid_server::roles::Role::Agent);
    let page = get(&app.url("/support/tickets/1"), &[("cookie", &other)]);
    let replied = post_form(
        &app.url("/support/tickets/1/reply"),
        &[("cookie", &other)],
        &[
            ("csrf", &page.hidden("csrf").unwrap()),
            ("seen", &page.hidden("seen").unwrap()),
            ("nonce", &page.hidden("nonce").unwrap()),
            ("body", "We will call you within the hour."),
        ],
    );
    assert_eq!(replied.status, 303, "{}", replied.body);
    wait_for_order(&agent, "ticket-2:status-open,ticket-1:status-answered");

    // The person writes again on ticket 1: it waits again, behind ticket 2 (which waited longer).
    let body = serde_json::json!({"code": PUMP_CODE, "conversation": conversations[0], "message": "Still no call"});
    let again = post_json(&app.url("/api/chat"), &[], &body.to_string());
    assert_eq!(again.status, 200, "{}", again.body);
    wait_for_order(&agent, "ticket-2:status-open,ticket-1:status-waiting");

    // Closing ticket 2 puts it last.
    let page = get(&app.url("/support/tickets/2"), &[("cookie", &other)]);
    let closed = post_form(
        &app.url("/support/tickets/2/close"),
        &[("cookie", &other)],
        &[
            ("csrf", &page.hidden("csrf").unwrap()),
            ("seen", &page.hidden("seen").unwrap()),
        ],
    );
    assert_eq!(closed.status, 303, "{}", closed.body);
    wait_for_order(&agent, "ticket-1:status-waiting,ticket-2:status-closed");

    // On ticket 1's page, a reply sent with two taps is stored once.
    agent.goto(&app.url("/support/tickets/1"));
    agent.wait_for("#reply", wait).type_text("Calling you now.");
    agent.run(
        "var b = document.querySelector('#reply-form button[type=submit]'); b.click(); b.click();",
    );
    agent.wait_for_text("#ticket-status", "answered", wait);
    assert_eq!(
        app.rows("SELECT COUNT(*) FROM ticket_messages WHERE body = 'Calling you now.'")[0][0],
        "1"
    );
}

/// An agent's console in Chromium: what they type is kept when they take the ticket first (the
/// page reloads), a reply keeps its line breaks, and a ticket's tab that is hidden lets go of its
/// live stream (a browser has about six connections per server over HTTP/1.1, shared by every
/// tab) and, shown again, catches up with what the person wrote meanwhile, once.
#[test]
fn a_console_keeps_what_the_agent_typed_and_a_hidden_tab_catches_up() {
    use common::webdriver::Driver;
    use std::time::Duration;
    let wait = Duration::from_secs(60);
    let app = spawn_app();
    let password = "agent-drafts-password";
    {
        let store = app.state.store.clone();
        app.block_on(async move {
            scanaid_server::auth::create_user(
                &store,
                "agent-d",
                password,
                scanaid_server::roles::Role::Agent,
            )
            .await
        })
        .unwrap();
    }
    let body = serde_json::json!({"code": PUMP_CODE, "message": "Talk to a person"});
    let reply = post_json(&app.url("/api/chat"), &[], &body.to_string());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let conversation = json["conversation"].as_str().unwrap().to_string();
    let ticket = json["ticket"]["id"].as_i64().unwrap();

    let driver = Driver::start();
    let agent = driver.phone(414, 896, ANDROID);
    agent.goto(&app.url("/signin"));
    agent.wait_for("#username", wait).type_text("agent-d");
    agent.wait_for("#password", wait).type_text(password);
    agent.submit_and_wait("form button[type=submit]", wait);
    agent.goto(&app.url(&format!("/support/tickets/{ticket}")));
    agent.wait_for("#ticket[data-stream=open]", wait);

    // Typed, then "Take this ticket": the page comes back with the text put back.
    agent
        .wait_for("#reply", wait)
        .type_text("1. Unplug the pump.\n2. Hold the power key for 5 s.");
    // At once: what was typed is kept as the form is sent, not only after a pause in typing.
    agent.submit_and_wait("#take-form button", wait);
    agent.wait_for("#release-form", wait);
    agent.wait_for_value(
        "#reply",
        "1. Unplug the pump.\n2. Hold the power key for 5 s.",
        wait,
    );
    agent.wait_for(".draft-back", wait);

    // Sent: the reply shows its two lines as two lines, and the draft is forgotten.
    agent.submit_and_wait("#send-reply", wait);
    agent.wait_for_text("#ticket-status", "answered", wait);
    let shown = agent.run(
        "var p = document.querySelector('#transcript .entry.agent .text'); return p ? p.innerText : null;",
    );
    assert_eq!(
        shown.as_str(),
        Some("1. Unplug the pump.\n2. Hold the power key for 5 s."),
        "the line break is rendered"
    );
    agent.wait_for_value("#reply", "", wait);
    assert!(agent
        .run(&format!(
            "return sessionStorage.getItem('scanaid.support.{ticket}.reply');"
        ))
        .is_null());

    // Hidden: after a few seconds the tab lets go of its stream.
    agent.wait_for("#ticket[data-stream=open]", wait);
    let set_hidden = |hidden: bool| {
        agent.run(&format!(
            "Object.defineProperty(document, 'hidden', {{ configurable: true, get: function () {{ return {hidden}; }} }}); \
             document.dispatchEvent(new Event('visibilitychange')); return true;"
        ));
    };
    set_hidden(true);
    agent.wait_for("#ticket[data-stream=paused]", wait);
    let body = serde_json::json!({"code": PUMP_CODE, "conversation": conversation, "message": "Done, it still beeps twice"});
    let again = post_json(&app.url("/api/chat"), &[], &body.to_string());
    assert_eq!(again.status, 200, "{}", again.body);
    std::thread::sleep(Duration::from_millis(1500));
    let count = || {
        agent
            .run("return Array.from(document.querySelectorAll('#transcript .entry.person .text')).filter(function (p) { return p.textContent === 'Done, it still beeps twice'; }).length;")
            .as_i64()
            .unwrap()
    };
    assert_eq!(count(), 0, "a paused tab gets nothing");
    // Shown again: it resumes from where it was and shows the message, once.
    set_hidden(false);
    agent.wait_for("#ticket[data-stream=open]", wait);
    let deadline = std::time::Instant::now() + wait;
    while count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the message did not arrive"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(count(), 1);
    let lang = agent.run(
        "var e = document.querySelector('#transcript .entry.person.live'); return e ? e.lang : null;",
    );
    assert_eq!(
        lang.as_str(),
        Some("en"),
        "the person's words carry their language"
    );

    // A colleague's note appears live among the notes.
    let colleague = staff_cookie(&app, "agent-e", scanaid_server::roles::Role::Agent);
    let page = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &colleague)],
    );
    let noted = post_form(
        &app.url(&format!("/support/tickets/{ticket}/note")),
        &[("cookie", &colleague)],
        &[
            ("csrf", &page.hidden("csrf").unwrap()),
            ("body", "Ward phone is ext. 4410"),
        ],
    );
    assert_eq!(noted.status, 303, "{}", noted.body);
    agent.wait_for_text("#notes li.live .text", "Ward phone is ext. 4410", wait);
}
