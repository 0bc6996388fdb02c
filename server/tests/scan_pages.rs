//! End-to-end: the real server on 127.0.0.1 with the bundled manuals and registry. Scans, fallbacks,
//! languages, role pages, sign-in with CSRF and attempt limits, and scan events (HEAD and bots not
//! counted, nothing lost on shutdown).

mod common;

use common::*;

fn sign_in(app: &TestApp, username: &str, password: &str) -> Reply {
    sign_in_from(app, "/signin", username, password, None)
}

fn session_cookie(app: &TestApp, username: &str, password: &str) -> String {
    let reply = sign_in(app, username, password);
    assert_eq!(reply.status, 303, "{}", reply.body);
    format!(
        "scanaid_session={}",
        reply.set_cookie("scanaid_session").expect("session cookie")
    )
}

#[test]
fn an_anonymous_scan_gets_the_operator_page_and_is_recorded_without_personal_data() {
    let app = spawn_app();
    let page = get(
        &app.url(&format!("/c/{PUMP_CODE}")),
        &[
            ("user-agent", IPHONE),
            ("accept-language", "en-US,en;q=0.9"),
        ],
    );
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(
        page.header("strict-transport-security"),
        None,
        "no HSTS over plain HTTP"
    );
    assert!(page.body.contains("VP-300 infusion pump, ICU bed 7"));
    assert!(
        page.body.contains("Operator quick start"),
        "operators get the quick start"
    );
    assert!(page.body.contains("Cleaning and disinfection"));
    assert!(
        !page.body.contains("Fault codes"),
        "technician sections stay hidden from anonymous scans"
    );
    let again = get(
        &app.url(&format!("/c/{PUMP_CODE}")),
        &[
            ("user-agent", IPHONE),
            ("accept-language", "en-US,en;q=0.9"),
        ],
    );
    assert_eq!(
        again.body, page.body,
        "a repeated scan (served from the rendered-page cache) gets the same page"
    );
    assert!(!page.body.contains("Replacing the battery pack"));
    assert!(
        page.body.contains("Biomedical Engineering"),
        "the support queue is on the page"
    );
    assert!(page.body.contains("America/Chicago"));
    assert!(
        page.body.len() < 30 * 1024,
        "first render {} bytes",
        page.body.len()
    );
    // Works without JavaScript (the ask form posts to /chat); the one script is external, so the
    // content security policy can forbid inline ones.
    assert!(page.body.contains("action=\"/chat\""));
    assert_eq!(
        page.body.matches("<script").count(),
        page.body
            .matches("<script src=\"/static/chat.js\"></script>")
            .count()
    );

    app.flush_events();
    let rows = app.rows("SELECT code, asset_id, site_id, placement, device, language, role, returning_visit, rule, destination, fallback, ip_prefix FROM scan_events");
    assert_eq!(
        rows,
        vec![
            vec![
                PUMP_CODE,
                "pump-icu-07",
                "mercy-general",
                "nameplate",
                "ios",
                "en",
                "anonymous",
                "0",
                "default",
                "page:anonymous",
                "0",
                "127.0.0.0/24"
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
            2
        ],
        "both scans are recorded, the cached one like the first"
    );
    let latency: i64 = app.rows("SELECT latency_us FROM scan_events")[0][0]
        .parse()
        .unwrap();
    assert!(latency > 0);
}

#[test]
fn a_returning_scan_is_told_apart_by_its_cookie() {
    let app = spawn_app();
    let first = get(
        &app.url(&format!("/c/{PUMP_CODE}")),
        &[("user-agent", ANDROID)],
    );
    let seen = first
        .set_cookie("scanaid_seen")
        .expect("first scan sets the seen cookie");
    assert_eq!(seen, PUMP_CODE);
    let again = get(
        &app.url(&format!("/c/{PUMP_CODE}")),
        &[
            ("user-agent", ANDROID),
            ("cookie", &format!("scanaid_seen={seen}")),
        ],
    );
    assert_eq!(again.status, 200);
    app.flush_events();
    let rows = app.rows("SELECT returning_visit, device FROM scan_events ORDER BY id");
    assert_eq!(rows, vec![vec!["0", "android"], vec!["1", "android"]]);
}

#[test]
fn unknown_malformed_and_retired_codes_get_a_helpful_fallback() {
    let app = spawn_app();
    let unknown = get(&app.url("/c/zzzzzzzz"), &[]);
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("We could not find this code"));
    assert!(
        unknown.body.contains("(555) 010-4410"),
        "every site's contact is offered"
    );
    assert!(unknown.body.contains("action=\"/search\""), "and a search");
    assert_eq!(unknown.header("cache-control"), Some("no-store"));

    let junk = get(&app.url("/c/%2E%2E%2Fetc%2Fpasswd"), &[]);
    assert_eq!(junk.status, 404);
    assert!(junk.body.contains("We could not find this code"));

    let store = app.state.store.clone();
    assert!(app.block_on(async move { store.retire_code("azpMAym3").await.unwrap() }));
    let retired = get(&app.url("/c/azpMAym3"), &[("accept-language", "es")]);
    assert_eq!(retired.status, 410);
    assert!(
        retired.body.contains("Esta etiqueta fue retirada"),
        "{}",
        retired.body
    );
    assert!(retired.body.contains("Mercy General Hospital"));
    assert!(
        !retired.body.contains("Kestrel"),
        "a retired code knows its site"
    );

    app.flush_events();
    let rows =
        app.rows("SELECT fallback, destination, asset_id, code FROM scan_events ORDER BY id");
    assert_eq!(
        rows,
        vec![
            // What was typed is not kept: it may be a patient's packet code, mistyped.
            vec!["1", "fallback:unknown", "NULL", "unknown"],
            vec!["1", "fallback:unknown", "NULL", "unknown"],
            vec!["1", "fallback:retired", "pump-icu-07", "azpMAym3"],
        ]
    );

    // Every start brings the registry in line with assets.toml, which still lists the code: a
    // deliberate retirement stays, it is not put back by the file.
    let data = app.shutdown();
    let again = restart_on(data, scanaid_server::ServerConfig::default());
    assert_eq!(get(&again.url("/c/azpMAym3"), &[]).status, 410);
    assert_eq!(get(&again.url(&format!("/c/{PUMP_CODE}")), &[]).status, 200);
}

#[test]
fn head_requests_and_link_preview_bots_are_answered_but_not_counted() {
    let app = spawn_app();
    let head = head(&app.url(&format!("/c/{PUMP_CODE}")), &[]);
    assert_eq!(head.status, 200);
    for bot in [
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "WhatsApp/2.23.20.0",
        "facebookexternalhit/1.1",
    ] {
        let r = get(&app.url(&format!("/c/{PUMP_CODE}")), &[("user-agent", bot)]);
        assert_eq!(r.status, 200);
    }
    let person = get(
        &app.url(&format!("/c/{PUMP_CODE}")),
        &[("user-agent", IPHONE)],
    );
    assert_eq!(person.status, 200);
    app.flush_events();
    assert_eq!(
        app.rows("SELECT COUNT(*) FROM scan_events"),
        vec![vec!["1"]]
    );
}

#[test]
fn the_language_comes_from_the_query_then_the_header() {
    let app = spawn_app();
    let spanish = get(&app.url(&format!("/c/{PUMP_CODE}?lang=es")), &[]);
    assert_eq!(spanish.status, 200);
    assert!(spanish.body.contains("<html lang=\"es\">"));
    assert!(
        spanish.body.contains("Pregunte al manual"),
        "interface strings in Spanish"
    );
    // The role and the support hours too, not the registry's English.
    assert!(
        spanish.body.contains("Viendo como: visitante"),
        "{}",
        spanish.body
    );
    assert!(!spanish.body.contains("Mon-Fri"), "{}", spanish.body);
    // The language links name their language, and say which one is current.
    assert!(
        spanish.body.contains("aria-current=\"true\">Español</a>"),
        "{}",
        spanish.body
    );
    assert!(
        spanish.body.contains("Inicio rápido"),
        "the Spanish operator manual: {}",
        spanish.body
    );
    let by_header = get(
        &app.url(&format!("/c/{PUMP_CODE}")),
        &[("accept-language", "es-MX,es;q=0.9,en;q=0.5")],
    );
    assert!(by_header.body.contains("<html lang=\"es\">"));
    let unsupported = get(
        &app.url(&format!("/c/{PUMP_CODE}")),
        &[("accept-language", "de-DE")],
    );
    assert!(unsupported.body.contains("<html lang=\"en\">"));
    app.flush_events();
    assert_eq!(
        app.rows("SELECT language FROM scan_events ORDER BY id"),
        vec![vec!["es"], vec!["es"], vec!["en"]]
    );
}

#[test]
fn staff_change_their_password_and_their_other_sessions_end() {
    let app = spawn_app();
    assert_eq!(
        get(&app.url("/account/password"), &[]).status,
        303,
        "signed out: to sign-in"
    );
    let mine = session_cookie(&app, "admin", &app.admin_password);
    let elsewhere = session_cookie(&app, "admin", &app.admin_password);
    let page = get(&app.url("/account/password"), &[("cookie", &mine)]);
    assert_eq!(page.status, 200);
    let csrf = page.hidden("csrf").expect("a CSRF field");
    let change = |csrf: &str, current: &str, new: &str, confirm: &str| {
        post_form(
            &app.url("/account/password"),
            &[("cookie", &mine)],
            &[
                ("csrf", csrf),
                ("current", current),
                ("new", new),
                ("confirm", confirm),
            ],
        )
    };
    let new = "a new long passphrase";
    let refused = change("forged", &app.admin_password, new, new);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let differ = change(&csrf, &app.admin_password, new, "another long passphrase");
    assert_eq!(differ.status, 422);
    assert!(
        differ.body.contains("The two new passwords differ"),
        "{}",
        differ.body
    );
    let short = change(&csrf, &app.admin_password, "short", "short");
    assert_eq!(short.status, 422);
    assert!(
        short.body.contains("12 characters or more"),
        "{}",
        short.body
    );
    let wrong = change(&csrf, "not the password at all", new, new);
    assert_eq!(wrong.status, 403);
    assert!(
        wrong.body.contains("current password is not right"),
        "{}",
        wrong.body
    );
    // Nothing changed so far: the old password still signs in.
    assert_eq!(sign_in(&app, "admin", &app.admin_password).status, 303);

    let done = change(&csrf, &app.admin_password, new, new);
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("Your password was changed"),
        "{}",
        done.body
    );
    // This session goes on; the other one, and any the old password opened, ended.
    assert_eq!(
        get(&app.url("/admin/users"), &[("cookie", &mine)]).status,
        200
    );
    assert_eq!(
        get(&app.url("/admin/users"), &[("cookie", &elsewhere)]).status,
        303
    );
    assert_eq!(sign_in(&app, "admin", &app.admin_password).status, 401);
    assert_eq!(sign_in(&app, "admin", new).status, 303);
}

#[test]
fn admins_unlock_and_remove_staff_accounts() {
    let app = spawn_app();
    let admin = session_cookie(&app, "admin", &app.admin_password);
    let csrf = get(&app.url("/admin/users"), &[("cookie", &admin)])
        .hidden("csrf")
        .unwrap();
    let password = "a long enough password";
    let added = post_form(
        &app.url("/admin/users"),
        &[("cookie", &admin)],
        &[
            ("csrf", &csrf),
            ("username", "tech2"),
            ("password", password),
            ("role", "technician"),
        ],
    );
    assert_eq!(added.status, 200, "{}", added.body);
    let tech = session_cookie(&app, "tech2", password);
    let action = |path: &str, fields: &[(&str, &str)]| {
        post_form(&app.url(path), &[("cookie", &admin)], fields)
    };

    // Five wrong passwords lock the account; the admin sees it and lifts the lock.
    for _ in 0..5 {
        assert_eq!(
            sign_in(&app, "tech2", "not the password at all").status,
            401
        );
    }
    assert_eq!(sign_in(&app, "tech2", password).status, 429);
    let users = get(&app.url("/admin/users"), &[("cookie", &admin)]);
    assert!(users.body.contains("locked for 15 min"), "{}", users.body);
    let forged = action("/admin/users/tech2/unlock", &[("csrf", "forged")]);
    assert_eq!(forged.status, 403);
    let unlocked = action("/admin/users/tech2/unlock", &[("csrf", &csrf)]);
    assert_eq!(unlocked.status, 200);
    assert!(
        unlocked.body.contains("Unlocked tech2"),
        "{}",
        unlocked.body
    );
    assert_eq!(sign_in(&app, "tech2", password).status, 303);

    // Removing needs the word typed, never removes the admin's own account, and ends the sessions.
    let own = action(
        "/admin/users/admin/remove",
        &[("csrf", &csrf), ("confirm", "remove")],
    );
    assert_eq!(own.status, 422);
    let unconfirmed = action("/admin/users/tech2/remove", &[("csrf", &csrf)]);
    assert_eq!(unconfirmed.status, 422);
    assert_eq!(
        get(&app.url("/account/password"), &[("cookie", &tech)]).status,
        200
    );
    let removed = action(
        "/admin/users/tech2/remove",
        &[("csrf", &csrf), ("confirm", "remove")],
    );
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(removed.body.contains("Removed tech2"), "{}", removed.body);
    assert!(
        !removed.body.contains("id=\"user-tech2\""),
        "{}",
        removed.body
    );
    assert_eq!(
        get(&app.url("/account/password"), &[("cookie", &tech)]).status,
        303,
        "the removed account's session ended"
    );
    assert_eq!(sign_in(&app, "tech2", password).status, 401);
    let nobody = action(
        "/admin/users/nobody/remove",
        &[("csrf", &csrf), ("confirm", "remove")],
    );
    assert_eq!(nobody.status, 404);
}

#[test]
fn admins_change_a_users_role_and_give_a_forgotten_password_a_new_one() {
    let app = spawn_app();
    let admin = session_cookie(&app, "admin", &app.admin_password);
    let csrf = get(&app.url("/admin/users"), &[("cookie", &admin)])
        .hidden("csrf")
        .unwrap();
    let password = "a long enough password";
    let action = |path: &str, fields: &[(&str, &str)]| {
        post_form(&app.url(path), &[("cookie", &admin)], fields)
    };
    let added = action(
        "/admin/users",
        &[
            ("csrf", &csrf),
            ("username", "tech3"),
            ("password", password),
            ("role", "technician"),
        ],
    );
    assert_eq!(added.status, 200, "{}", added.body);
    let tech = session_cookie(&app, "tech3", password);
    assert_eq!(get(&app.url("/support"), &[("cookie", &tech)]).status, 403);

    // Moved to the support team: the session they have already opens the console.
    let role = |user: &str, role: &str, csrf: &str| {
        action(
            &format!("/admin/users/{user}/role"),
            &[("csrf", csrf), ("role", role)],
        )
    };
    assert_eq!(role("tech3", "agent", "forged").status, 403);
    assert_eq!(
        role("tech3", "patient", &csrf).status,
        422,
        "not a staff role"
    );
    assert_eq!(role("admin", "agent", &csrf).status, 422, "not one's own");
    assert_eq!(role("nobody", "agent", &csrf).status, 404);
    let moved = role("tech3", "agent", &csrf);
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert!(moved.body.contains("tech3 is now agent."), "{}", moved.body);
    assert!(
        between(&moved.body, "<tr id=\"user-tech3\">", "</tr>")
            .contains("<option selected>agent</option>"),
        "{}",
        moved.body
    );
    assert_eq!(get(&app.url("/support"), &[("cookie", &tech)]).status, 200);
    assert_eq!(
        app.rows("SELECT role FROM users WHERE username = 'tech3'"),
        vec![vec!["agent".to_string()]]
    );

    // Forgotten and locked out: the admin gives a new password, shown once; the lock lifts and
    // every session of theirs ends.
    for _ in 0..5 {
        sign_in(&app, "tech3", "not the password at all");
    }
    assert_eq!(sign_in(&app, "tech3", password).status, 429);
    assert_eq!(
        action("/admin/users/admin/password", &[("csrf", &csrf)]).status,
        422,
        "one's own password is changed with the current one"
    );
    assert_eq!(
        action("/admin/users/nobody/password", &[("csrf", &csrf)]).status,
        404
    );
    assert_eq!(
        action("/admin/users/tech3/password", &[("csrf", "forged")]).status,
        403
    );
    let reset = action("/admin/users/tech3/password", &[("csrf", &csrf)]);
    assert_eq!(reset.status, 200, "{}", reset.body);
    let new = between(&reset.body, "New password for tech3: ", " ").to_string();
    assert!(new.len() >= 12, "{new}");
    assert_eq!(
        get(&app.url("/support"), &[("cookie", &tech)]).status,
        303,
        "their session ended"
    );
    assert_eq!(sign_in(&app, "tech3", password).status, 401);
    assert_eq!(sign_in(&app, "tech3", &new).status, 303);
    // Shown only on that page: the users page does not show it again.
    assert!(!get(&app.url("/admin/users"), &[("cookie", &admin)])
        .body
        .contains(&new));
}

#[test]
fn staff_sign_in_with_csrf_limits_and_role_pages() {
    let app = spawn_app();
    // No CSRF cookie: refused, nothing signed in.
    let forged = post_form(
        &app.url("/signin"),
        &[],
        &[
            ("csrf", "x"),
            ("username", "admin"),
            ("password", &app.admin_password),
        ],
    );
    assert_eq!(forged.status, 403);
    assert!(forged.set_cookie("scanaid_session").is_none());

    let wrong = sign_in(&app, "admin", "not the password");
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong username or password"));

    let admin = session_cookie(&app, "admin", &app.admin_password);
    let users = get(&app.url("/admin/users"), &[("cookie", &admin)]);
    assert_eq!(users.status, 200);
    let csrf = users.hidden("csrf").unwrap();
    let bad_csrf = post_form(
        &app.url("/admin/users"),
        &[("cookie", &admin)],
        &[
            ("csrf", "nope"),
            ("username", "tech1"),
            ("password", "a long enough password"),
            ("role", "technician"),
        ],
    );
    assert_eq!(bad_csrf.status, 403);
    let short = post_form(
        &app.url("/admin/users"),
        &[("cookie", &admin)],
        &[
            ("csrf", &csrf),
            ("username", "tech1"),
            ("password", "short"),
            ("role", "technician"),
        ],
    );
    assert_eq!(short.status, 422);
    let added = post_form(
        &app.url("/admin/users"),
        &[("cookie", &admin)],
        &[
            ("csrf", &csrf),
            ("username", "tech1"),
            ("password", "a long enough password"),
            ("role", "technician"),
        ],
    );
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(added.body.contains("Added tech1 (technician)"));

    let tech = session_cookie(&app, "tech1", "a long enough password");
    let page = get(&app.url(&format!("/c/{PUMP_CODE}")), &[("cookie", &tech)]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Viewing as: technician"));
    assert!(
        page.body.contains("Fault codes"),
        "technicians get the fault codes first"
    );
    assert!(page.body.contains("E-"), "with the codes themselves");
    // Sections are rendered from chunk text, which must keep a table's delimiter row: without it the
    // fault code table was shown as lines of pipes.
    assert!(
        page.body.contains("<th>Code</th>") && page.body.contains("<td>E-101</td>"),
        "the fault code table renders as a table"
    );
    assert!(
        page.body.len() < 30 * 1024,
        "first render {} bytes",
        page.body.len()
    );
    // A technician is not an admin.
    assert_eq!(
        get(&app.url("/admin/users"), &[("cookie", &tech)]).status,
        403
    );
    assert_eq!(
        get(&app.url("/admin/codes/tJ6bpUpB.png"), &[("cookie", &tech)]).status,
        403
    );
    assert_eq!(
        get(&app.url("/admin/codes"), &[]).status,
        303,
        "anonymous: to sign-in"
    );

    // Admins print labels.
    let codes = get(&app.url("/admin/codes"), &[("cookie", &admin)]);
    assert_eq!(codes.status, 200);
    assert!(codes.body.contains("/admin/codes/tJ6bpUpB.svg"));
    let png = get(&app.url("/admin/codes/tJ6bpUpB.png"), &[("cookie", &admin)]);
    assert_eq!(png.status, 200);
    assert_eq!(png.header("content-type"), Some("image/png"));
    let svg = get(&app.url("/admin/codes/tJ6bpUpB.svg"), &[("cookie", &admin)]);
    // The lines under the code, read in order (long ones wrap onto two).
    let shown = svg_text(&svg.body);
    assert!(
        shown.contains("Scan for manuals, fault codes and help"),
        "{shown}"
    );
    assert!(
        shown.contains("Help: Biomedical Engineering, ext. 4410, (555) 010-4410"),
        "the site's help number: {shown}"
    );
    assert_eq!(
        get(&app.url("/admin/codes/zzzzzzzz.svg"), &[("cookie", &admin)]).status,
        404
    );

    app.flush_events();
    assert_eq!(
        app.rows("SELECT role, destination FROM scan_events"),
        vec![vec!["technician", "page:technician"]]
    );
    // On a shared tablet, the equipment page offers sign-out (a confirmation form, since the
    // page itself is rendered per role and carries no one's CSRF token).
    let shared = session_cookie(&app, "tech1", "a long enough password");
    let page = get(&app.url(&format!("/c/{PUMP_CODE}")), &[("cookie", &shared)]);
    assert!(page.body.contains("id=\"sign-out-link\""), "{}", page.body);
    let confirm = get(&app.url("/signout"), &[("cookie", &shared)]);
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Sign out tech1?"), "{}", confirm.body);
    let out = post_form(
        &app.url("/signout"),
        &[("cookie", &shared)],
        &[("csrf", &confirm.hidden("csrf").unwrap())],
    );
    assert_eq!(out.status, 303);
    let after = get(&app.url(&format!("/c/{PUMP_CODE}")), &[("cookie", &shared)]);
    assert!(
        !after.body.contains("Viewing as: technician"),
        "{}",
        after.body
    );
    assert_eq!(
        get(&app.url("/signout"), &[]).status,
        303,
        "signed out: home"
    );

    // Five failures lock the account, even for the right password, with a clear message.
    for _ in 0..5 {
        assert_eq!(sign_in(&app, "tech1", "guess").status, 401);
    }
    let locked = sign_in(&app, "tech1", "a long enough password");
    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("Too many failed sign-ins"));
    let wait = locked.retry_after_secs();
    assert!((14 * 60..=15 * 60).contains(&wait), "{wait}");
}

/// Signs in from a browser that carries `device` (a device cookie's `name=value`), if any.
fn sign_in_on(app: &TestApp, username: &str, password: &str, device: Option<&str>) -> Reply {
    let form = get(&app.url("/signin"), &[]);
    let csrf_cookie = form.set_cookie("scanaid_csrf").unwrap();
    let mut cookie = format!("scanaid_csrf={csrf_cookie}");
    if let Some(device) = device {
        cookie.push_str(&format!("; {device}"));
    }
    post_form(
        &app.url("/signin"),
        &[("cookie", &cookie)],
        &[
            ("csrf", &form.hidden("csrf").unwrap()),
            ("username", username),
            ("password", password),
            ("next", ""),
        ],
    )
}

/// Someone on the ward's shared address guesses passwords until the address and an account are
/// locked; the account's owner, on the browser they signed in from before, still signs in (and
/// has a lock of their own for wrong passwords there). Everyone else waits, as before.
#[test]
fn strangers_guessing_from_the_same_address_do_not_lock_out_a_known_browser() {
    use scanaid_server::roles::Role;
    let app = spawn_app();
    let password = "nurse-device-password";
    let store = app.state.store.clone();
    app.block_on(async move {
        scanaid_server::auth::create_user(&store, "nurse.d", password, Role::Clinician).await
    })
    .unwrap();
    let first = sign_in_on(&app, "nurse.d", password, None);
    assert_eq!(first.status, 303, "{}", first.body);
    let header = first
        .all_headers("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("scanaid_device_"))
        .expect("a right password makes the browser known")
        .to_string();
    assert!(
        header.contains("Path=/signin") && header.contains("HttpOnly"),
        "{header}"
    );
    // `name=value`: the name is the account's own, so people sharing a ward PC keep one each.
    let device = header.split(';').next().unwrap().to_string();
    let token = device.split_once('=').unwrap().1.to_string();
    assert_eq!(
        app.rows("SELECT COUNT(*) FROM signin_devices")[0][0],
        "1",
        "only a hash is kept"
    );
    assert!(
        app.rows(&format!(
            "SELECT COUNT(*) FROM signin_devices WHERE token_hash = '{token}'"
        ))[0][0]
            == "0"
    );

    // A stranger on the same address: five guesses lock the account, thirty the address.
    for _ in 0..5 {
        assert_eq!(sign_in_on(&app, "nurse.d", "guess", None).status, 401);
    }
    for n in 0..25 {
        sign_in_on(&app, &format!("someone{n}"), "guess", None);
    }
    assert_eq!(sign_in_on(&app, "nurse.d", password, None).status, 429);
    assert_eq!(
        sign_in_on(&app, "admin", &app.admin_password, None).status,
        429,
        "an unknown browser on the address waits"
    );
    // The nurse's own browser signs in.
    assert_eq!(
        sign_in_on(&app, "nurse.d", password, Some(&device)).status,
        303
    );
    // Someone else's device cookie does not help another account, nor does a made-up one.
    assert_eq!(
        sign_in_on(&app, "admin", &app.admin_password, Some(&device)).status,
        429
    );
    let made_up = format!("{}=made-up", device.split_once('=').unwrap().0);
    assert_eq!(
        sign_in_on(&app, "nurse.d", password, Some(&made_up)).status,
        429
    );
    // Wrong passwords from the known browser lock that browser too, and it is known no more (a
    // copied cookie is not a fresh set of guesses after each lockout).
    for _ in 0..5 {
        assert_eq!(
            sign_in_on(&app, "nurse.d", "typo", Some(&device)).status,
            401
        );
    }
    assert_eq!(
        sign_in_on(&app, "nurse.d", password, Some(&device)).status,
        429
    );
    assert_eq!(app.rows("SELECT COUNT(*) FROM signin_devices")[0][0], "0");
}

#[test]
fn passwords_sent_all_at_once_get_no_more_checks_than_the_limit() {
    // Each try is counted before its password is checked, so a burst cannot slip past the lock
    // while the first checks are still running.
    let app = spawn_app();
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let tries: Vec<_> = (0..24)
            .map(|i| {
                let app = &app;
                scope.spawn(move || sign_in(app, "admin", &format!("guess number {i}")))
            })
            .collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 401).count(),
        5,
        "five passwords were checked: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 429),
        "{statuses:?}"
    );
    // Locked: the right password waits out the lock too.
    let locked = sign_in(&app, "admin", &app.admin_password);
    assert_eq!(locked.status, 429);
    assert!(locked.retry_after_secs() > 0);
}

#[test]
fn failed_sign_ins_count_across_replicas_and_a_lockout_survives_a_restart() {
    let first = spawn_app();
    let admin_password = first.admin_password.clone();
    let store = first.state.store.clone();
    assert!(first
        .block_on(scanaid_server::auth::create_user(
            &store,
            "tech2",
            "a long enough password",
            scanaid_server::roles::Role::Technician,
        ))
        .unwrap());
    let replica = spawn_replica(&first, scanaid_server::ServerConfig::default());

    // Guesses spread over two replicas of one store count together: three on one and two on the
    // other lock the account on both.
    for _ in 0..3 {
        assert_eq!(sign_in(&first, "tech2", "guess").status, 401);
    }
    for _ in 0..2 {
        assert_eq!(sign_in(&replica, "Tech2", "guess").status, 401);
    }
    for app in [&first, &replica] {
        let locked = sign_in(app, "tech2", "a long enough password");
        assert_eq!(locked.status, 429, "{}", locked.body);
        assert!(
            locked.body.contains("Try again in 15 minute(s)"),
            "{}",
            locked.body
        );
    }
    drop(replica);

    // A restart does not lift the lock; another account from the same client still signs in.
    let data = first.shutdown();
    let again = restart_on(data, scanaid_server::ServerConfig::default());
    assert!(again.admin_password.is_empty(), "no second demo admin");
    assert_eq!(
        sign_in(&again, "tech2", "a long enough password").status,
        429
    );
    assert_eq!(sign_in(&again, "admin", &admin_password).status, 303);

    // What was typed is not kept: only hashes of the keys.
    let keys = again.rows("SELECT key_hash FROM signin_attempts");
    assert!(!keys.is_empty());
    assert!(keys
        .iter()
        .all(|k| k[0].len() == 64 && !k[0].contains("tech2") && !k[0].contains("127.0")));
}

/// Polls `check` every 100 ms until it holds or 20 s have passed (replicas pick up changes every
/// `changes::EVERY`, 2 s).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_replica_picks_up_codes_and_rules_another_server_changed() {
    let first = spawn_app();
    let replica = spawn_replica(&first, scanaid_server::ServerConfig::default());
    assert_eq!(get(&replica.url("/c/tJ6bpUpB"), &[]).status, 200);
    assert_eq!(get(&replica.url("/c/azpMAym3"), &[]).status, 200);

    // Rules saved through the first server's store (the admin form's path) reach the replica.
    let store = first.state.store.clone();
    let rules = "[[rule]]\nid = \"moved\"\ncode = \"tJ6bpUpB\"\nthen = { redirect = \"https://example.org/moved\" }\n";
    first.block_on(async move { store.save_rules(rules, "admin", None).await.unwrap() });
    eventually("the replica serves the saved rule", || {
        get(&replica.url("/c/tJ6bpUpB"), &[]).header("location")
            == Some("https://example.org/moved")
    });

    // A code retired on the first server is retired on the replica too.
    let store = first.state.store.clone();
    assert!(first.block_on(async move { store.retire_code("azpMAym3").await.unwrap() }));
    eventually("the replica treats the code as retired", || {
        get(&replica.url("/c/azpMAym3"), &[]).status == 410
    });
    drop(replica);
}

#[test]
fn sign_out_ends_the_session() {
    let app = spawn_app();
    let admin = session_cookie(&app, "admin", &app.admin_password);
    let users = get(&app.url("/admin/users"), &[("cookie", &admin)]);
    let csrf = users.hidden("csrf").unwrap();
    let out = post_form(
        &app.url("/signout"),
        &[("cookie", &admin)],
        &[("csrf", &csrf)],
    );
    assert_eq!(out.status, 303);
    assert_eq!(
        get(&app.url("/admin/users"), &[("cookie", &admin)]).status,
        303,
        "back to sign-in"
    );
}

#[test]
fn searches_count_against_the_clients_message_limit() {
    // A search embeds its question as a chat message does: it shares the per-client limit.
    let app = spawn_app_with(scanaid_server::ServerConfig {
        chat_per_client: 2,
        ..Default::default()
    });
    let search = |q: &str| post_form(&app.url("/search"), &[], &[("q", q)]);
    assert_eq!(search("how do I clean the pump").status, 200);
    assert_eq!(search("occlusion alarm").status, 200);
    let limited = search("battery life");
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(
        limited.body.contains("Too many questions"),
        "{}",
        limited.body
    );
    assert!(limited.retry_after_secs() >= 1);
    // Not counted: a question refused for its form.
    let app = spawn_app_with(scanaid_server::ServerConfig {
        chat_per_client: 1,
        ..Default::default()
    });
    assert_eq!(
        post_form(&app.url("/search"), &[], &[("q", " ")]).status,
        422
    );
    assert_eq!(
        post_form(&app.url("/search"), &[], &[("q", "occlusion alarm")]).status,
        200
    );
}

#[test]
fn behind_a_trusted_proxy_each_client_is_told_apart_and_others_cannot_claim_an_address() {
    let forwarded = |app: &TestApp, chain: &str| {
        assert_eq!(
            get(
                &app.url(&format!("/c/{PUMP_CODE}")),
                &[("x-forwarded-for", chain)]
            )
            .status,
            200
        );
        app.flush_events();
        let rows = app.rows("SELECT ip_prefix FROM scan_events ORDER BY id DESC LIMIT 1");
        rows[0][0].clone()
    };
    // Not configured: the header is ignored, whatever it says.
    let direct = spawn_app();
    assert_eq!(forwarded(&direct, "203.0.113.7"), "127.0.0.0/24");
    assert_eq!(
        get(
            &direct.url("/metrics"),
            &[("x-forwarded-for", "203.0.113.7")]
        )
        .status,
        200,
        "a local scraper cannot be made remote by a header either"
    );

    let app = spawn_app_with(scanaid_server::ServerConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Default::default()
    });
    assert_eq!(forwarded(&app, "203.0.113.7"), "203.0.113.0/24");
    // The proxy appends the address it saw; what the client wrote further left is not believed.
    assert_eq!(
        forwarded(&app, "10.9.8.7, 198.51.100.20"),
        "198.51.100.0/24"
    );
    assert_eq!(forwarded(&app, "[2001:db8:1:2::9]:4711"), "2001:db8:1::/48");
    // Nothing usable: the proxy's own address, as before.
    assert_eq!(forwarded(&app, "unknown"), "127.0.0.0/24");
    // Through the proxy, /metrics is a remote client's request, needing the token.
    assert_ne!(
        get(&app.url("/metrics"), &[("x-forwarded-for", "203.0.113.7")]).status,
        200
    );
    // Each client has its own sign-in limit: one locked out does not lock out another.
    let sign_in_from = |client: &str, password: &str| {
        let form = get(&app.url("/signin"), &[("x-forwarded-for", client)]);
        let cookie = form.set_cookie("scanaid_csrf").unwrap();
        let csrf = form.hidden("csrf").unwrap();
        post_form(
            &app.url("/signin"),
            &[
                ("cookie", &format!("scanaid_csrf={cookie}")),
                ("x-forwarded-for", client),
            ],
            &[
                ("csrf", &csrf),
                ("username", &format!("nobody-{}", password.len())),
                ("password", password),
            ],
        )
        .status
    };
    for n in 0..30 {
        // 30 failures over 6 accounts (5 each would lock those accounts) lock the address.
        assert_eq!(sign_in_from("198.51.100.20", &"x".repeat(1 + n % 6)), 401);
    }
    // A seventh account, not locked itself: the address is.
    assert_eq!(sign_in_from("198.51.100.20", &"x".repeat(7)), 429);
    assert_eq!(sign_in_from("203.0.113.7", &"x".repeat(8)), 401);
}

#[test]
fn addresses_and_queries_that_name_nothing_get_pages_not_plain_text() {
    let app = spawn_app();
    // A query string a scan cannot read is ignored: the label still opens its page.
    let scan = get(&app.url(&format!("/c/{PUMP_CODE}?lang=en&lang=es")), &[]);
    assert_eq!(scan.status, 200, "{}", scan.body);
    // So does every page whose query only chooses how it is shown.
    for path in ["/?lang=en&lang=es", "/m/vp300-service?lang=en&lang=es"] {
        let page = get(&app.url(path), &[]);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
    }
    // A code that is not text at all names nothing: the unknown-code page, not a bare 400.
    let unreadable = get(&app.url("/c/%FF%FE"), &[]);
    assert_eq!(unreadable.status, 404, "{}", unreadable.body);
    assert!(
        unreadable
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{}",
        unreadable.body
    );
    // Nor does any other path parameter that is not text: a manual, a label (each its 404 page,
    // signed in where the page needs it).
    let admin_u = staff_cookie(&app, "admin-u", scanaid_server::roles::Role::Admin);
    for (path, cookie) in [("/m/%FF", ""), ("/admin/codes/%FF.svg", admin_u.as_str())] {
        let page = get(&app.url(path), &[("cookie", cookie)]);
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert!(
            page.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}: {:?}",
            page.headers
        );
    }
    // A search form without its question is asked again, not a bare 400.
    let search = post_form(&app.url("/search"), &[], &[("asset", "pump-icu-07")]);
    assert_eq!(search.status, 422);
    assert!(search.body.contains("Type a question"), "{}", search.body);
    // Nor is a form that cannot be read as one (a field twice, bytes that are not UTF-8, another
    // content type): each form's own page, in HTML, never axum's plain text.
    for (path, body, content_type) in [
        ("/search", "q=a&q=b", "application/x-www-form-urlencoded"),
        (
            "/chat",
            "message=%FF%FE&asset=pump-icu-07",
            "application/x-www-form-urlencoded",
        ),
        ("/chat/replies", "{}", "application/json"),
        (
            "/signout",
            "csrf=a&csrf=b",
            "application/x-www-form-urlencoded",
        ),
    ] {
        let r = send_bytes_reply(
            "POST",
            &app.url(path),
            &[("content-type", content_type)],
            body.as_bytes(),
        );
        assert!(r.status < 500, "{path}: {}", r.status);
        assert!(
            r.header("content-type")
                .is_none_or(|t| t.starts_with("text/html")),
            "{path}: {:?} {}",
            r.headers,
            r.body
        );
    }
    let admin = staff_cookie(&app, "admin-x", scanaid_server::roles::Role::Admin);
    let agent = staff_cookie(&app, "agent-x", scanaid_server::roles::Role::Agent);
    // An unreadable period is the default one.
    let scans = get(&app.url("/admin/scans?days=abc"), &[("cookie", &admin)]);
    assert_eq!(scans.status, 200, "{}", scans.body);
    for path in ["/admin/gaps?days=1&days=2", "/admin/rules?code=a&code=b"] {
        let page = get(&app.url(path), &[("cookie", &admin)]);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
    }
    // An id that is not a number names nothing: the 404 page, as an unknown id gets.
    for (path, cookie) in [
        ("/support/tickets/abc", &agent),
        ("/admin/jobs/abc", &admin),
    ] {
        let page = get(&app.url(path), &[("cookie", cookie)]);
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(page.body.contains("Not found"), "{path}: {}", page.body);
    }
}

#[test]
fn search_answers_from_the_manuals_and_bad_requests_get_clear_errors() {
    let app = spawn_app();
    let found = post_form(
        &app.url("/search"),
        &[],
        &[("q", "how do I clean the pump"), ("asset", "pump-icu-07")],
    );
    assert_eq!(found.status, 200);
    assert!(
        found.body.contains("Cleaning and disinfection"),
        "{}",
        found.body
    );
    let empty = post_form(&app.url("/search"), &[], &[("q", "   ")]);
    assert_eq!(empty.status, 422);
    let long = "x".repeat(600);
    assert_eq!(
        post_form(&app.url("/search"), &[], &[("q", &long)]).status,
        422
    );
    // A declared length over the 64 KB limit is refused before any of the body is read. Only the
    // headers are sent, so the answer is read whole instead of racing the server's close.
    let refused = raw_request(
        &app,
        "POST /search HTTP/1.1\r\nHost: scanaid\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 81920\r\nConnection: close\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    assert!(refused.contains("too long"), "{refused}");
    assert!(refused.contains("under 64 KB"), "{refused}");
    // The JSON API says it in JSON; a manual's limit is a manual's.
    let refused = raw_request(
        &app,
        "POST /api/chat HTTP/1.1\r\nHost: scanaid\r\nContent-Type: application/json\r\nContent-Length: 81920\r\nConnection: close\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    assert!(
        refused.contains("application/json")
            && refused.contains("{\"error\":\"That request was too long."),
        "{refused}"
    );
    let refused = raw_request(
        &app,
        "POST /admin/manuals/check HTTP/1.1\r\nHost: scanaid\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    assert!(refused.contains("A manual must be under 4 MB"), "{refused}");
    // A body sent without a declared length (chunked) still stops at the limit.
    let mut chunked = String::from("POST /search HTTP/1.1\r\nHost: scanaid\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    let piece = "y".repeat(16 * 1024);
    chunked.push_str("2\r\nq=\r\n");
    for _ in 0..5 {
        chunked.push_str(&format!("{:x}\r\n{piece}\r\n", piece.len()));
    }
    chunked.push_str("0\r\n\r\n");
    let refused = raw_request(&app, &chunked);
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    let missing = get(&app.url("/no/such/page"), &[]);
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("home page"));
}

#[test]
fn manual_pages_show_only_what_the_role_may_read() {
    let app = spawn_app();
    let public = get(&app.url("/m/vp300-service"), &[]);
    assert_eq!(public.status, 200);
    assert!(
        public.body.contains("id=\"5-operator-quick-start\"")
            || public.body.contains("Operator quick start")
    );
    assert!(!public.body.contains("Replacing the battery pack"));
    assert_eq!(get(&app.url("/m/no-such-manual"), &[]).status, 404);
    // What a technician reads is not kept in the browser for whoever takes the tablet next.
    let technician = staff_cookie(&app, "tech-m", scanaid_server::roles::Role::Technician);
    let theirs = get(&app.url("/m/vp300-service"), &[("cookie", &technician)]);
    assert!(theirs.body.contains("Replacing the battery pack"));
    assert_eq!(theirs.header("cache-control"), Some("no-store"));
    assert_eq!(public.header("vary"), Some("Cookie"));
}

#[test]
fn shutdown_writes_every_queued_scan_event() {
    let app = spawn_app();
    let url = app.url(&format!("/c/{PUMP_CODE}"));
    // Another connection holds the write lock, so the events wait in the queue: the shutdown below
    // starts with them unwritten, and only its drain can write them.
    let lock = hold_write_lock(&app);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    assert_eq!(get(&url, &[("user-agent", IPHONE)]).status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let counters = app.state.events.counters.clone();
    assert!(
        counters.written.load(std::sync::atomic::Ordering::Relaxed) < 80,
        "events are still queued when the shutdown starts"
    );
    // The lock goes half a second into the shutdown (the store waits up to 5 s for it).
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let mut lock = lock;
                sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
            });
    });
    let data = app.shutdown();
    release.join().unwrap();
    assert_eq!(
        counters.dropped.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        counters
            .write_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the writer waited out the lock (the store's busy timeout is 5 s)"
    );
    // Read the file after the server has gone: what is there was written before it stopped.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let n = runtime.block_on(async {
        let store = scanaid_server::store::Store::open(data.path())
            .await
            .unwrap();
        store.count_scan_events().await.unwrap()
    });
    assert_eq!(n, 80);
}

#[test]
fn a_full_event_queue_drops_and_counts_instead_of_waiting() {
    let app = spawn_app_with(scanaid_server::ServerConfig {
        event_queue: 1,
        ..Default::default()
    });
    // Another connection holds the database's write lock (well inside the store's 5 s busy
    // timeout): the writer is stuck on its first batch, so the one-slot queue fills at once.
    let lock = hold_write_lock(&app);
    for _ in 0..20 {
        assert_eq!(
            get(&app.url(&format!("/c/{PUMP_CODE}")), &[]).status,
            200,
            "a scan is served while its event cannot be written"
        );
    }
    let c = &app.state.events.counters;
    let dropped_while_locked = c.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        dropped_while_locked >= 10,
        "the full queue dropped events instead of waiting: {dropped_while_locked}"
    );
    app.block_on(async move {
        let mut lock = lock;
        sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    });
    app.flush_events();
    let queued = c.queued.load(std::sync::atomic::Ordering::Relaxed);
    let dropped = c.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(queued + dropped, 20);
    let stored: u64 = app.rows("SELECT COUNT(*) FROM scan_events")[0][0]
        .parse()
        .unwrap();
    assert_eq!(
        stored, queued,
        "every queued event is stored, every other one is counted as dropped"
    );
}

/// Takes the database's write lock on a connection of the app's pool (`BEGIN IMMEDIATE`): writers
/// wait (up to the store's 5 s busy timeout) until it is rolled back.
fn hold_write_lock(app: &TestApp) -> sqlx::pool::PoolConnection<sqlx::Sqlite> {
    let pool = app.state.store.pool().clone();
    app.block_on(async move {
        let mut connection = pool.acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *connection)
            .await
            .unwrap();
        connection
    })
}

fn at(rfc3339: &str) -> scanaid_server::ServerConfig {
    scanaid_server::ServerConfig {
        fixed_time: Some(rfc3339.parse().unwrap()),
        ..Default::default()
    }
}

fn bundled_rules() -> scanaid_server::rules::RuleSet {
    let text = std::fs::read_to_string(repo().join("manuals/rules.toml")).unwrap();
    scanaid_server::rules::RuleSet::parse(&text).unwrap()
}

#[test]
fn after_hours_the_bundled_rules_put_the_on_call_contact_first() {
    // Tuesday 20:30 in Chicago.
    let app = spawn_app_with_rules(bundled_rules(), at("2026-11-25T02:30:00Z"));
    let page = get(&app.url(&format!("/c/{PUMP_CODE}")), &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Outside opening hours: who to call now"),
        "{}",
        page.body
    );
    assert!(page.body.contains("pager 4411"));
    assert!(
        page.body.contains("Operator quick start"),
        "still the operator's page under it"
    );
    app.flush_events();
    assert_eq!(
        app.rows("SELECT rule, destination FROM scan_events"),
        vec![vec!["mercy-after-hours", "page:on-call"]]
    );
    // The same hour at the same site, on the cafeteria's dishwasher: its support desk (Facilities)
    // works around the clock, so nobody is sent to the on-call line against the hours shown.
    let dishwasher = get(&app.url("/c/FdL5KF7C"), &[]);
    assert_eq!(dishwasher.status, 200);
    assert!(
        !dishwasher.body.contains("who to call now"),
        "{}",
        dishwasher.body
    );
    assert!(
        dishwasher.body.contains("Mon-Sun 00:00-24:00"),
        "{}",
        dishwasher.body
    );
    drop(app);

    // The same scan at 10:00 on a weekday: the default page.
    let app = spawn_app_with_rules(bundled_rules(), at("2026-11-24T16:00:00Z"));
    let page = get(&app.url(&format!("/c/{PUMP_CODE}")), &[]);
    assert!(!page.body.contains("who to call now"));
    app.flush_events();
    assert_eq!(
        app.rows("SELECT rule, destination FROM scan_events"),
        vec![vec!["default", "page:anonymous"]]
    );
}

#[test]
fn redirects_deep_links_and_page_variants_follow_their_conditions() {
    let rules = scanaid_server::rules::RuleSet::parse(
        r#"
[[rule]]
id = "spanish-brochure"
code = "tJ6bpUpB"
when = { language = "es" }
then = { redirect = "https://example.org/vp300/es" }

[[rule]]
id = "returning-android"
asset = "pump-icu-07"
when = { all = [ { device = "android" }, { returning = true } ] }
then = { deep_link = "veltra://pump/VP3-22-004417" }

[[rule]]
id = "pole-clamp-clinicians"
when = { placement = "pole-clamp" }
then = { page = "clinician" }
"#,
    )
    .unwrap();
    let app = spawn_app_with_rules(rules, at("2026-11-24T16:00:00Z"));
    let spanish = get(&app.url(&format!("/c/{PUMP_CODE}?lang=es")), &[]);
    assert_eq!(spanish.status, 302, "temporary redirects only");
    assert_eq!(
        spanish.header("location"),
        Some("https://example.org/vp300/es")
    );
    assert_eq!(spanish.header("cache-control"), Some("no-store"));

    let first = get(
        &app.url(&format!("/c/{PUMP_CODE}")),
        &[("user-agent", ANDROID)],
    );
    assert_eq!(first.status, 200, "a first scan gets the page");
    let again = get(
        &app.url(&format!("/c/{PUMP_CODE}")),
        &[
            ("user-agent", ANDROID),
            ("cookie", &format!("scanaid_seen={PUMP_CODE}")),
        ],
    );
    assert_eq!(again.status, 302);
    assert_eq!(
        again.header("location"),
        Some("veltra://pump/VP3-22-004417")
    );

    // The pole-clamp label leads with the clinician's sections, but an anonymous reader still sees only
    // what anonymous readers may read.
    let clamp = get(&app.url("/c/azpMAym3"), &[]);
    assert_eq!(clamp.status, 200);
    assert!(clamp.body.contains("Alarms at the bedside"));
    assert!(
        !clamp.body.contains("Clinical considerations"),
        "a variant never widens what a role may read"
    );

    app.flush_events();
    assert_eq!(
        app.rows("SELECT rule, destination FROM scan_events ORDER BY id"),
        vec![
            vec!["spanish-brochure", "redirect:https://example.org/vp300/es"],
            vec!["default", "page:anonymous"],
            vec!["returning-android", "redirect:veltra://pump/VP3-22-004417"],
            vec!["pole-clamp-clinicians", "page:clinician"],
        ]
    );
}

#[test]
fn page_content_is_built_once_per_generation_and_matches_a_fresh_build() {
    use scanaid_server::pages::{role_page_content, PageCache};
    use scanaid_server::roles::Role;
    use std::sync::Arc;
    let embedder = embedder();
    let index = scanaid_indexer::SearchIndex::open_for(&bundled_index_dir(), embedder.as_ref())
        .expect("index opens");
    let manuals = vec!["vp300-service".to_string()];
    let summary = |c: &scanaid_server::pages::PageContent| {
        let titles = |v: &[scanaid_server::pages::SectionView]| {
            v.iter()
                .map(|s| format!("{}#{}:{}", s.title, s.anchor, s.html))
                .collect::<Vec<_>>()
        };
        (
            titles(&c.highlights),
            titles(&c.contents),
            c.languages.clone(),
        )
    };
    let cache = PageCache::default();
    let first = cache.content(&index, &manuals, Role::Technician, Role::Technician, "en");
    let again = cache.content(&index, &manuals, Role::Technician, Role::Technician, "en");
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second scan reuses the page"
    );
    let fresh = role_page_content(&index, &manuals, Role::Technician, Role::Technician, "en");
    assert_eq!(summary(&first), summary(&fresh));
    assert!(!first.highlights.is_empty());
    // Another role is another page: an operator never gets the technician's cached content.
    let operator = cache.content(&index, &manuals, Role::Operator, Role::Operator, "en");
    assert_ne!(summary(&operator), summary(&first));
    // A new generation (same files under another name here) is built anew, not served from the old.
    let next = scanaid_indexer::SearchIndex::open_generation_dir(&index.dir, "next-generation")
        .expect("reopens");
    let rebuilt = cache.content(&next, &manuals, Role::Technician, Role::Technician, "en");
    assert!(!Arc::ptr_eq(&first, &rebuilt));
    assert_eq!(summary(&rebuilt), summary(&fresh));
}

#[test]
fn a_manual_only_in_another_language_is_shown_unless_one_in_the_readers_covers_it() {
    use scanaid_server::pages::role_page_content;
    use scanaid_server::roles::Role;
    let embedder = embedder();
    let index = scanaid_indexer::SearchIndex::open_for(&bundled_index_dir(), embedder.as_ref())
        .expect("index opens");
    // The pump has an English service manual and a Spanish operator manual.
    let manuals = vec!["vp300-service".to_string(), "vp300-operador-es".to_string()];
    let from = |role: Role, language: &str| {
        let content = role_page_content(&index, &manuals, role, role, language);
        let mut ids: Vec<String> = content
            .highlights
            .iter()
            .chain(&content.contents)
            .map(|s| s.manual_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    // A technician who reads Spanish keeps the service content, which exists only in English.
    assert_eq!(
        from(Role::Technician, "es"),
        vec!["vp300-operador-es", "vp300-service"]
    );
    // In English the service manual covers what the Spanish one offers a technician.
    assert_eq!(from(Role::Technician, "en"), vec!["vp300-service"]);
    // An operator gets one manual in either language, never the other beside it.
    assert_eq!(from(Role::Operator, "es"), vec!["vp300-operador-es"]);
    assert_eq!(from(Role::Operator, "en"), vec!["vp300-service"]);
    // No manual in the reader's language: everything the role may read.
    assert_eq!(
        from(Role::Technician, "fr"),
        vec!["vp300-operador-es", "vp300-service"]
    );
}

#[test]
fn admins_explain_check_and_save_routing_rules() {
    // Tuesday 20:30 in Chicago: the bundled after-hours rule holds for the Mercy pump.
    let app = spawn_app_with_rules(bundled_rules(), at("2026-11-25T02:30:00Z"));
    let rules_url = app.url("/admin/rules");
    assert_eq!(get(&rules_url, &[]).status, 303, "signed-out: to sign-in");
    let admin = session_cookie(&app, "admin", &app.admin_password);
    let cookie = [("cookie", admin.as_str())];
    let page = get(&rules_url, &cookie);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("mercy-after-hours"), "{}", page.body);
    assert!(
        page.body.contains("manuals/rules.toml"),
        "says where the rules come from"
    );

    // Explain at the server's clock, then at a site-local time when the rule does not hold.
    let explained = get(
        &app.url(&format!(
            "/admin/rules?code={PUMP_CODE}&role=anonymous&lang=en&device=ios&at="
        )),
        &cookie,
    );
    assert_eq!(explained.status, 200);
    assert!(
        explained.body.contains("mercy-after-hours: fired")
            && explained.body.contains("rule mercy-after-hours: "),
        "{}",
        explained.body
    );
    let morning = get(
        &app.url(&format!(
            "/admin/rules?code={PUMP_CODE}&role=anonymous&at=2026-11-24+10%3A00"
        )),
        &cookie,
    );
    assert!(
        morning.body.contains("mercy-after-hours: did not match"),
        "{}",
        morning.body
    );
    assert!(
        morning.body.contains("default: the anonymous page"),
        "{}",
        morning.body
    );
    let unknown = get(&app.url("/admin/rules?code=nope2345"), &cookie);
    assert_eq!(unknown.status, 422);
    assert!(unknown.body.contains("unknown code"));
    let bad_time = get(
        &app.url(&format!("/admin/rules?code={PUMP_CODE}&at=teatime")),
        &cookie,
    );
    assert_eq!(bad_time.status, 422);

    let csrf = page
        .hidden("csrf")
        .expect("the editor carries a CSRF token");
    // A broken edit is refused, shown back whole, and changes nothing.
    let broken = "[[rule]]\nid = \"oops\"\nthen = { teleport = \"somewhere\" }\n";
    let refused = post_form(&rules_url, &cookie, &[("csrf", &csrf), ("toml", broken)]);
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("Not saved"), "{}", refused.body);
    assert!(refused.body.contains("teleport"), "the edit is not lost");
    // Rules under their own limit are read whatever URL-encoding makes of them (a comment of '='
    // signs triples in the form), and rules over it come back with the reason, not a 413 page.
    let padded = format!("# {}\n{broken}", "=".repeat(30 * 1024));
    let read = post_form(&rules_url, &cookie, &[("csrf", &csrf), ("toml", &padded)]);
    assert_eq!(read.status, 422, "{}", read.body);
    assert!(read.body.contains("teleport"), "{}", read.body);
    let long = format!("# {}\n{broken}", "=".repeat(60 * 1024));
    let over = post_form(&rules_url, &cookie, &[("csrf", &csrf), ("toml", &long)]);
    assert_eq!(over.status, 422, "{}", over.body);
    assert!(over.body.contains("KB"), "says the limit: {}", over.body);
    assert!(
        over.body.contains(&"=".repeat(60 * 1024)),
        "the edit is not lost"
    );
    assert!(get(&app.url(&format!("/c/{PUMP_CODE}")), &[])
        .body
        .contains("who to call now"));
    // A forged form is refused.
    let redirect = format!(
        "[[rule]]\nid = \"pump-to-vendor\"\ncode = \"{PUMP_CODE}\"\nthen = {{ redirect = \"https://vendor.example/vp300\" }}\n"
    );
    let forged = post_form(
        &rules_url,
        &cookie,
        &[("csrf", "forged"), ("toml", &redirect)],
    );
    assert_eq!(forged.status, 403);

    // Checking a text reads it and says what would never fire in it, and saves nothing.
    let page = get(&rules_url, &cookie);
    let base = page.hidden("base").expect("the editor carries its base");
    let shadowed = format!("{redirect}\n[[rule]]\nid = \"never\"\ncode = \"{PUMP_CODE}\"\nthen = {{ page = \"operator\" }}\n");
    let checked = post_form(
        &rules_url,
        &cookie,
        &[
            ("csrf", &csrf),
            ("toml", &shadowed),
            ("action", "check"),
            ("base", &base),
        ],
    );
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert!(
        checked.body.contains("Not saved") && checked.body.contains("would never fire"),
        "{}",
        checked.body
    );
    assert!(checked.body.contains("never"), "{}", checked.body);
    assert_eq!(get(&app.url(&format!("/c/{PUMP_CODE}")), &[]).status, 200);

    // A good edit is saved and serves the next scan, no restart.
    let saved = post_form(
        &rules_url,
        &cookie,
        &[("csrf", &csrf), ("toml", &redirect), ("base", &base)],
    );
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(saved.body.contains("Saved 1 rule"), "{}", saved.body);
    assert!(saved.body.contains("by admin"));
    let scan = get(&app.url(&format!("/c/{PUMP_CODE}")), &[]);
    assert_eq!(scan.status, 302);
    assert_eq!(
        scan.header("location"),
        Some("https://vendor.example/vp300")
    );
    // A second administrator, on a page opened before that save, does not undo it unseen, also
    // after a first attempt that did not parse (its page keeps the base it was opened with).
    let typo = post_form(
        &rules_url,
        &cookie,
        &[("csrf", &csrf), ("toml", broken), ("base", &base)],
    );
    assert_eq!(typo.status, 422);
    assert_eq!(typo.hidden("base").as_deref(), Some(base.as_str()));
    let stale = post_form(
        &rules_url,
        &cookie,
        &[("csrf", &csrf), ("toml", "# nothing\n"), ("base", &base)],
    );
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(
        stale.body.contains("saved again after you opened them")
            && stale.body.contains("# nothing"),
        "{}",
        stale.body
    );
    assert_eq!(get(&app.url(&format!("/c/{PUMP_CODE}")), &[]).status, 302);

    // The history: save the bundled rules back over the redirect, then load version 1 (the redirect)
    // into the editor; it is not in force until saved.
    let bundled = std::fs::read_to_string(repo().join("manuals/rules.toml")).unwrap();
    let back = post_form(&rules_url, &cookie, &[("csrf", &csrf), ("toml", &bundled)]);
    assert_eq!(back.status, 200, "{}", back.body);
    assert!(get(&app.url(&format!("/c/{PUMP_CODE}")), &[])
        .body
        .contains("who to call now"));
    let listed = get(&rules_url, &cookie);
    assert!(listed.body.contains("load version 1") && listed.body.contains("load version 2"));
    let loaded = get(&app.url("/admin/rules?version=1"), &cookie);
    assert_eq!(loaded.status, 200);
    assert!(
        loaded.body.contains("vendor.example/vp300"),
        "{}",
        loaded.body
    );
    assert!(loaded.body.contains("not in force until you save"));
    assert!(get(&app.url(&format!("/c/{PUMP_CODE}")), &[])
        .body
        .contains("who to call now"));
    assert_eq!(
        get(&app.url("/admin/rules?version=99"), &cookie).status,
        422
    );
    assert_eq!(
        get(&app.url("/admin/rules?version=abc"), &cookie).status,
        422
    );
    let again = post_form(&rules_url, &cookie, &[("csrf", &csrf), ("toml", &redirect)]);
    assert_eq!(again.status, 200, "{}", again.body);

    // What a restart does: the store's saved rules win over the file's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reloaded = runtime.block_on(async {
        let store = scanaid_server::store::Store::open(app.data.path())
            .await
            .unwrap();
        scanaid_server::rules_in_force(&store, bundled_rules())
            .await
            .unwrap()
    });
    assert_eq!(reloaded.rules.len(), 1);
    assert_eq!(reloaded.rules[0].id, "pump-to-vendor");
}

#[test]
fn served_over_tls_pages_ask_for_https_only_and_cookies_are_secure() {
    let app = spawn_app_with(scanaid_server::ServerConfig {
        secure_cookies: true,
        ..scanaid_server::ServerConfig::default()
    });
    let page = get(&app.url(&format!("/c/{PUMP_CODE}")), &[]);
    assert_eq!(
        page.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let seen = page
        .all_headers("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("scanaid_seen="))
        .unwrap();
    assert!(seen.contains("; Secure"), "{seen}");
}

/// Signs `username` in through the form shown at `form_url` (a `/signin` address, maybe with
/// `next`), posting `next` as the form has it, or `post_next` instead when given.
fn sign_in_from(
    app: &TestApp,
    form_url: &str,
    username: &str,
    password: &str,
    post_next: Option<&str>,
) -> Reply {
    let form = get(&app.url(form_url), &[]);
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf_cookie = form.set_cookie("scanaid_csrf").unwrap();
    let csrf = form.hidden("csrf").unwrap();
    let next = post_next
        .map(str::to_string)
        .or_else(|| form.hidden("next"))
        .unwrap_or_default();
    post_form(
        &app.url("/signin"),
        &[("cookie", &format!("scanaid_csrf={csrf_cookie}"))],
        &[
            ("csrf", &csrf),
            ("username", username),
            ("password", password),
            ("next", &next),
        ],
    )
}

#[test]
fn signing_in_comes_back_to_the_page_that_asked_or_goes_to_the_roles_own_page() {
    use scanaid_server::roles::Role;
    let app = spawn_app();
    let make = |name: &str, role: Role| {
        let password = format!("{name}-password-long");
        let store = app.state.store.clone();
        let (u, p) = (name.to_string(), password.clone());
        app.block_on(async move { scanaid_server::auth::create_user(&store, &u, &p, role).await })
            .unwrap();
        password
    };

    // A technician on a pump's operator page signs in from its link and comes back to the pump,
    // now with its service content.
    let tech = make("tech.return", Role::Technician);
    let page = get(&app.url(&format!("/c/{PUMP_CODE}")), &[]);
    // The page's language comes back too.
    let link = format!("href=\"/signin?next=%2Fc%2F{PUMP_CODE}%3Flang%3Den\"");
    assert!(page.body.contains(&link), "{}", page.body);
    // The sign-in page offers the way back without signing in.
    let form = get(
        &app.url(&format!("/signin?next=%2Fc%2F{PUMP_CODE}%3Flang%3Den")),
        &[],
    );
    assert!(
        form.body.contains(&format!(
            "href=\"/c/{PUMP_CODE}?lang=en\" id=\"back-without-signing-in\""
        )),
        "{}",
        form.body
    );
    let signed = sign_in_from(
        &app,
        &format!("/signin?next=%2Fc%2F{PUMP_CODE}%3Flang%3Den"),
        "tech.return",
        &tech,
        None,
    );
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(
        signed.header("location"),
        Some(format!("/c/{PUMP_CODE}?lang=en").as_str())
    );

    // A staff page asked for without a session sends its own address along.
    let agent = make("agent.return", Role::Agent);
    let asked = get(&app.url("/support/tickets/7?x=1"), &[]);
    assert_eq!(asked.status, 303);
    let to_signin = asked.header("location").unwrap().to_string();
    assert_eq!(to_signin, "/signin?next=%2Fsupport%2Ftickets%2F7%3Fx%3D1");
    let signed = sign_in_from(&app, &to_signin, "agent.return", &agent, None);
    assert_eq!(signed.header("location"), Some("/support/tickets/7?x=1"));
    // Event streams and APIs are not pages to come back to.
    assert_eq!(
        get(&app.url("/support/events"), &[]).header("location"),
        Some("/signin")
    );

    // Another site, or anything that is not one of our page paths, is never where a sign-in
    // leads: the role's own page instead.
    for hostile in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "/api/chat",
    ] {
        let form = get(
            &app.url(&format!(
                "/signin?next={}",
                hostile
                    .replace('/', "%2F")
                    .replace(':', "%3A")
                    .replace('\\', "%5C")
            )),
            &[],
        );
        assert_eq!(form.status, 200);
        assert!(form.hidden("next").is_none(), "{hostile}: {}", form.body);
        assert!(
            !form.body.contains("back-without-signing-in"),
            "{hostile}: {}",
            form.body
        );
        let signed = sign_in_from(&app, "/signin", "agent.return", &agent, Some(hostile));
        assert_eq!(signed.header("location"), Some("/support"), "{hostile}");
    }

    // Without a page to return to, each role starts from its own work.
    for (name, role, landing) in [
        ("admin.return", Role::Admin, "/admin"),
        ("nurse.return", Role::Clinician, "/patients"),
        ("editor.return", Role::Editor, "/admin/manuals"),
        ("biomed.return", Role::Biomed, "/"),
    ] {
        let password = make(name, role);
        let signed = sign_in_from(&app, "/signin", name, &password, None);
        assert_eq!(signed.header("location"), Some(landing), "{name}");
    }
    // A wrong password keeps the page to return to on the form shown again.
    let wrong = sign_in_from(
        &app,
        "/signin?next=%2Fpatients",
        "nurse.return",
        "not-the-password",
        None,
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.hidden("next").as_deref(), Some("/patients"));

    // The administration home links every admin page, and each of them opens for an admin.
    let admin = session_cookie(&app, "admin.return", "admin.return-password-long");
    let home = get(&app.url("/admin"), &[("cookie", &admin)]);
    assert_eq!(home.status, 200, "{}", home.body);
    let links: Vec<&str> = home
        .body
        .split("<a href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.starts_with('/') && !href.starts_with("/account"))
        .collect();
    assert!(links.len() >= 9, "{links:?}");
    for href in links {
        let linked = get(&app.url(href), &[("cookie", &admin)]);
        // The manuals pages need the manuals folder this test server runs without (403 saying so).
        let expected = if href == "/admin/manuals" { 403 } else { 200 };
        assert_eq!(linked.status, expected, "{href}: {}", linked.body);
    }
    // Patients' papers are not an administrator's to read.
    assert_eq!(
        get(&app.url("/patients"), &[("cookie", &admin)]).status,
        403
    );
    let agent_cookie = session_cookie(&app, "agent.return", &agent);
    assert_eq!(
        get(&app.url("/admin"), &[("cookie", &agent_cookie)]).status,
        403
    );
}

#[test]
fn every_start_brings_the_store_in_line_with_assets_toml() {
    use scanaid_server::registry::Registry;
    use scanaid_server::store::Store;
    let registry = |contact: &str, assets: &str, codes: &[(&str, &str)]| {
        let mut text = format!(
            "[[site]]\nid = \"s\"\nname = \"Site\"\ntimezone = \"Europe/Madrid\"\ncontact = \"{contact}\"\n\n\
             [[queue]]\nid = \"q\"\nname = \"Queue\"\nsite = \"s\"\n\n{assets}"
        );
        for (code, asset) in codes {
            text.push_str(&format!(
                "\n[[code]]\ncode = \"{code}\"\nasset = \"{asset}\"\nplacement = \"nameplate\"\n"
            ));
        }
        Registry::parse(&text).unwrap()
    };
    let asset = |id: &str, manuals: &str| {
        format!(
            "[[asset]]\nid = \"{id}\"\nname = \"{id}\"\nmodel = \"M\"\nsite = \"s\"\nqueue = \"q\"\nmanuals = [{manuals}]\n\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(dir.path()).await.unwrap();
        let first = registry(
            "ext. 1",
            &(asset("a1", "\"m1\"") + &asset("a2", "")),
            &[("AAAAaaaa1", "a1"), ("BBBBbbbb2", "a2"), ("CCCCcccc3", "a1")],
        );
        let synced = store.sync_registry(&first).await.unwrap();
        assert!(synced.first_start);
        assert_eq!(
            (synced.sites_added, synced.assets_added, synced.codes_added),
            (1, 2, 3)
        );
        // A label taken out of service, and a discharge code, which is the store's own.
        assert!(store.retire_code("CCCCcccc3").await.unwrap());
        sqlx::query("INSERT INTO codes (code, kind, asset_id, placement, created_at) VALUES ('DischargeCode0000000001', 'discharge', NULL, 'discharge-papers', '2026-01-01T00:00:00.000Z')")
            .execute(store.pool())
            .await
            .unwrap();

        // The file changes: a new phone number, a manual added to a1, a new machine with its
        // label, one label gone, and the retired label listed again.
        let second = registry(
            "ext. 2",
            &(asset("a1", "\"m1\", \"m2\"") + &asset("a2", "") + &asset("a3", "\"m3\"")),
            &[("AAAAaaaa1", "a1"), ("CCCCcccc3", "a1"), ("DDDDdddd4", "a3")],
        );
        let synced = store.sync_registry(&second).await.unwrap();
        assert!(!synced.first_start);
        assert_eq!(
            (
                synced.sites_added,
                synced.assets_added,
                synced.codes_added,
                synced.codes_retired
            ),
            (0, 1, 1, 1)
        );
        assert_eq!(synced.relisted_retired, vec!["CCCCcccc3".to_string()]);
        assert!(synced.summary().unwrap().contains("they stay retired"));

        let resolved = |code: &'static str| {
            let store = store.clone();
            async move { store.resolve_code(code).await.unwrap().unwrap() }
        };
        let a1 = resolved("AAAAaaaa1").await;
        assert_eq!(a1.site.as_ref().unwrap().contact, "ext. 2");
        assert_eq!(a1.manual_ids, vec!["m1".to_string(), "m2".to_string()]);
        assert!(a1.code.retired_at.is_none());
        let a3 = resolved("DDDDdddd4").await;
        assert_eq!(a3.asset.as_ref().unwrap().id, "a3");
        assert!(a3.code.retired_at.is_none());
        assert!(resolved("BBBBbbbb2").await.code.retired_at.is_some());
        assert!(resolved("CCCCcccc3").await.code.retired_at.is_some());
        assert!(resolved("DischargeCode0000000001")
            .await
            .code
            .retired_at
            .is_none());

        // A wrong or older file (a replica started with last month's) retires what it lacks, and
        // the right one, at the next start, brings those codes back; a deliberate retirement stays.
        let older = registry(
            "ext. 2",
            &(asset("a1", "\"m1\", \"m2\"") + &asset("a2", "") + &asset("a3", "\"m3\"")),
            &[("AAAAaaaa1", "a1"), ("CCCCcccc3", "a1")],
        );
        assert_eq!(store.sync_registry(&older).await.unwrap().codes_retired, 1);
        assert!(resolved("DDDDdddd4").await.code.retired_at.is_some());
        let synced = store.sync_registry(&second).await.unwrap();
        assert_eq!(synced.codes_restored, 1);
        assert!(resolved("DDDDdddd4").await.code.retired_at.is_none());
        assert!(resolved("CCCCcccc3").await.code.retired_at.is_some());
        // A file that lists no code at all (cut short) retires nothing.
        let empty = registry("ext. 2", &(asset("a1", "") + &asset("a2", "") + &asset("a3", "")), &[]);
        let synced = store.sync_registry(&empty).await.unwrap();
        assert!(synced.no_codes_listed);
        assert_eq!(synced.codes_retired, 0);
        assert!(resolved("AAAAaaaa1").await.code.retired_at.is_none());
        // An asset the file drops is kept for what names it but offered to no new conversation;
        // a site it drops leaves the public contact list.
        let without_a3 = registry(
            "ext. 2",
            &(asset("a1", "\"m1\", \"m2\"") + &asset("a2", "")),
            &[("AAAAaaaa1", "a1"), ("CCCCcccc3", "a1")],
        );
        let synced = store.sync_registry(&without_a3).await.unwrap();
        assert_eq!(synced.dropped, 1);
        assert!(store.asset("a3").await.unwrap().is_some());
        assert!(store.listed_asset("a3").await.unwrap().is_none());
        assert!(store.listed_asset("a1").await.unwrap().is_some());
        assert_eq!(store.listed_sites().await.unwrap().len(), 1);
        store.sync_registry(&second).await.unwrap();
        assert!(store.listed_asset("a3").await.unwrap().is_some());

        // The same file again changes nothing (the relisted label is still pointed out).
        let synced = store.sync_registry(&second).await.unwrap();
        assert_eq!(
            (
                synced.sites_added,
                synced.assets_added,
                synced.codes_added,
                synced.codes_retired
            ),
            (0, 0, 0, 0)
        );
        // Two servers starting at once on one store take turns; neither fails.
        let other = Store::open(dir.path()).await.unwrap();
        let (one, two) = tokio::join!(store.sync_registry(&second), other.sync_registry(&second));
        one.unwrap();
        two.unwrap();
        other.close().await;
        store.close().await;
    });
}

#[test]
fn a_code_typed_from_under_the_label_opens_as_if_scanned() {
    let app = spawn_app();
    let home = get(&app.url("/"), &[]);
    assert!(home.body.contains("action=\"/go\""), "{}", home.body);
    assert!(
        home.body.contains("href=\"/signin\""),
        "staff can sign in from home"
    );
    // A mistyped code's page offers the box again.
    let unknown = get(&app.url("/c/zzzzzzzz"), &[]);
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("action=\"/go\""));
    for (typed, to) in [
        ("tJ6b-pUpB", format!("/c/{PUMP_CODE}")),
        (" tJ6b pUpB ", format!("/c/{PUMP_CODE}")),
        ("zzzzzzzz", "/c/zzzzzzzz".to_string()),
        // The wrong case opens the one code it can only mean.
        ("TJ6BPUPB", format!("/c/{PUMP_CODE}")),
        ("tj6b-pupb", format!("/c/{PUMP_CODE}")),
        ("<script>", "/".to_string()),
        ("", "/".to_string()),
    ] {
        let query = form_urlencoded_pair("code", typed);
        let went = get(&app.url(&format!("/go?{query}")), &[]);
        assert_eq!(went.status, 303, "{typed:?}");
        assert_eq!(went.header("location"), Some(to.as_str()), "{typed:?}");
    }
    assert_eq!(get(&app.url("/go"), &[]).header("location"), Some("/"));
    // The page's language goes along (only a language the pages speak).
    assert_eq!(
        get(&app.url("/go?code=tj6bpupb&lang=es"), &[]).header("location"),
        Some(format!("/c/{PUMP_CODE}?lang=es").as_str())
    );
    assert_eq!(
        get(&app.url("/go?code=tj6bpupb&lang=%22x"), &[]).header("location"),
        Some(format!("/c/{PUMP_CODE}").as_str())
    );
}

/// `name=value` with the value percent-encoded.
fn form_urlencoded_pair(name: &str, value: &str) -> String {
    let mut out = format!("{name}=");
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A technician at the compressor gets its alarm and service codes first; a Spanish reader of the
/// dishwasher, whose manuals are English only, gets the page, its chat and its help in Spanish
/// (the manual itself stays English), and can switch languages; phone numbers are tap-to-call.
#[test]
fn technicians_get_alarm_codes_first_and_a_spanish_reader_gets_a_spanish_page_on_english_equipment()
{
    let app = spawn_app();
    let tech = staff_cookie(&app, "tech-codes", scanaid_server::roles::Role::Technician);
    let page = get(&app.url("/c/85G2cjxt"), &[("cookie", &tech)]);
    assert_eq!(page.status, 200);
    let first = between(&page.body, "<section class=\"card section\"", "</h2>");
    assert!(first.contains("Alarm and service codes"), "{first}");

    let spanish = get(
        &app.url("/c/FdL5KF7C"),
        &[("accept-language", "es-ES,es;q=0.9")],
    );
    assert_eq!(spanish.status, 200);
    assert!(
        spanish.body.contains("<html lang=\"es\""),
        "{}",
        &spanish.body[..400]
    );
    assert!(
        spanish.body.contains("Hablar con una persona"),
        "the chat's help in Spanish"
    );
    assert!(
        spanish.body.contains("hreflang=\"en\"") && spanish.body.contains("hreflang=\"es\""),
        "both languages offered"
    );
    assert!(
        spanish.body.contains("href=\"tel:"),
        "the site's number is a link: {}",
        spanish.body
    );
    // The English manual's sections on the Spanish page say they are English (screen readers
    // read them with an English voice).
    assert!(
        spanish.body.contains("<h2 lang=\"en\">"),
        "{}",
        spanish.body
    );
    app.flush_events();
    assert!(app
        .rows("SELECT language FROM scan_events WHERE code = 'FdL5KF7C'")
        .iter()
        .any(|r| r[0] == "es"));
}

/// A machine served by a support desk at another site: its page gives the desk's hours in the
/// desk's own time zone (as its tickets do), and `queue_open` reads them there.
#[test]
fn a_desk_at_another_site_is_open_or_closed_by_its_own_clock() {
    // Tuesday 18:30 in Chicago, 17:30 in Denver, where Building Engineering works until 19:00.
    let app = spawn_app_with_rules(bundled_rules(), at("2026-11-25T00:30:00Z"));
    app.rows("UPDATE assets SET queue_id = 'meridian-engineering' WHERE id = 'pump-icu-07'");
    let page = get(&app.url(&format!("/c/{PUMP_CODE}")), &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Mon-Fri 06:00-19:00 (America/Denver)"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("who to call now"),
        "the desk is open in Denver: {}",
        page.body
    );
    drop(app);
    // Two hours later (20:30 in Chicago, 19:30 in Denver) the desk is closed.
    let app = spawn_app_with_rules(bundled_rules(), at("2026-11-25T02:30:00Z"));
    app.rows("UPDATE assets SET queue_id = 'meridian-engineering' WHERE id = 'pump-icu-07'");
    let page = get(&app.url(&format!("/c/{PUMP_CODE}")), &[]);
    assert!(page.body.contains("who to call now"), "{}", page.body);
}
