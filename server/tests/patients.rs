//! End-to-end: discharge packets on the real server. A packet's code asks for the patient's date of
//! birth and PIN; the right pair opens that packet only; wrong ones count down to a lock that only a
//! clinician can reset; sessions expire and sign out; everything is audited; analytics hold no
//! patient data.

mod common;

use common::*;
use scanaid_server::roles::Role;

/// Opens the form, then posts `dob` and `pin` with its CSRF pair; the reply and the cookie header
/// to send next, if a session was opened.
/// The `Cookie` header value of the patient session a reply opened, if it opened one.
fn patient_session_of(reply: &Reply) -> Option<String> {
    reply
        .set_cookie("scanaid_patient")
        .filter(|v| !v.is_empty())
        .map(|v| format!("scanaid_patient={v}"))
}

fn try_open(app: &TestApp, code: &str, dob: &str, pin: &str) -> (Reply, Option<String>) {
    let form = get(&app.url(&format!("/c/{code}")), &[]);
    let csrf_cookie = form
        .set_cookie("scanaid_csrf")
        .expect("the form sets its CSRF cookie");
    let csrf = form.hidden("csrf").expect("a CSRF field");
    let reply = post_form(
        &app.url(&format!("/c/{code}")),
        &[("cookie", &format!("scanaid_csrf={csrf_cookie}"))],
        &[("csrf", &csrf), ("dob", dob), ("pin", pin)],
    );
    let session = patient_session_of(&reply);
    (reply, session)
}

#[test]
fn a_patient_opens_their_own_packet_with_the_second_factor_and_nobody_elses() {
    let (app, demos) = spawn_with_demo_packets();
    let ana = demo(&demos, "Ana García");
    let john = demo(&demos, "John Miller");

    // Before the second factor: a form in the packet's language, nothing about the patient.
    let form = get(&app.url(&format!("/c/{}", ana.code)), &[]);
    assert_eq!(form.status, 200);
    assert!(
        form.body.contains("Sus instrucciones al alta"),
        "{}",
        form.body
    );
    assert!(form.body.contains("lang=\"es\""));
    assert!(
        !form.body.contains("Ana"),
        "no name before the second factor"
    );
    assert!(!form.body.contains("Sus indicaciones personales"));
    assert_eq!(form.header("cache-control"), Some("no-store"));
    assert!(
        form.set_cookie("scanaid_seen").is_none(),
        "a discharge code is not remembered in the browser"
    );

    // A wrong PIN counts down; a malformed one is not a guess and is not counted.
    let wrong_pin = if ana.pin == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (wrong, session) = try_open(&app, &ana.code, &ana.dob, wrong_pin);
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.body.contains("Le quedan 4 intento(s)"),
        "{}",
        wrong.body
    );
    assert!(session.is_none());
    let (malformed, _) = try_open(&app, &ana.code, "not a date", &ana.pin);
    assert_eq!(malformed.status, 422);
    // A slashed date that reads two ways (John's 2 November, or February 11 as written in the US)
    // is asked again in an unambiguous form, and is not counted either.
    let (ambiguous, _) = try_open(&app, &john.code, "02/11/1949", &john.pin);
    assert_eq!(ambiguous.status, 422);
    assert!(
        ambiguous.body.contains("could be read two ways"),
        "{}",
        ambiguous.body
    );
    assert_eq!(
        app.rows("SELECT k.failed_attempts FROM packets k JOIN patients p ON p.id = k.patient_id WHERE p.display_name = 'John Miller'"),
        vec![vec!["0"]]
    );
    let (wrong_dob, _) = try_open(&app, &ana.code, "1960-01-01", &ana.pin);
    assert_eq!(
        wrong_dob.status, 401,
        "a right PIN with a wrong date of birth is wrong"
    );
    assert!(wrong_dob.body.contains("Le quedan 3 intento(s)"));

    // A forged form (no CSRF pair) is refused before any check.
    let forged = post_form(
        &app.url(&format!("/c/{}", ana.code)),
        &[],
        &[("csrf", "x"), ("dob", &ana.dob), ("pin", &ana.pin)],
    );
    assert_eq!(forged.status, 403);

    // The right pair (typed as people do: DD/MM/YYYY, a space in the PIN) opens Ana's packet.
    let (d, m, y) = (&ana.dob[8..10], &ana.dob[5..7], &ana.dob[0..4]);
    let pin_typed = format!("{} {}", &ana.pin[..3], &ana.pin[3..]);
    let (opened, session) = try_open(&app, &ana.code, &format!("{d}/{m}/{y}"), &pin_typed);
    assert_eq!(opened.status, 303, "{}", opened.body);
    let session = session.expect("a patient session");
    let cookie_line = opened
        .all_headers("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("scanaid_patient="))
        .unwrap();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Lax"));
    let page = get(
        &app.url(&format!("/c/{}", ana.code)),
        &[("cookie", &session)],
    );
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Ana García"));
    assert!(page.body.contains("Sus indicaciones personales"));
    assert!(page.body.contains("prótesis de rodilla"));
    // The leaflet names itself in its first heading: its title is not put above it again.
    assert_eq!(
        page.body
            .matches("Regreso a casa después de su reemplazo de rodilla</h")
            .count(),
        1,
        "{}",
        page.body
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(
        app.rows(
            "SELECT failed_attempts FROM packets WHERE locked_at IS NULL AND failed_attempts > 0"
        ),
        Vec::<Vec<String>>::new(),
        "a right answer clears the count"
    );

    // Ana's session does not open John's packet.
    let other = get(
        &app.url(&format!("/c/{}", john.code)),
        &[("cookie", &session)],
    );
    assert_eq!(other.status, 200);
    assert!(other.body.contains("Your discharge instructions"));
    assert!(!other.body.contains("John"));
    assert!(!other.body.contains("82.4 kg"));

    // Sign out ends the session; the old cookie opens nothing.
    let csrf = page.hidden("csrf").unwrap();
    let out = post_form(
        &app.url("/patient/signout"),
        &[("cookie", &session)],
        &[("csrf", &csrf)],
    );
    // Said in her language, with no equipment sites' contacts or way on to them.
    assert_eq!(out.status, 200);
    assert!(out.body.contains("<html lang=\"es\">"), "{}", out.body);
    assert!(out.body.contains("Ha cerrado la sesión"), "{}", out.body);
    assert!(!out.body.contains("(555)") && !out.body.contains("href=\"/\" class"));
    // A question sent from the page after that is told the session ended, not sent home.
    let late = post_form(
        &app.url("/patient/ask"),
        &[("cookie", &session), ("accept-language", "es-ES,es;q=0.9")],
        &[("csrf", &csrf), ("message", "¿puedo ducharme?")],
    );
    assert_eq!(late.status, 401);
    assert!(late.body.contains("la sesión"), "{}", late.body);
    let after = get(
        &app.url(&format!("/c/{}", ana.code)),
        &[("cookie", &session)],
    );
    assert!(!after.body.contains("Ana García"));

    // An idle session expires.
    let (_, again) = try_open(&app, &ana.code, &ana.dob, &ana.pin);
    let again = again.unwrap();
    app.rows("UPDATE patient_sessions SET last_seen = '2000-01-01T00:00:00.000Z' RETURNING 1");
    let expired = get(&app.url(&format!("/c/{}", ana.code)), &[("cookie", &again)]);
    assert!(
        !expired.body.contains("Ana García"),
        "an idle session has expired"
    );

    // Audited: failures, grants, sign-out. Analytics: no names, no dates of birth.
    let actions: Vec<String> = app
        .rows("SELECT action FROM audit_log ORDER BY id")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    for wanted in [
        "packet.created",
        "access.failed",
        "access.granted",
        "access.viewed",
        "access.signed_out",
    ] {
        assert!(
            actions.iter().any(|a| a == wanted),
            "{wanted} in {actions:?}"
        );
    }
    app.flush_events();
    let events = app.rows("SELECT * FROM scan_events WHERE rule = 'discharge'");
    assert!(!events.is_empty());
    for row in &events {
        for cell in row {
            assert!(!cell.contains("Ana") && !cell.contains(&ana.dob) && !cell.contains(&ana.pin));
        }
    }
}

#[test]
fn wrong_pins_lock_a_packet_for_a_while_or_until_a_clinician_resets_it() {
    let (app, demos) = spawn_with_demo_packets();
    let john = demo(&demos, "John Miller");
    let wrong_pin = if john.pin == "000000" {
        "111111"
    } else {
        "000000"
    };
    for left in (1..5).rev() {
        let (r, _) = try_open(&app, &john.code, &john.dob, wrong_pin);
        assert_eq!(r.status, 401);
        assert!(
            r.body.contains(&format!("{left} attempt(s) left")),
            "{}",
            r.body
        );
    }
    let (locked, _) = try_open(&app, &john.code, &john.dob, wrong_pin);
    assert_eq!(locked.status, 423);
    assert!(locked.body.contains("locked after 5 wrong attempts"));
    assert!(
        !locked.body.contains("id=\"verify\""),
        "a locked packet offers no form"
    );
    // Locked means locked: the right pair does not open it now.
    let form = get(&app.url(&format!("/c/{}", john.code)), &[]);
    assert!(!form.body.contains("id=\"verify\""));
    assert!(
        form.body.contains("locked after 5 wrong attempts")
            && form.body.contains("Try again in 15 min")
            && form.body.contains("call the phone number"),
        "scanned again, the page says why and whom to call: {}",
        form.body
    );
    let (still, session) = try_open_without_form(&app, &john.code, &john.dob, &john.pin);
    assert_eq!(still.status, 423);
    assert!(session.is_none());

    // Only clinicians (and admins) see packets and reset them.
    let technician = staff_cookie(&app, "tech9", Role::Technician);
    assert_eq!(
        get(&app.url("/patients"), &[("cookie", &technician)]).status,
        403
    );
    assert_eq!(get(&app.url("/patients"), &[]).status, 303);
    let clinician = staff_cookie(&app, "nurse1", Role::Clinician);
    let list = get(&app.url("/patients"), &[("cookie", &clinician)]);
    assert_eq!(list.status, 200);
    assert!(list.body.contains("John Miller"));
    assert!(list.body.contains("Unlock"));
    assert!(
        list.body.contains("access.failed"),
        "the audit log is on the page"
    );
    let packet = app.rows("SELECT id FROM packets WHERE locked_at IS NOT NULL")[0][0].clone();
    let csrf = list.hidden("csrf").unwrap();
    assert_eq!(
        post_form(
            &app.url(&format!("/patients/{packet}/reset")),
            &[("cookie", &clinician)],
            &[("csrf", "forged")],
        )
        .status,
        403
    );
    let reset = post_form(
        &app.url(&format!("/patients/{packet}/reset")),
        &[("cookie", &clinician)],
        &[("csrf", &csrf)],
    );
    assert_eq!(reset.status, 303);
    assert_eq!(
        app.rows("SELECT actor FROM audit_log WHERE action = 'packet.reset'"),
        vec![vec!["nurse1".to_string()]]
    );
    let (opened, session) = try_open(&app, &john.code, &john.dob, &john.pin);
    assert_eq!(opened.status, 303);
    let page = get(
        &app.url(&format!("/c/{}", john.code)),
        &[("cookie", &session.unwrap())],
    );
    assert!(page.body.contains("82.4 kg"));
}

/// The fictional demo patients are made on a store's first start only: once every packet is gone
/// (expired or deleted on request), a restart does not put them back among real patients.
#[test]
fn the_demo_patients_are_made_once_and_never_come_back() {
    let (app, demos) = spawn_with_demo_packets();
    assert_eq!(demos.len(), 3);
    let store = app.state.store.clone();
    let again = app
        .block_on(async move {
            for (id,) in sqlx::query_as::<_, (String,)>("SELECT id FROM packets")
                .fetch_all(store.pool())
                .await?
            {
                assert!(store.delete_packet(&id, "nurse1").await?);
            }
            let data = tempfile::tempdir().unwrap();
            let seeded = scanaid_server::patients::seed_demo_packets(
                &store,
                &repo().join("manuals"),
                data.path(),
                "http://127.0.0.1",
            )
            .await?;
            Ok::<_, scanaid_server::error::AppError>(seeded)
        })
        .unwrap();
    assert!(again.is_none(), "{again:?}");
    assert_eq!(app.rows("SELECT COUNT(*) FROM packets"), vec![vec!["0"]]);
}

/// Someone on a ward's shared address with one label cannot lock everyone else out: tries on a
/// locked packet do not count against the address, and a packet counts once however often it is
/// tried. Wrong PINs on ten different packets do lock the address.
#[test]
fn one_label_tried_over_and_over_never_locks_the_address_but_ten_packets_do() {
    let (app, demos) = spawn_with_demo_packets();
    let john = demo(&demos, "John Miller");
    let wrong = |pin: &str| if pin == "000000" { "111111" } else { "000000" }.to_string();
    for _ in 0..5 {
        try_open(&app, &john.code, &john.dob, &wrong(&john.pin));
    }
    for _ in 0..40 {
        let (r, _) = try_open_without_form(&app, &john.code, &john.dob, &wrong(&john.pin));
        assert_eq!(r.status, 423, "{}", r.body);
    }
    let ana = demo(&demos, "Ana García");
    let (opened, session) = try_open(&app, &ana.code, &ana.dob, &ana.pin);
    assert_eq!(opened.status, 303, "{}", opened.body);
    assert!(session.is_some());

    // Fifteen more packets: five patients each mistype once and then get in (they do not count),
    // then nine packets (ten with John's) are tried wrong once or twice from this address.
    let store = app.state.store.clone();
    let packets = app
        .block_on(async move {
            let mut made = Vec::new();
            for n in 0..15 {
                made.push(
                    store
                        .create_packet(&scanaid_server::patients::NewPacket {
                            patient_name: format!("Patient {n}"),
                            dob: "1960-01-01".to_string(),
                            language: "en".to_string(),
                            documents: Vec::new(),
                            created_by: "test".to_string(),
                            contact: String::new(),
                        })
                        .await?,
                );
            }
            Ok::<_, scanaid_server::error::AppError>(made)
        })
        .unwrap();
    for packet in &packets[..5] {
        let (typo, _) = try_open(&app, &packet.code, "1960-01-01", &wrong(&packet.pin));
        assert_eq!(typo.status, 401);
        let (opened, _) = try_open(&app, &packet.code, "1960-01-01", &packet.pin);
        assert_eq!(opened.status, 303, "{}", opened.body);
    }
    let packets = &packets[5..];
    for (n, packet) in packets[..9].iter().enumerate() {
        let tries = if n % 2 == 1 { 2 } else { 1 };
        for _ in 0..tries {
            let (r, _) = try_open(&app, &packet.code, "1960-01-01", &wrong(&packet.pin));
            assert_eq!(r.status, 401, "packet {n}: {}", r.body);
        }
    }
    // The tenth different packet: this address waits, even with the right PIN.
    let last = &packets[9];
    let (limited, session) = try_open(&app, &last.code, "1960-01-01", &last.pin);
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(session.is_none());
    assert!(limited
        .body
        .contains("Too many attempts from this connection"));
    assert!((1..=15 * 60).contains(&limited.retry_after_secs()));
}

#[test]
fn guesses_sent_all_at_once_get_no_more_checks_than_the_limit() {
    // Every try is counted before its PIN is checked, so a burst cannot slip past the lock while
    // the first checks are still running.
    let (app, demos) = spawn_with_demo_packets();
    let john = demo(&demos, "John Miller");
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let tries: Vec<_> = (0..24)
            .map(|i| {
                let pin = format!("{:06}", 900_000 + i);
                assert_ne!(pin, john.pin);
                let (app, john) = (&app, john);
                scope.spawn(move || try_open_without_form(app, &john.code, &john.dob, &pin).0)
            })
            .collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 401).count(),
        4,
        "four tries are told how many are left, the fifth locks: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 423),
        "{statuses:?}"
    );
    assert_eq!(
        app.rows("SELECT COUNT(*) FROM audit_log WHERE action = 'access.failed'"),
        vec![vec!["5".to_string()]],
        "only five PINs were checked"
    );
    assert_eq!(
        app.rows(&format!(
            "SELECT failed_attempts, locked_at IS NOT NULL FROM packets WHERE code = '{}'",
            john.code
        )),
        vec![vec!["5".to_string(), "1".to_string()]]
    );
    let (still, session) = try_open_without_form(&app, &john.code, &john.dob, &john.pin);
    assert_eq!(still.status, 423);
    assert!(session.is_none());
}

/// Posts the factors with a CSRF pair made up by the client (a locked packet shows no form).
fn try_open_without_form(
    app: &TestApp,
    code: &str,
    dob: &str,
    pin: &str,
) -> (Reply, Option<String>) {
    let reply = post_form(
        &app.url(&format!("/c/{code}")),
        &[("cookie", "scanaid_csrf=0123456789abcdef0123456789abcdef")],
        &[
            ("csrf", "0123456789abcdef0123456789abcdef"),
            ("dob", dob),
            ("pin", pin),
        ],
    );
    let session = patient_session_of(&reply);
    (reply, session)
}

fn packet_of(app: &TestApp, name: &str) -> String {
    app.rows(&format!(
        "SELECT k.id FROM packets k JOIN patients p ON p.id = k.patient_id WHERE p.display_name = '{name}'"
    ))[0][0]
        .clone()
}

fn ask_as(app: &TestApp, session: &str, body: &str) -> (u16, serde_json::Value) {
    let reply = post_json(&app.url("/api/patient/chat"), &[("cookie", session)], body);
    let json = serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, json)
}

#[test]
fn anonymous_traffic_from_the_same_address_never_silences_a_signed_in_patient() {
    let (app, demos) = spawn_demo(scanaid_server::ServerConfig {
        chat_per_client: 2,
        chat_per_conversation: 2,
        demo_manuals: Some(repo().join("manuals")),
        ..Default::default()
    });
    // Anonymous questions from this address (a ward's, say) until its limit holds.
    let anonymous = |message: &str| {
        let body = serde_json::json!({"code": PUMP_CODE, "message": message}).to_string();
        post_json(&app.url("/api/chat"), &[], &body).status
    };
    assert_eq!(anonymous("how do I clean the pump"), 200);
    assert_eq!(anonymous("which disinfectant"), 200);
    assert_eq!(
        anonymous("and the screen?"),
        429,
        "the address is over its limit"
    );
    // The patient, signed in from the same address, is counted per packet only.
    let ana = demo(&demos, "Ana García");
    let (_, session) = try_open(&app, &ana.code, &ana.dob, &ana.pin);
    let session = session.expect("Ana opens her packet");
    // A blank question on the page's form is told why, in her language, and not counted.
    let page = get(
        &app.url(&format!("/c/{}", ana.code)),
        &[("cookie", &session)],
    );
    let blank = post_form(
        &app.url("/patient/ask"),
        &[("cookie", &session)],
        &[("csrf", &page.hidden("csrf").unwrap()), ("message", "   ")],
    );
    assert!(
        blank
            .body
            .contains("Una pregunta tiene de 1 a 1000 caracteres"),
        "{}",
        blank.body
    );
    let (status, answer) = ask_as(&app, &session, r#"{"message": "¿cuándo es mi revisión?"}"#);
    assert_eq!(status, 200, "{answer}");
    // Her own limit (2 here) holds, and says how long to wait.
    let (status, answer) = ask_as(&app, &session, r#"{"message": "¿puedo ducharme?"}"#);
    assert_eq!(status, 200, "{answer}");
    let limited = post_json(
        &app.url("/api/patient/chat"),
        &[("cookie", &session)],
        r#"{"message": "¿y conducir?"}"#,
    );
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(
        limited.body.contains("Demasiadas preguntas"),
        "told in her packet's language: {}",
        limited.body
    );
    let wait = limited.retry_after_secs();
    assert!(
        (1..=scanaid_server::chat::RATE_WINDOW.as_secs()).contains(&wait),
        "{wait}"
    );
}

#[test]
fn a_patients_questions_are_answered_from_their_own_documents_and_never_anyone_elses() {
    let (app, demos, _index) = spawn_with_indexed_packets();
    let (ana_packet, john_packet) = (
        packet_of(&app, "Ana García"),
        packet_of(&app, "John Miller"),
    );
    let owned: std::collections::BTreeSet<String> = app
        .state
        .index()
        .chunks()
        .iter()
        .filter_map(|c| c.owner.clone())
        .collect();
    assert_eq!(
        owned.len(),
        3,
        "each packet's documents are indexed with their owner"
    );

    let ana = demo(&demos, "Ana García");
    let (_, ana_session) = try_open(&app, &ana.code, &ana.dob, &ana.pin);
    let ana_session = ana_session.unwrap();
    let john = demo(&demos, "John Miller");
    let (_, john_session) = try_open(&app, &john.code, &john.dob, &john.pin);
    let john_session = john_session.unwrap();

    // Ana asks in Spanish about her own plan: her document answers, cited.
    let (status, answer) = ask_as(
        &app,
        &ana_session,
        r#"{"message": "¿cuándo es mi revisión en la consulta de traumatología?"}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let cites_own = answer["citations"].as_array().unwrap().iter().any(|c| {
        c["manual"]
            .as_str()
            .unwrap()
            .starts_with(&format!("packet-{ana_packet}-"))
    });
    assert!(cites_own, "{answer}");
    assert!(
        answer["answer"].as_str().unwrap().contains("día 10"),
        "{answer}"
    );
    // A citation of her own document jumps to it on her page, which carries that id.
    let page = get(
        &app.url(&format!("/c/{}", ana.code)),
        &[("cookie", &ana_session)],
    );
    for c in answer["citations"].as_array().unwrap() {
        let url = c["url"].as_str().unwrap();
        if let Some(id) = url.strip_prefix('#') {
            assert!(
                page.body.contains(&format!("id=\"{id}\"")),
                "{url} names no element of her page"
            );
        } else {
            assert!(url.starts_with("/m/"), "{url}");
        }
    }

    // John's own question finds his plan (so the leak checks below can fail)...
    let johns_text = "Your dry weight at discharge was 82.4 kg: call the heart failure nurse if you gain more than 1 kg in a day";
    let body = serde_json::json!({ "message": johns_text }).to_string();
    let (status, johns) = ask_as(&app, &john_session, &body);
    assert_eq!(status, 200);
    assert!(johns.to_string().contains("82.4 kg"), "{johns}");

    // John's answers come from his own packet only: never another condition's leaflet (the knee
    // surgery's wound care answering "can I shower" for heart failure), and never a sentence twice
    // (his packet's copy of a leaflet and the public leaflet).
    for question in [
        "can I take a shower",
        "when can I drive again",
        "when should I call 911",
    ] {
        let body = serde_json::json!({ "message": question }).to_string();
        let (status, answer) = ask_as(&app, &john_session, &body);
        assert_eq!(status, 200, "{answer}");
        for c in answer["citations"].as_array().unwrap() {
            assert!(
                c["manual"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("packet-{john_packet}-")),
                "{question:?} cited {} outside his packet: {answer}",
                c["manual"]
            );
        }
        let sentences: Vec<&str> = answer["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["text"].as_str().unwrap())
            .collect();
        let distinct: std::collections::BTreeSet<&&str> = sentences.iter().collect();
        assert_eq!(distinct.len(), sentences.len(), "{question:?}: {answer}");
        assert!(
            !answer.to_string().to_lowercase().contains("knee"),
            "{answer}"
        );
    }

    // ...but Ana quoting it verbatim gets nothing of John's: not in sentences, snippets or citations.
    let (status, leaked) = ask_as(&app, &ana_session, &body);
    assert_eq!(status, 200);
    let text = leaked.to_string();
    assert!(!text.contains("82.4"), "{text}");
    assert!(!text.contains(&john_packet), "{text}");
    for c in leaked["citations"].as_array().unwrap() {
        let manual = c["manual"].as_str().unwrap();
        assert!(
            !manual.starts_with("packet-") || manual.starts_with(&format!("packet-{ana_packet}-")),
            "{manual}"
        );
    }

    // Nor does anyone without a patient session, by any other route.
    let public_chat = post_json(
        &app.url("/api/chat"),
        &[],
        &serde_json::json!({"code": PUMP_CODE, "message": johns_text}).to_string(),
    );
    assert!(!public_chat.body.contains("82.4"), "{}", public_chat.body);
    // The search page repeats the query, so it asks without the number it must not reveal.
    let search = post_form(
        &app.url("/search"),
        &[],
        &[(
            "q",
            "dry weight at discharge, call the heart failure nurse if you gain",
        )],
    );
    assert_eq!(search.status, 200);
    assert!(!search.body.contains("82.4"), "{}", search.body);
    let docs = app.rows(&format!(
        "SELECT id FROM packet_documents WHERE packet_id = '{john_packet}'"
    ));
    for d in docs {
        let page = get(&app.url(&format!("/m/packet-{john_packet}-{}", d[0])), &[]);
        assert_eq!(page.status, 404);
        assert!(!page.body.contains("82.4"));
    }

    // Crafted requests: no session, a forged cookie, extra fields asking for another owner.
    let (status, _) = ask_as(&app, "", r#"{"message": "hi"}"#);
    assert_eq!(status, 401);
    let (status, _) = ask_as(&app, "scanaid_patient=forged", r#"{"message": "hi"}"#);
    assert_eq!(status, 401);
    let crafted = serde_json::json!({"message": johns_text, "owner": john_packet}).to_string();
    let (status, refused) = ask_as(&app, &ana_session, &crafted);
    assert_eq!(status, 422, "{refused}");
    assert!(!refused.to_string().contains("82.4"));
    let (status, _) = ask_as(&app, &ana_session, "{not json");
    assert_eq!(status, 400);
    assert_eq!(
        app.rows("SELECT COUNT(*) FROM audit_log WHERE action = 'chat.asked'")[0][0],
        "6",
        "each answered question is audited, without its text"
    );
}

/// Throws malformed requests at every patient endpoint: bytes that are not UTF-8, broken percent
/// encodings, huge fields, JSON of the wrong shape, content types that do not match, forged and
/// replayed cookies. Every answer is a clear 4xx (or a redirect), never a 5xx or a dropped
/// connection, and no packet opens.
#[test]
fn malformed_input_at_the_patient_endpoints_gets_only_clear_4xx_answers() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let (app, demos) = spawn_with_demo_packets();
    let ana = demo(&demos, "Ana García");
    // A session that existed and was signed out: replaying it must open nothing.
    let (_, replayed) = try_open(&app, &ana.code, &ana.dob, &ana.pin);
    let replayed = replayed.unwrap();
    let page = get(
        &app.url(&format!("/c/{}", ana.code)),
        &[("cookie", &replayed)],
    );
    let csrf = page.hidden("csrf").unwrap();
    post_form(
        &app.url("/patient/signout"),
        &[("cookie", &replayed)],
        &[("csrf", &csrf)],
    );

    let paths = vec![
        format!("/c/{}", ana.code),
        "/patient/ask".to_string(),
        "/api/patient/chat".to_string(),
        "/patient/signout".to_string(),
        format!("/patients/{}/reset", "x".repeat(40)),
    ];
    let bodies = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        "[a-z%=&+]{0,64}(%[0-9A-Fa-fZz]{0,2}){0,4}".prop_map(String::into_bytes),
        Just(b"dob=1958-03-14&pin=%FF%FE&csrf=x".to_vec()),
        Just(b"dob=%00%00&pin=123456&csrf=".to_vec()),
        Just(b"{\"message\": 5}".to_vec()),
        Just(b"{\"message\": [\"a\"], \"owner\": null}".to_vec()),
        Just(b"[]".to_vec()),
        Just(b"null".to_vec()),
        Just(format!("message={}", "a".repeat(5000)).into_bytes()),
        Just(format!("{{\"message\": \"{}\"}}", "\\u0000".repeat(300)).into_bytes()),
    ];
    let content_types = prop_oneof![
        Just("application/x-www-form-urlencoded"),
        Just("application/json"),
        Just("text/plain; charset=utf-16"),
        Just("multipart/form-data; boundary=x"),
    ];
    let cookies = prop_oneof![
        Just(String::new()),
        Just(replayed.clone()),
        "[A-Za-z0-9]{0,80}".prop_map(|v| format!("scanaid_patient={v}")),
        "[A-Za-z0-9]{0,40}".prop_map(|v| format!("scanaid_patient={v}; scanaid_csrf={v}")),
        Just(format!("scanaid_patient={}", "9".repeat(3000))),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 160,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(
                proptest::sample::select(paths),
                bodies,
                content_types,
                cookies,
            ),
            |(path, body, content_type, cookie)| {
                let mut headers = vec![("content-type", content_type)];
                if !cookie.is_empty() {
                    headers.push(("cookie", cookie.as_str()));
                }
                let status = send_bytes("POST", &app.url(&path), &headers, &body);
                // Signing out says "signed out" (200) whether or not a session was live; it
                // opens nothing.
                let ok_for_path = path == "/patient/signout" && status == 200;
                prop_assert!(
                    (300..500).contains(&status) || ok_for_path,
                    "POST {} ({}) answered {}",
                    path,
                    content_type,
                    status
                );
                Ok(())
            },
        )
        .unwrap();

    // The server is still up, no packet opened, and nothing malformed was counted as a guess
    // beyond the limit: the packet is still usable by its patient.
    assert_eq!(get(&app.url("/healthz"), &[]).status, 200);
    assert_eq!(
        app.rows("SELECT COUNT(*) FROM audit_log WHERE action = 'access.granted'")[0][0],
        "1",
        "only the one right attempt above ever opened a packet"
    );
}

#[test]
fn a_clinician_creates_a_packet_whose_patient_opens_it_and_gets_answers_from_it() {
    let (app, _demos, _index) = spawn_with_indexed_packets();
    let technician = staff_cookie(&app, "tech7", Role::Technician);
    assert_eq!(
        get(&app.url("/patients/new"), &[("cookie", &technician)]).status,
        403
    );
    let clinician = staff_cookie(&app, "nurse2", Role::Clinician);
    let form = get(&app.url("/patients/new"), &[("cookie", &clinician)]);
    assert_eq!(form.status, 200);
    assert!(
        form.body.contains("value=\"rodilla-regreso-a-casa-es\""),
        "the leaflets are offered"
    );
    let csrf = form.hidden("csrf").unwrap();
    let before = app.rows("SELECT COUNT(*) FROM packets")[0][0].clone();
    let health_before = get(&app.url("/healthz"), &[]).body;

    // Everything wrong at once: every problem is listed, nothing is created.
    let bad = post_form(
        &app.url("/patients/new"),
        &[("cookie", &clinician)],
        &[
            ("csrf", &csrf),
            ("name", ""),
            ("dob", "2999-01-01"),
            ("language", "fr"),
            ("contact", "Ward 4B"),
            ("template", "no-such-leaflet"),
        ],
    );
    assert_eq!(bad.status, 422);
    for problem in [
        "name is 1 to",
        "at least 3 digits",
        "in the future",
        "language is one of",
        "There is no leaflet &#34;no-such-leaflet&#34;",
    ] {
        assert!(bad.body.contains(problem), "{problem}: {}", bad.body);
    }
    assert_eq!(app.rows("SELECT COUNT(*) FROM packets")[0][0], before);
    // Shown again with its errors, the form keeps the leaflets ticked, so fixing the name cannot
    // create a packet without them; a note typed over lines (CRLF) counts as the box counted it.
    let kept = post_form(
        &app.url("/patients/new"),
        &[("cookie", &clinician)],
        &[
            ("csrf", &csrf),
            ("name", ""),
            ("dob", "1970-05-05"),
            ("language", "es"),
            ("template", "rodilla-regreso-a-casa-es"),
            ("note", &format!("{}\r\n", "x".repeat(9)).repeat(1900)),
        ],
    );
    assert_eq!(kept.status, 422);
    assert!(
        kept.body
            .contains("value=\"rodilla-regreso-a-casa-es\" checked"),
        "{}",
        kept.body
    );
    assert!(
        !kept.body.contains("personal note is at most"),
        "{}",
        kept.body
    );
    // A note near its 20,000 characters in a script outside Latin is nine times that once
    // form-encoded; the form still answers about what is wrong in it, not with a bare 413.
    let long_note = post_form(
        &app.url("/patients/new"),
        &[("cookie", &clinician)],
        &[
            ("csrf", &csrf),
            ("name", ""),
            ("dob", "1970-05-05"),
            ("language", "es"),
            ("note", &"字".repeat(19_900)),
        ],
    );
    assert_eq!(long_note.status, 422, "{}", long_note.body);
    assert!(
        long_note.body.contains("name is 1 to"),
        "{}",
        long_note.body
    );

    let made = post_form(
        &app.url("/patients/new"),
        &[("cookie", &clinician)],
        &[
            ("csrf", &csrf),
            ("name", "María López"),
            ("dob", "1970-05-05"),
            ("language", "es"),
            ("contact", " Planta 3, (555) 010-4300 "),
            ("template", "rodilla-regreso-a-casa-es"),
            (
                "note",
                "## Medicación\n\nTome paracetamol 1 g cada 8 horas durante 5 días.",
            ),
        ],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    assert!(made.body.contains("<svg"), "the printable label");
    // María's packet is in Spanish, and so is the slip she is handed with her PIN.
    assert!(
        made.body
            .contains("<section class=\"card pin-slip\" id=\"pin-slip\" lang=\"es\">")
            && made.body.contains("Su PIN")
            && made.body.contains("Con su fecha de nacimiento"),
        "{}",
        made.body
    );
    // The slip says, in her language, until when the instructions open (the retention limit).
    let made_on: chrono::DateTime<chrono::Utc> = app
        .rows("SELECT created_at FROM packets ORDER BY created_at DESC LIMIT 1")[0][0]
        .parse()
        .unwrap();
    let last_day = (made_on.date_naive() + chrono::Days::new(90)).to_string();
    assert_eq!(
        between(&made.body, "<p id=\"kept-until\">", "<"),
        format!("Podrá abrir sus instrucciones hasta el {last_day}. Después se borrarán.")
    );
    // Whom to call is on the slip and on the label, in her language.
    assert_eq!(
        between(&made.body, "<p id=\"pin-help\">", "<"),
        "¿Ha perdido su PIN o se han bloqueado sus instrucciones? Llame a: Planta 3, (555) 010-4300."
    );
    assert!(
        svg_text(&made.body).contains("¿Dudas? Llame a: Planta 3, (555) 010-4300"),
        "{}",
        made.body
    );
    // The next packet's form starts from the ward this clinician gave last.
    assert!(get(&app.url("/patients/new"), &[("cookie", &clinician)])
        .body
        .contains("value=\"Planta 3, (555) 010-4300\""));
    let pin = between(&made.body, "<p class=\"big\" id=\"pin\">", "<");
    let url = between(&made.body, "<code id=\"packet-url\">", "<");
    let code = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(code.len(), 23);
    assert!(
        !made.body.contains("1970-05-05"),
        "the date of birth is not echoed back"
    );
    assert_eq!(
        app.rows(
            "SELECT actor FROM audit_log WHERE action = 'packet.created' ORDER BY id DESC LIMIT 1"
        ),
        vec![vec!["nurse2".to_string()]]
    );

    // The sign-in page says whom to call about a lost PIN.
    assert_eq!(
        between(
            &get(&app.url(&format!("/c/{code}")), &[]).body,
            "<p id=\"help-line\">",
            "<"
        ),
        "¿Ha perdido su PIN o se han bloqueado sus instrucciones? Llame a: Planta 3, (555) 010-4300."
    );
    // The patient opens it with the factors the clinician set and was given.
    let (opened, session) = try_open(&app, &code, "1970-05-05", pin);
    assert_eq!(opened.status, 303, "{}", opened.body);
    let session = session.unwrap();
    let page = get(&app.url(&format!("/c/{code}")), &[("cookie", &session)]);
    assert!(page.body.contains("María López"));
    assert!(page.body.contains("paracetamol 1 g cada 8 horas"));
    assert_eq!(
        between(&page.body, "<p id=\"call-line\">", "<"),
        "¿Tiene dudas sobre sus cuidados? Llame a: Planta 3, (555) 010-4300."
    );

    // Once the background indexing is done, the chat answers from the new note.
    let packet = app.rows(&format!("SELECT id FROM packets WHERE code = '{code}'"))[0][0].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !app
        .state
        .index()
        .chunks()
        .iter()
        .any(|c| c.owner.as_deref() == Some(packet.as_str()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the new packet was never indexed"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The public health check counts public chunks only and names no generation: a new packet
    // does not show there.
    let health_after = get(&app.url("/healthz"), &[]).body;
    assert_eq!(health_before, health_after);
    assert_eq!(
        health_after,
        format!("ok chunks={}\n", app.state.index().public_len())
    );
    assert!(app.state.index().public_len() < app.state.index().len());
    let (status, answer) = ask_as(
        &app,
        &session,
        r#"{"message": "¿cada cuántas horas tomo el paracetamol?"}"#,
    );
    assert_eq!(status, 200);
    assert!(
        answer["answer"].as_str().unwrap().contains("cada 8 horas"),
        "{answer}"
    );
}

#[test]
fn a_packet_deleted_on_request_leaves_nothing_personal_and_opens_nothing() {
    let (app, demos, index) = spawn_with_indexed_packets();
    let lily = demo(&demos, "Lily Chen");
    let packet = packet_of(&app, "Lily Chen");
    let (_, session) = try_open(&app, &lily.code, &lily.dob, &lily.pin);
    let session = session.unwrap();
    // Her documents' text is on disk in the index, in plain text in its chunk list.
    let her_heading = "Lily's personal plan";
    assert!(!files_containing(index.path(), her_heading).is_empty());
    // Deleted rows are overwritten in the database file, not left in its free pages.
    assert_eq!(
        app.rows("PRAGMA secure_delete"),
        vec![vec!["1".to_string()]]
    );
    let clinician = staff_cookie(&app, "nurse3", Role::Clinician);
    let list = get(&app.url("/patients"), &[("cookie", &clinician)]);
    let csrf = list.hidden("csrf").unwrap();

    let unconfirmed = post_form(
        &app.url(&format!("/patients/{packet}/delete")),
        &[("cookie", &clinician)],
        &[("csrf", &csrf), ("confirm", "")],
    );
    assert_eq!(unconfirmed.status, 422);
    assert_eq!(
        app.rows(&format!(
            "SELECT COUNT(*) FROM packets WHERE id = '{packet}'"
        ))[0][0],
        "1"
    );

    let deleted = post_form(
        &app.url(&format!("/patients/{packet}/delete")),
        &[("cookie", &clinician)],
        &[("csrf", &csrf), ("confirm", "delete")],
    );
    assert_eq!(deleted.status, 303);
    for table in [
        "patients WHERE display_name = 'Lily Chen'",
        "packet_documents",
        "patient_sessions",
    ] {
        let sql = if table.contains("WHERE") {
            format!("SELECT COUNT(*) FROM {table}")
        } else {
            format!("SELECT COUNT(*) FROM {table} WHERE packet_id = '{packet}'")
        };
        assert_eq!(app.rows(&sql)[0][0], "0", "{sql}");
    }
    assert_eq!(
        app.rows("SELECT actor, detail FROM audit_log WHERE action = 'packet.deleted'"),
        vec![vec![
            "nurse3".to_string(),
            "patient data deleted on request".to_string()
        ]]
    );

    // The session and the code open nothing now; the code scans to the fallback page.
    let page = get(
        &app.url(&format!("/c/{}", lily.code)),
        &[("cookie", &session)],
    );
    assert!(!page.body.contains("Lily"));
    assert!(!page.body.contains("id=\"verify\""));
    assert_eq!(page.status, 410);
    assert!(
        page.set_cookie("scanaid_seen").is_none(),
        "a deleted packet's code is not remembered in the browser either"
    );
    assert!(
        page.body
            .contains("call the phone number on your discharge papers"),
        "a patient's page, not an equipment one: {}",
        page.body
    );
    assert!(
        !page.body.contains("equipment") && !page.body.contains("Kestrel"),
        "no equipment wording, no sites' contacts: {}",
        page.body
    );
    let (status, _) = ask_as(&app, &session, r#"{"message": "green zone"}"#);
    assert_eq!(status, 401);
    // Scan analytics never held her packet's code, only that a discharge code was scanned.
    app.flush_events();
    assert_eq!(
        app.rows(&format!(
            "SELECT COUNT(*) FROM scan_events WHERE code = '{}'",
            lily.code
        )),
        vec![vec!["0".to_string()]]
    );
    assert_ne!(
        app.rows("SELECT COUNT(*) FROM scan_events WHERE code = 'discharge'"),
        vec![vec!["0".to_string()]]
    );

    assert_index_forgets(&app, index.path(), &packet, her_heading);
}

/// Waits (up to 2 minutes) until the served index holds no chunk of `packet` and no file under
/// `index_dir` (older generations kept for rollback, the embedding cache) holds `text`: what the
/// background build after a packet's deletion must reach.
fn assert_index_forgets(app: &TestApp, index_dir: &std::path::Path, packet: &str, text: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while app
        .state
        .index()
        .chunks()
        .iter()
        .any(|c| c.owner.as_deref() == Some(packet))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted packet is still indexed"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    loop {
        let left = files_containing(index_dir, text);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted packet's text is still on disk in {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_packet_past_its_retention_limit_is_deleted_with_its_patients_data() {
    use scanaid_server::retention::purge_and_announce;
    let (app, demos, index) = spawn_with_indexed_packets();
    let lily = demo(&demos, "Lily Chen");
    let packet = packet_of(&app, "Lily Chen");
    let her_heading = "Lily's personal plan";
    assert!(!files_containing(index.path(), her_heading).is_empty());
    // Her packet was made 90 days ago, so today is its last day; the other two today. (It opens
    // at the real time, which is within that day everywhere; the purges below run at given times.)
    let made = chrono::Utc::now().date_naive() - chrono::Days::new(90);
    app.rows(&format!(
        "UPDATE packets SET created_at = '{made}T10:00:00.000Z' WHERE id = '{packet}'"
    ));
    let last_day = made + chrono::Days::new(90);
    // Clinicians see the last day each packet is kept: 90 days after the day it was made.
    let clinician = staff_cookie(&app, "nurse4", Role::Clinician);
    let list = get(&app.url("/patients"), &[("cookie", &clinician)]);
    let row = between(&list.body, &format!("<tr id=\"packet-{packet}\">"), "</tr>");
    assert!(
        row.contains(&format!("<span class=\"kept-until\">{last_day}</span>")),
        "{row}"
    );

    let state = app.state.clone();
    let purge_at = |at: chrono::DateTime<chrono::Utc>| {
        let state = state.clone();
        app.block_on(async move { purge_and_announce(&state, at).await })
            .unwrap()
    };
    let day_after_noon = (last_day + chrono::Days::new(1))
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc();
    // Until her last day has ended in every time zone (at UTC-12: noon UTC the day after), the
    // packet opens.
    assert_eq!(
        purge_at(day_after_noon - chrono::Duration::seconds(1)).packets,
        0
    );
    let (_, session) = try_open(&app, &lily.code, &lily.dob, &lily.pin);
    let session = session.expect("her packet still opens on its last day");
    // Her page tells her, as her slip did.
    let page = get(
        &app.url(&format!("/c/{}", lily.code)),
        &[("cookie", &session)],
    );
    assert_eq!(
        between(&page.body, "<p class=\"meta\" id=\"kept-until\">", "<"),
        format!("Your instructions can be opened until {last_day}. After that they are deleted.")
    );
    // Then it is deleted as a clinician's deletion is, and nobody else's is.
    assert_eq!(purge_at(day_after_noon).packets, 1);
    assert_eq!(
        app.rows(&format!(
            "SELECT COUNT(*) FROM packets WHERE id = '{packet}'"
        ))[0][0],
        "0"
    );
    assert_eq!(app.rows("SELECT COUNT(*) FROM packets")[0][0], "2");
    for sql in [
        "SELECT COUNT(*) FROM patients WHERE display_name = 'Lily Chen'".to_string(),
        format!("SELECT COUNT(*) FROM packet_documents WHERE packet_id = '{packet}'"),
        format!("SELECT COUNT(*) FROM patient_sessions WHERE packet_id = '{packet}'"),
    ] {
        assert_eq!(app.rows(&sql)[0][0], "0", "{sql}");
    }
    assert_eq!(
        app.rows("SELECT actor, detail FROM audit_log WHERE action = 'packet.expired'"),
        vec![vec![
            "retention".to_string(),
            "patient data deleted when its last day (the day it was made or last kept longer + 90 days) ended (retention limit)".to_string()
        ]]
    );
    let page = get(&app.url(&format!("/c/{}", lily.code)), &[]);
    assert_eq!(page.status, 410);
    assert!(
        page.body
            .contains("call the phone number on your discharge papers"),
        "{}",
        page.body
    );
    assert_index_forgets(&app, index.path(), &packet, her_heading);
    // A later purge finds nothing more to delete.
    assert_eq!(
        purge_at(day_after_noon + chrono::Duration::hours(1)).packets,
        0
    );
}

/// Files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn with_multilingual_e5_a_spanish_question_finds_the_english_leaflet_in_her_packet() {
    // As `scanaid serve` runs the bundled manuals: multilingual-e5, language-aware fusion.
    let (app, demos, _index) = spawn_with_indexed_packets_e5();
    let ana = demo(&demos, "Ana García");
    let (_, session) = try_open(&app, &ana.code, &ana.dob, &ana.pin);
    let session = session.expect("Ana signs in");

    // Ana's packet is her knee surgery: the heart-failure leaflet's salt limit is not hers, though
    // it is public patient education that answers the words of her question.
    let salt = r#"{"message": "¿cuánta sal puedo comer al día?"}"#;
    let (status, answer) = ask_as(&app, &session, salt);
    assert_eq!(status, 200, "{answer}");
    assert!(
        !answer.to_string().contains("heart-failure"),
        "another condition's leaflet answered her: {answer}"
    );

    // A Spanish-speaking heart-failure patient whose care team gave her the English leaflet:
    // her Spanish question finds it, in her packet, across the languages.
    let leaflet_path = repo().join("manuals/patient/heart-failure-daily-care.md");
    let leaflet = scanaid_indexer::manual::parse_manual(
        &leaflet_path,
        &std::fs::read(&leaflet_path).unwrap(),
    )
    .unwrap();
    let created = make_indexed_packet(
        &app,
        scanaid_server::patients::NewPacket {
            patient_name: "Rosa Díaz".to_string(),
            dob: "1950-05-02".to_string(),
            language: "es".to_string(),
            documents: vec![scanaid_server::patients::NewDocument {
                title: leaflet.meta.title.clone(),
                markdown: leaflet.body.clone(),
                template: Some(leaflet.meta.id.clone()),
            }],
            created_by: "test".to_string(),
            contact: String::new(),
        },
    );
    let (_, rosa) = try_open(&app, &created.code, "1950-05-02", &created.pin);
    let rosa = rosa.expect("Rosa signs in");
    let (status, answer) = ask_as(&app, &rosa, salt);
    assert_eq!(status, 200, "{answer}");
    let first = &answer["citations"][0];
    assert!(
        first["manual"]
            .as_str()
            .unwrap()
            .starts_with(&format!("packet-{}-", created.packet_id)),
        "{answer}"
    );
    let text = answer["answer"].as_str().unwrap().to_lowercase();
    assert!(
        text.contains("salt") || text.contains("sodium"),
        "the cited English text is the answer: {answer}"
    );

    // Ana's own Spanish plan still answers her own questions.
    let (status, answer) = ask_as(
        &app,
        &session,
        r#"{"message": "¿cuándo es mi revisión en la consulta de traumatología?"}"#,
    );
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["answer"].as_str().unwrap().contains("día 10"),
        "{answer}"
    );
    // Her Spanish questions about her Spanish plan, accented or not, are answered with confidence,
    // not sent to a person.
    for question in [
        "¿cuándo es mi revisión en la consulta de traumatología?",
        "cuando me quitan las grapas",
    ] {
        let (status, answer) = ask_as(
            &app,
            &session,
            &serde_json::json!({ "message": question }).to_string(),
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["unsure"], false, "{question}: {answer}");
    }
}

#[test]
fn a_broken_leaflet_is_skipped_and_the_first_start_still_makes_the_admin() {
    let manuals = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("manuals"), manuals.path());
    std::fs::write(
        manuals.path().join("patient/child-asthma-action-plan.md"),
        "an edit that lost its front matter\n",
    )
    .unwrap();
    let app = spawn_app_with(scanaid_server::ServerConfig {
        demo_manuals: Some(manuals.path().to_path_buf()),
        ..Default::default()
    });
    assert!(
        !app.admin_password.is_empty(),
        "the one-time password was made and handed over"
    );
    let listed = std::fs::read_to_string(app.data.path().join("demo-patients.txt")).unwrap();
    let names: Vec<&str> = listed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(names, ["Ana García", "John Miller"], "{listed}");
}

#[test]
fn a_clinician_keeps_a_packet_longer_and_its_limit_counts_from_that_day() {
    use scanaid_server::retention::purge_and_announce;
    let (app, demos) = spawn_with_demo_packets();
    let john = demo(&demos, "John Miller");
    let packet = packet_of(&app, "John Miller");
    // Made 80 days ago: its last day is 10 days ahead, and John still needs it.
    let made = chrono::Utc::now().date_naive() - chrono::Days::new(80);
    app.rows(&format!(
        "UPDATE packets SET created_at = '{made}T10:00:00.000Z' WHERE id = '{packet}'"
    ));
    let first_last_day = made + chrono::Days::new(90);
    let clinician = staff_cookie(&app, "nurse5", Role::Clinician);
    let list = get(&app.url("/patients"), &[("cookie", &clinician)]);
    let row = between(&list.body, &format!("<tr id=\"packet-{packet}\">"), "</tr>");
    assert!(
        row.contains(&format!(
            "<span class=\"kept-until\">{first_last_day}</span>"
        )),
        "{row}"
    );
    assert!(
        row.contains(&format!("action=\"/patients/{packet}/keep\"")),
        "{row}"
    );
    let csrf = list.hidden("csrf").unwrap();

    // Only a clinician's (or admin's) own form keeps a packet; a made-up packet is a 404.
    let technician = staff_cookie(&app, "tech5", Role::Technician);
    let keep_url = app.url(&format!("/patients/{packet}/keep"));
    // The technician's own form token: refused for the role, not for the token.
    let technician_csrf =
        scanaid_server::auth::csrf_for_session(technician.trim_start_matches("scanaid_session="));
    assert_eq!(
        post_form(
            &keep_url,
            &[("cookie", &technician)],
            &[("csrf", &technician_csrf)]
        )
        .status,
        403
    );
    assert_eq!(post_form(&keep_url, &[], &[("csrf", &csrf)]).status, 303);
    assert_eq!(
        post_form(&keep_url, &[("cookie", &clinician)], &[("csrf", "forged")]).status,
        403
    );
    assert_eq!(
        post_form(
            &app.url("/patients/no-such-packet/keep"),
            &[("cookie", &clinician)],
            &[("csrf", &csrf)]
        )
        .status,
        404
    );
    assert_eq!(
        app.rows(&format!(
            "SELECT kept_from IS NULL FROM packets WHERE id = '{packet}'"
        ))[0][0],
        "1",
        "nothing was kept by the refused forms"
    );

    // A packet past its limit (made 200 days ago: its last day has ended everywhere) is not
    // brought back: the purge deletes it, as its patient was told.
    let lily = packet_of(&app, "Lily Chen");
    let lily_made = app.rows(&format!(
        "SELECT created_at FROM packets WHERE id = '{lily}'"
    ))[0][0]
        .clone();
    let long_ago = chrono::Utc::now().date_naive() - chrono::Days::new(200);
    app.rows(&format!(
        "UPDATE packets SET created_at = '{long_ago}T10:00:00.000Z' WHERE id = '{lily}'"
    ));
    let list = get(&app.url("/patients"), &[("cookie", &clinician)]);
    let row = between(&list.body, &format!("<tr id=\"packet-{lily}\">"), "</tr>");
    assert!(!row.contains("/keep\""), "{row}");
    let refused = post_form(
        &app.url(&format!("/patients/{lily}/keep")),
        &[("cookie", &clinician)],
        &[("csrf", &csrf)],
    );
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("last day has ended"),
        "{}",
        refused.body
    );
    assert_eq!(
        app.rows(&format!(
            "SELECT kept_from IS NULL FROM packets WHERE id = '{lily}'"
        ))[0][0],
        "1"
    );
    app.rows(&format!(
        "UPDATE packets SET created_at = '{lily_made}' WHERE id = '{lily}'"
    ));

    let kept = post_form(&keep_url, &[("cookie", &clinician)], &[("csrf", &csrf)]);
    assert_eq!(kept.status, 303);
    // A second click (a page drawn before the first) changes nothing and audits nothing more.
    let again = post_form(&keep_url, &[("cookie", &clinician)], &[("csrf", &csrf)]);
    assert_eq!(again.status, 303);
    let kept_from = app.rows(&format!(
        "SELECT kept_from FROM packets WHERE id = '{packet}'"
    ))[0][0]
        .clone();
    let kept_day = chrono::DateTime::parse_from_rfc3339(&kept_from)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .date_naive();
    let new_last_day = kept_day + chrono::Days::new(90);
    assert!(new_last_day > first_last_day);
    assert_eq!(
        app.rows("SELECT actor, packet_id, detail FROM audit_log WHERE action = 'packet.kept'"),
        vec![vec![
            "nurse5".to_string(),
            packet.clone(),
            format!("kept until {new_last_day} (was {first_last_day})")
        ]]
    );
    // The list shows the new last day, and no button that would change nothing today.
    let list = get(&app.url("/patients"), &[("cookie", &clinician)]);
    let row = between(&list.body, &format!("<tr id=\"packet-{packet}\">"), "</tr>");
    assert!(
        row.contains(&format!("<span class=\"kept-until\">{new_last_day}</span>")),
        "{row}"
    );
    assert!(!row.contains("/keep\""), "{row}");
    // John's page tells him the new date.
    let (_, session) = try_open(&app, &john.code, &john.dob, &john.pin);
    let page = get(
        &app.url(&format!("/c/{}", john.code)),
        &[("cookie", &session.expect("John opens his packet"))],
    );
    assert_eq!(
        between(&page.body, "<p class=\"meta\" id=\"kept-until\">", "<"),
        format!(
            "Your instructions can be opened until {new_last_day}. After that they are deleted."
        )
    );

    let state = app.state.clone();
    let purge_at = |at: chrono::DateTime<chrono::Utc>| {
        let state = state.clone();
        app.block_on(async move { purge_and_announce(&state, at).await })
            .unwrap()
    };
    let noon_after = |day: chrono::NaiveDate| {
        (day + chrono::Days::new(1))
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
    };
    // When the first limit would have deleted it, it stays and still opens.
    assert_eq!(purge_at(noon_after(first_last_day)).packets, 0);
    assert_eq!(
        purge_at(noon_after(new_last_day) - chrono::Duration::seconds(1)).packets,
        0
    );
    let (opened, _) = try_open(&app, &john.code, &john.dob, &john.pin);
    assert_eq!(opened.status, 303);
    // A purge that listed it before a clinician kept it longer does not delete it: the deletion
    // checks the limit again. Its cutoff here is the moment of the keep itself, the latest a
    // purge that listed the packet could have: only a start before the cutoff is deleted.
    let cutoff_at_the_keep = scanaid_server::store::stored_time(
        chrono::DateTime::parse_from_rfc3339(&kept_from)
            .unwrap()
            .with_timezone(&chrono::Utc),
    );
    let removed = {
        let state = state.clone();
        let packet = packet.clone();
        app.block_on(async move {
            state
                .store
                .remove_packet(
                    &packet,
                    "retention",
                    "packet.expired",
                    "",
                    Some(&cutoff_at_the_keep),
                )
                .await
        })
        .unwrap()
    };
    assert!(!removed);
    assert_eq!(
        app.rows(&format!(
            "SELECT COUNT(*) FROM packets WHERE id = '{packet}'"
        ))[0][0],
        "1"
    );
    // Then its new last day ends, and it goes, with the other two demo packets, made today: kept
    // longer today, John's limit is theirs.
    assert_eq!(purge_at(noon_after(new_last_day)).packets, 3);
    assert_eq!(
        app.rows(&format!(
            "SELECT actor FROM audit_log WHERE action = 'packet.expired' AND packet_id = '{packet}'"
        )),
        vec![vec!["retention".to_string()]]
    );
    assert_eq!(get(&app.url(&format!("/c/{}", john.code)), &[]).status, 410);
}

#[test]
fn a_resent_form_makes_one_packet_and_a_clinician_reprints_the_label_or_issues_a_new_pin() {
    let (app, demos) = spawn_with_demo_packets();
    let clinician = staff_cookie(&app, "nurse6", Role::Clinician);
    let form = get(&app.url("/patients/new"), &[("cookie", &clinician)]);
    let csrf = form.hidden("csrf").unwrap();
    let token = form.hidden("form_token").expect("the form carries a token");
    let before: i64 = app.rows("SELECT COUNT(*) FROM packets")[0][0]
        .parse()
        .unwrap();
    let fields = [
        ("csrf", csrf.as_str()),
        ("form_token", token.as_str()),
        ("name", "Rosa Diaz"),
        ("dob", "1961-03-09"),
        ("language", "en"),
        ("contact", "Ward 4B, ext. 4400"),
        ("note", "Walk twice a day."),
    ];
    let made = post_form(
        &app.url("/patients/new"),
        &[("cookie", &clinician)],
        &fields,
    );
    assert_eq!(made.status, 200, "{}", made.body);
    assert!(made.body.contains("id=\"pin\""));
    // The result page reloaded (the form sent again): no second packet, and no second PIN shown.
    let again = post_form(
        &app.url("/patients/new"),
        &[("cookie", &clinician)],
        &fields,
    );
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.body.contains("no second one was made"),
        "{}",
        again.body
    );
    assert!(!again.body.contains("id=\"pin\""));
    let after: i64 = app.rows("SELECT COUNT(*) FROM packets")[0][0]
        .parse()
        .unwrap();
    assert_eq!(after, before + 1);

    // John's label, printed again: the same code, and no PIN.
    let john = demo(&demos, "John Miller");
    let packet = packet_of(&app, "John Miller");
    let technician = staff_cookie(&app, "tech6", Role::Technician);
    assert_eq!(
        get(
            &app.url(&format!("/patients/{packet}/label")),
            &[("cookie", &technician)]
        )
        .status,
        403
    );
    let label = get(
        &app.url(&format!("/patients/{packet}/label")),
        &[("cookie", &clinician)],
    );
    assert_eq!(label.status, 200, "{}", label.body);
    assert!(label.body.contains("<svg"), "{}", label.body);
    assert!(label.body.contains(&john.code));
    assert!(
        svg_text(&label.body).contains("Questions? Call Ward 4B, (555) 010-4400"),
        "a reprint carries the ward's number too: {}",
        label.body
    );
    assert!(!label.body.contains("id=\"pin\""));
    assert_eq!(
        get(
            &app.url("/patients/no-such/label"),
            &[("cookie", &clinician)]
        )
        .status,
        404
    );
    assert_eq!(
        app.rows("SELECT actor, packet_id FROM audit_log WHERE action = 'packet.label_printed'"),
        vec![vec!["nurse6".to_string(), packet.clone()]]
    );

    // John lost his slip. He is signed in on his phone with the old one meanwhile.
    let (_, old_session) = try_open(&app, &john.code, &john.dob, &john.pin);
    let old_session = old_session.expect("the old slip opens it");
    let pin_url = app.url(&format!("/patients/{packet}/pin"));
    let list = get(&app.url("/patients"), &[("cookie", &clinician)]);
    let row = between(&list.body, &format!("<tr id=\"packet-{packet}\">"), "</tr>");
    let version = between(row, "name=\"pin_version\" value=\"", "\"").to_string();
    let hash_before = app.rows(&format!(
        "SELECT secret_hash FROM packets WHERE id = '{packet}'"
    ))[0][0]
        .clone();
    // A date that is not one changes nothing.
    let bad = post_form(
        &pin_url,
        &[("cookie", &clinician)],
        &[
            ("csrf", &csrf),
            ("dob", "someday"),
            ("dob_again", "someday"),
            ("pin_version", &version),
        ],
    );
    assert_eq!(bad.status, 422);
    // Nor do two dates that differ (a typo would make the new slip useless).
    let differ = post_form(
        &pin_url,
        &[("cookie", &clinician)],
        &[
            ("csrf", &csrf),
            ("dob", &john.dob),
            ("dob_again", "1900-01-01"),
            ("pin_version", &version),
        ],
    );
    assert_eq!(differ.status, 422);
    assert!(differ.body.contains("differ"), "{}", differ.body);
    assert_eq!(
        post_form(
            &pin_url,
            &[("cookie", &clinician)],
            &[("csrf", "forged"), ("dob", &john.dob)]
        )
        .status,
        403
    );
    assert_eq!(
        app.rows(&format!(
            "SELECT secret_hash FROM packets WHERE id = '{packet}'"
        ))[0][0],
        hash_before
    );
    let new_pin_form = [
        ("csrf", csrf.as_str()),
        ("dob", john.dob.as_str()),
        ("dob_again", john.dob.as_str()),
        ("pin_version", version.as_str()),
    ];
    let issued = post_form(&pin_url, &[("cookie", &clinician)], &new_pin_form);
    assert_eq!(issued.status, 200, "{}", issued.body);
    let new_pin = between(&issued.body, "<p class=\"big\" id=\"pin\">", "<").to_string();
    assert_eq!(new_pin.len(), 6);
    assert!(
        !issued.body.contains("<svg"),
        "a new PIN's page has no label"
    );
    // The result page reloaded (the form sent again): the slip just handed over stays the one
    // that works.
    let hash_issued = app.rows(&format!(
        "SELECT secret_hash FROM packets WHERE id = '{packet}'"
    ))[0][0]
        .clone();
    let resent = post_form(&pin_url, &[("cookie", &clinician)], &new_pin_form);
    assert_eq!(resent.status, 409, "{}", resent.body);
    assert_eq!(
        app.rows(&format!(
            "SELECT secret_hash FROM packets WHERE id = '{packet}'"
        ))[0][0],
        hash_issued
    );
    // The old slip no longer opens the packet, the old session has ended, the new slip opens it.
    let page = get(
        &app.url(&format!("/c/{}", john.code)),
        &[("cookie", &old_session)],
    );
    assert!(page.body.contains("id=\"verify\""), "{}", page.body);
    if new_pin != john.pin {
        let (wrong, _) = try_open(&app, &john.code, &john.dob, &john.pin);
        assert_eq!(wrong.status, 401);
    }
    let (opened, session) = try_open(&app, &john.code, &john.dob, &new_pin);
    assert_eq!(opened.status, 303);
    assert!(session.is_some());
    assert_eq!(
        app.rows("SELECT actor, packet_id FROM audit_log WHERE action = 'packet.new_pin'"),
        vec![vec!["nurse6".to_string(), packet.clone()]]
    );
}

/// A packet past its retention limit opens for nobody from that moment, also before the hourly
/// purge deletes it (or when a purge failed), and a patient session ends 12 hours after it opened
/// however busy it is.
#[test]
fn a_packet_past_its_limit_and_a_session_past_its_age_open_nothing() {
    let (app, demos) = spawn_with_demo_packets();
    let john = demo(&demos, "John Miller");
    let (_, session) = try_open(&app, &john.code, &john.dob, &john.pin);
    let session = session.expect("his packet opens");
    let page = |cookie: &str| {
        get(
            &app.url(&format!("/c/{}", john.code)),
            &[("cookie", cookie)],
        )
    };
    assert!(
        page(&session).body.contains("id=\"kept-until\""),
        "his instructions"
    );

    // 12 hours after it opened, the session opens nothing, even used a moment ago.
    let packet = packet_of(&app, "John Miller");
    let hours_ago = |h: i64| {
        (chrono::Utc::now() - chrono::Duration::hours(h))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    app.rows(&format!(
        "UPDATE patient_sessions SET created_at = '{}' WHERE packet_id = '{packet}'",
        hours_ago(13)
    ));
    let old = page(&session);
    assert!(!old.body.contains("id=\"kept-until\""), "{}", old.body);
    assert!(
        old.body.contains("name=\"pin\""),
        "the second factor again: {}",
        old.body
    );
    let (status, _) = ask_as(
        &app,
        &session,
        r#"{"message": "when do I take my tablets?"}"#,
    );
    assert_eq!(status, 401);

    // A fresh session, then the packet passes its limit (made 200 days ago) with no purge run.
    let (_, session) = try_open(&app, &john.code, &john.dob, &john.pin);
    let session = session.expect("his packet opens again");
    let made = chrono::Utc::now().date_naive() - chrono::Days::new(200);
    app.rows(&format!(
        "UPDATE packets SET created_at = '{made}T10:00:00.000Z' WHERE id = '{packet}'"
    ));
    let gone = page(&session);
    assert!(!gone.body.contains("id=\"kept-until\""), "{}", gone.body);
    assert!(
        !gone.body.contains("name=\"pin\""),
        "no form either: {}",
        gone.body
    );
    assert!(
        gone.body.contains("no longer available") || gone.body.contains("ya no están disponibles"),
        "{}",
        gone.body
    );
    let (status, _) = ask_as(
        &app,
        &session,
        r#"{"message": "when do I take my tablets?"}"#,
    );
    assert_eq!(status, 401);
    // Nor does the second factor open it.
    let verify = post_form(
        &app.url(&format!("/c/{}", john.code)),
        &[],
        &[("dob", &john.dob), ("pin", &john.pin)],
    );
    assert!(patient_session_of(&verify).is_none(), "{}", verify.body);
    assert_ne!(verify.status, 200, "{}", verify.body);
    // Still in the store until the purge: nothing was deleted by looking.
    assert_eq!(
        app.rows(&format!(
            "SELECT COUNT(*) FROM packets WHERE id = '{packet}'"
        ))[0][0],
        "1"
    );
}

/// Packets' codes are for clinicians: the administrators' code list and label printer leave them
/// out. Administrators' changes to staff accounts (who can read patients' data) are audited, and
/// shown to administrators, not in the clinicians' packet audit.
#[test]
fn administrators_see_no_packet_codes_and_their_account_changes_are_audited() {
    let (app, demos) = spawn_with_demo_packets();
    let admin = staff_cookie(&app, "admin-a", Role::Admin);
    let codes = get(&app.url("/admin/codes"), &[("cookie", &admin)]);
    assert_eq!(codes.status, 200);
    assert!(
        codes.body.contains("/admin/codes/tJ6bpUpB.svg"),
        "equipment codes are listed"
    );
    for (_, demo) in &demos {
        assert!(!codes.body.contains(&demo.code), "{}", codes.body);
        let label = get(
            &app.url(&format!("/admin/codes/{}.svg", demo.code)),
            &[("cookie", &admin)],
        );
        assert_eq!(label.status, 404, "{}", label.body);
    }

    let users = get(&app.url("/admin/users"), &[("cookie", &admin)]);
    let csrf = users.hidden("csrf").unwrap();
    let created = post_form(
        &app.url("/admin/users"),
        &[("cookie", &admin)],
        &[
            ("csrf", &csrf),
            ("username", "nurse-new"),
            ("password", "a long enough password"),
            ("role", "clinician"),
        ],
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let reset = post_form(
        &app.url("/admin/users/nurse-new/password"),
        &[("cookie", &admin)],
        &[("csrf", &csrf)],
    );
    assert_eq!(reset.status, 200, "{}", reset.body);
    let role = post_form(
        &app.url("/admin/users/nurse-new/role"),
        &[("cookie", &admin)],
        &[("csrf", &csrf), ("role", "technician")],
    );
    assert_eq!(role.status, 200, "{}", role.body);
    assert_eq!(
        app.rows(
            "SELECT actor, action, detail FROM audit_log WHERE action LIKE 'account.%' ORDER BY id"
        ),
        vec![
            vec!["admin-a", "account.created", "nurse-new as clinician"],
            vec!["admin-a", "account.password_reset", "nurse-new"],
            vec!["admin-a", "account.role_changed", "nurse-new to technician"],
        ]
    );
    let users = get(&app.url("/admin/users"), &[("cookie", &admin)]);
    assert!(
        users.body.contains("id=\"account-changes\""),
        "{}",
        users.body
    );
    assert!(
        users.body.contains("account.password_reset · nurse-new"),
        "{}",
        users.body
    );
    // The password itself is in no audit entry.
    let password = app.rows("SELECT COUNT(*) FROM audit_log WHERE detail LIKE '%long enough%'");
    assert_eq!(password[0][0], "0");
    let clinician = staff_cookie(&app, "nurse-c", Role::Clinician);
    let packets = get(&app.url("/patients"), &[("cookie", &clinician)]);
    assert_eq!(packets.status, 200);
    assert!(!packets.body.contains("account."), "{}", packets.body);
}

/// A lock ends by itself, each one longer (15 min, 1 h, 4 h, then a day), so someone holding a
/// patient's code cannot lock them out for good; wrong tries a day old are forgotten; the right
/// pair starts the steps again.
#[test]
fn a_lock_ends_by_itself_each_one_longer_and_old_wrong_tries_are_forgotten() {
    let (app, demos) = spawn_with_demo_packets();
    let john = demo(&demos, "John Miller");
    let packet = packet_of(&app, "John Miller");
    let wrong_pin = if john.pin == "000000" {
        "111111"
    } else {
        "000000"
    };
    let lock_minutes = || -> i64 {
        let until = app.rows(&format!(
            "SELECT locked_until FROM packets WHERE id = '{packet}'"
        ))[0][0]
            .clone();
        let until = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
        (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes()
    };
    let wrong_until_locked = |tries: usize| {
        for _ in 1..tries {
            assert_eq!(
                try_open(&app, &john.code, &john.dob, wrong_pin).0.status,
                401
            );
        }
        try_open(&app, &john.code, &john.dob, wrong_pin).0
    };
    let end_the_lock = || {
        app.rows(&format!(
            "UPDATE packets SET locked_until = '2020-01-01T00:00:00.000Z' WHERE id = '{packet}'"
        ));
    };

    let locked = wrong_until_locked(5);
    assert_eq!(locked.status, 423);
    assert!(
        locked.body.contains("Try again in 15 min"),
        "{}",
        locked.body
    );
    assert_eq!(locked.retry_after_secs(), 15 * 60);
    assert!((14..=15).contains(&lock_minutes()));
    // Scanned again meanwhile: the page says for how long, and the right pair does not open it.
    let form = get(&app.url(&format!("/c/{}", john.code)), &[]);
    assert!(form.body.contains("Try again in 15 min"), "{}", form.body);
    let (still, session) = try_open_without_form(&app, &john.code, &john.dob, &john.pin);
    assert_eq!(still.status, 423);
    assert!(session.is_none());
    // The clinicians' list says for how long.
    let clinician = staff_cookie(&app, "nurse-l", Role::Clinician);
    let list = get(&app.url("/patients"), &[("cookie", &clinician)]);
    assert!(
        list.body.contains("locked for 15 more min"),
        "{}",
        list.body
    );

    // Once it has ended, tries count from one again; the next lock lasts an hour, then four.
    end_the_lock();
    let (again, _) = try_open(&app, &john.code, &john.dob, wrong_pin);
    assert_eq!(again.status, 401, "{}", again.body);
    assert!(again.body.contains("4 attempt(s) left"), "{}", again.body);
    assert!(wrong_until_locked(4).body.contains("Try again in 60 min"));
    assert!((59..=60).contains(&lock_minutes()));
    end_the_lock();
    assert!(wrong_until_locked(5).body.contains("Try again in 4 h"));
    end_the_lock();
    assert!(wrong_until_locked(5).body.contains("Try again in 24 h"));
    end_the_lock();
    assert!(
        wrong_until_locked(5).body.contains("Try again in 24 h"),
        "a day at most"
    );

    // The right pair after a lock ended opens it and starts the steps again.
    end_the_lock();
    let (opened, session) = try_open(&app, &john.code, &john.dob, &john.pin);
    assert_eq!(opened.status, 303, "{}", opened.body);
    assert!(session.is_some());
    assert!(wrong_until_locked(5).body.contains("Try again in 15 min"));

    // Wrong tries a day old are forgotten: scattered typos never add up to a lock.
    let clinician_csrf = list.hidden("csrf").unwrap();
    let reset = post_form(
        &app.url(&format!("/patients/{packet}/reset")),
        &[("cookie", &clinician)],
        &[("csrf", &clinician_csrf)],
    );
    assert_eq!(reset.status, 303);
    for _ in 0..3 {
        assert_eq!(
            try_open(&app, &john.code, &john.dob, wrong_pin).0.status,
            401
        );
    }
    app.rows(&format!(
        "UPDATE packets SET last_failed_at = '{}' WHERE id = '{packet}'",
        (chrono::Utc::now() - chrono::Duration::hours(25))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    ));
    let (fresh, _) = try_open(&app, &john.code, &john.dob, wrong_pin);
    assert!(fresh.body.contains("4 attempt(s) left"), "{}", fresh.body);

    // A lock from before locks ended by themselves lasts until a clinician lifts it, as it did.
    app.rows(&format!(
        "UPDATE packets SET locked_at = '2026-01-01T00:00:00.000Z', locked_until = NULL WHERE id = '{packet}'"
    ));
    let form = get(&app.url(&format!("/c/{}", john.code)), &[]);
    assert!(form.body.contains("Call the phone number"), "{}", form.body);
    assert!(!form.body.contains("Try again in"), "{}", form.body);
    let (still, _) = try_open_without_form(&app, &john.code, &john.dob, &john.pin);
    assert_eq!(still.status, 423);
}
