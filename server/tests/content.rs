//! End-to-end: content editors keep the manuals. A text with problems is refused with each problem
//! and its line and nothing changes; a clean edit is published by a background re-index while the
//! site keeps serving, after which the chat cites the new text at its new revision; a rollback
//! serves the previous generation again and restores the file.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use scanaid_server::roles::Role;

const MANUAL: &str = "equipment/vp300-service.md";
const NEW_SECTION: &str = "\n## Flow sensor purge {#flow-sensor-purge}\n\nTo purge the flow sensor, flush it with 40 ml of sterile saline through the purge port marked FS-9, then run the self-test.\n";

fn edited(original: &str) -> String {
    let text = original.replace("revision = \"C (2026-03-14)\"", "revision = \"D (test)\"");
    assert_ne!(
        text, original,
        "the revision line is where the test expects it"
    );
    format!("{text}{NEW_SECTION}")
}

/// The job a publish, deletion or override redirected to: the last segment of its `Location`.
fn job_of(reply: &Reply) -> String {
    reply
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// Reads a job's event stream to its end; the `done` event's JSON.
fn wait_for_job(app: &TestApp, cookie: &str, job: &str) -> serde_json::Value {
    let response = agent()
        .get(&app.url(&format!("/admin/jobs/{job}/events")))
        .set("cookie", cookie)
        .timeout(Duration::from_secs(300))
        .call()
        .expect("the event stream opens");
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = String::new();
    response.into_reader().read_to_string(&mut body).unwrap();
    let done = body
        .split("\n\n")
        .find(|e| e.contains("event: done"))
        .unwrap_or_else(|| panic!("no done event in {body}"));
    let data = done.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    serde_json::from_str(data).unwrap()
}

/// Posts the editor's form for the pump's service manual: `action` is `check` or `publish`.
fn post_manual(app: &TestApp, cookie: &str, csrf: &str, text: &str, action: &str) -> Reply {
    post_form(
        &app.url("/admin/manuals"),
        &[("cookie", cookie)],
        &[
            ("csrf", csrf),
            ("original", "vp300-service"),
            ("markdown", text),
            ("action", action),
        ],
    )
}

fn ask(app: &TestApp, cookie: &str, question: &str) -> serde_json::Value {
    let body = serde_json::json!({"code": "tJ6bpUpB", "message": question}).to_string();
    let reply = post_json(&app.url("/api/chat"), &[("cookie", cookie)], &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

fn cites_purge_section(answer: &serde_json::Value) -> bool {
    answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["url"].as_str().unwrap().ends_with("#flow-sensor-purge"))
}

#[test]
fn editors_check_publish_and_roll_back_a_manual_while_the_site_keeps_serving() {
    let (app, manuals, index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor1", Role::Editor);
    let technician = staff_cookie(&app, "tech1", Role::Technician);
    let original = std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap();

    // Only editors and admins.
    assert_eq!(
        get(&app.url("/admin/manuals"), &[("cookie", &technician)]).status,
        403
    );
    assert_eq!(get(&app.url("/admin/manuals"), &[]).status, 303);
    let list = get(&app.url("/admin/manuals"), &[("cookie", &editor)]);
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains("id=\"manual-vp300-service\""),
        "{}",
        list.body
    );
    let form = get(
        &app.url("/admin/manuals/vp300-service"),
        &[("cookie", &editor)],
    );
    assert_eq!(form.status, 200);
    assert!(
        form.body.contains("id = &#34;vp300-service&#34;"),
        "the file is in the editor"
    );
    assert_eq!(
        get(
            &app.url("/admin/manuals/no-such-manual"),
            &[("cookie", &editor)]
        )
        .status,
        404
    );
    let csrf = form.hidden("csrf").unwrap();

    // A text with problems: every one listed with its line, nothing published, nothing written.
    let broken = original.replace("models = [\"VP-300\"]", "models = [\"VP-3000\"]")
        + "\nSee [the purge](#no-such-anchor).\n\n![](purge.png)\n";
    let refused = post_manual(&app, &editor, &csrf, &broken, "publish");
    assert_eq!(refused.status, 422, "{}", refused.body);
    for expected in [
        "line 4: equipment model &#34;VP-3000&#34; is not the model of any registered asset",
        "#no-such-anchor, but no section",
        "image purge.png has no alt text",
    ] {
        assert!(
            refused.body.contains(expected),
            "{expected}\n{}",
            refused.body
        );
    }
    assert_eq!(
        std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap(),
        original
    );
    assert_eq!(app.rows("SELECT COUNT(*) FROM index_jobs")[0][0], "0");

    // A clean edit: checked first (the chunk preview shows the new section), then published.
    let text = edited(&original);
    let checked = post_manual(&app, &editor, &csrf, &text, "check");
    assert_eq!(checked.status, 200);
    assert!(checked.body.contains("id=\"clean\""), "{}", checked.body);
    assert!(checked.body.contains("Flow sensor purge"));
    let before = app.state.index().generation.clone();
    assert!(!cites_purge_section(&ask(
        &app,
        &technician,
        "how do I purge the flow sensor with saline?"
    )));

    let published = post_manual(&app, &editor, &csrf, &text, "publish");
    assert_eq!(published.status, 303, "{}", published.body);
    let job_url = published.header("location").unwrap().to_string();
    let job = job_of(&published);
    // The site keeps serving while the job runs.
    assert_eq!(get(&app.url("/c/tJ6bpUpB"), &[]).status, 200);
    let done = wait_for_job(&app, &editor, &job);
    assert_eq!(done["status"], "promoted", "{done}");
    let after = app.state.index().generation.clone();
    assert_ne!(after, before);
    assert_eq!(done["generation"], after.as_str());
    // Only the changed chunks were embedded.
    let report = done["report"].as_str().unwrap();
    let embedded: usize = report
        .split(", ")
        .find_map(|p| p.strip_suffix(" embedded"))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&embedded), "{report}");

    // The chat cites the new text, at the new revision.
    let answer = ask(
        &app,
        &technician,
        "how do I purge the flow sensor with saline?",
    );
    assert!(cites_purge_section(&answer), "{answer}");
    let cited = answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["url"].as_str().unwrap().ends_with("#flow-sensor-purge"))
        .unwrap();
    assert_eq!(cited["revision"], "D (test)");
    assert!(
        answer["answer"].as_str().unwrap().contains("40 ml"),
        "{answer}"
    );
    let page = get(&app.url(&job_url), &[("cookie", &editor)]);
    assert!(page.body.contains("id=\"rollback\""), "{}", page.body);

    // With the generation it replaced gone from disk, the job offers no rollback and says why.
    let kept = index.path().join("generations").join(&before);
    let aside = index.path().join("aside");
    std::fs::rename(&kept, &aside).unwrap();
    let page = get(&app.url(&job_url), &[("cookie", &editor)]);
    assert!(!page.body.contains("id=\"rollback\""), "{}", page.body);
    let refused = post_form(
        &app.url(&format!("{job_url}/rollback")),
        &[("cookie", &editor)],
        &[("csrf", &csrf)],
    );
    assert_eq!(refused.status, 409);
    assert!(
        refused
            .body
            .contains(&format!("generation {before}, which job"))
            && refused.body.contains("is no longer kept"),
        "{}",
        refused.body
    );
    std::fs::rename(&aside, &kept).unwrap();

    // Roll back: the previous generation at once, the previous text in the file, the old answer.
    let rolled = post_form(
        &app.url(&format!("{job_url}/rollback")),
        &[("cookie", &editor)],
        &[("csrf", &csrf)],
    );
    assert_eq!(rolled.status, 303, "{}", rolled.body);
    assert_eq!(app.state.index().generation, before);
    assert_eq!(
        std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap(),
        original
    );
    assert!(!cites_purge_section(&ask(
        &app,
        &technician,
        "how do I purge the flow sensor with saline?"
    )));
    let again = post_form(
        &app.url(&format!("{job_url}/rollback")),
        &[("cookie", &editor)],
        &[("csrf", &csrf)],
    );
    assert_eq!(again.status, 409);

    // The audit trail has who did what.
    let audit =
        app.rows("SELECT actor, action, COALESCE(manual_id, '') FROM content_audit ORDER BY id");
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("editor1", "publish.refused"),
            ("editor1", "publish"),
            ("editor1", "rollback")
        ]
    );
}

#[test]
fn editors_delete_a_manual_and_can_roll_the_deletion_back() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor-d", Role::Editor);
    // A file that is not a usable manual is listed as editors know it, relative to the folder,
    // never by where the server keeps it.
    std::fs::write(
        manuals.path().join("equipment/half-written.md"),
        "+++\nid = \"half\"\ntitle = \n+++\n# A\n",
    )
    .unwrap();
    let listing = get(&app.url("/admin/manuals"), &[("cookie", &editor)]);
    assert!(
        listing.body.contains("equipment/half-written.md"),
        "{}",
        listing.body
    );
    let folder = manuals.path().display().to_string();
    assert!(!listing.body.contains(&folder), "{}", listing.body);
    std::fs::remove_file(manuals.path().join("equipment/half-written.md")).unwrap();
    let id = "rsc37-instruction";
    let file = manuals.path().join("equipment/rsc37-instruction.md");
    let original = std::fs::read_to_string(&file).unwrap();
    let indexed = |app: &TestApp| {
        app.state
            .index()
            .chunks()
            .iter()
            .filter(|c| c.manual_id == id)
            .count()
    };
    assert!(indexed(&app) > 0);
    let page = get(
        &app.url(&format!("/admin/manuals/{id}")),
        &[("cookie", &editor)],
    );
    assert!(page.body.contains("id=\"delete-manual\""), "{}", page.body);
    let csrf = page.hidden("csrf").unwrap();
    let delete = |confirm: &str| {
        post_form(
            &app.url(&format!("/admin/manuals/{id}/delete")),
            &[("cookie", &editor)],
            &[("csrf", &csrf), ("confirm", confirm)],
        )
    };

    // The id must be typed; otherwise nothing changes.
    let unconfirmed = delete("yes");
    assert_eq!(unconfirmed.status, 422);
    assert!(file.is_file());

    let deleted = delete(id);
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    let job_url = deleted.header("location").unwrap().to_string();
    let job = job_of(&deleted);
    let done = wait_for_job(&app, &editor, &job);
    assert_eq!(done["status"], "promoted", "{done}");
    assert!(!file.exists(), "the file is gone");
    assert_eq!(indexed(&app), 0, "its sections left the index");
    assert_eq!(
        get(
            &app.url(&format!("/admin/manuals/{id}")),
            &[("cookie", &editor)]
        )
        .status,
        404
    );

    // Rolled back: the file and its sections are back.
    let rolled = post_form(
        &app.url(&format!("{job_url}/rollback")),
        &[("cookie", &editor)],
        &[("csrf", &csrf)],
    );
    assert_eq!(rolled.status, 303, "{}", rolled.body);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    assert!(indexed(&app) > 0);
    // The manual's history has the deletion (now rolled back) and the rollback itself.
    let history = get(
        &app.url(&format!("/admin/manuals/{id}/history")),
        &[("cookie", &editor)],
    );
    assert!(history.body.contains(">deleted<"), "{}", history.body);
    assert!(history.body.contains("rolled back"), "{}", history.body);
    assert!(
        history.body.contains("id=\"rollbacks\""),
        "{}",
        history.body
    );
    assert!(history.body.contains("editor-d"), "{}", history.body);
    assert_eq!(
        app.rows("SELECT actor, action, COALESCE(manual_id, '') FROM content_audit ORDER BY id"),
        vec![
            vec!["editor-d", "delete", id],
            vec!["editor-d", "rollback", id],
        ]
    );
}

/// A served manual whose file was broken outside the editor (a hand edit, a sync) does not leave
/// the site because someone published another manual: the publish is stopped and says which file
/// and why. A stopped publish does not block undoing an earlier one, and once that undo changed
/// the file, the stopped text is not forced over it. A rename lets the old id go.
#[test]
fn a_publish_never_takes_another_served_manual_off_the_site() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor-b", Role::Editor);
    let admin = staff_cookie(&app, "admin-b", Role::Admin);
    let served = |app: &TestApp, id: &str| {
        app.state
            .index()
            .chunks()
            .iter()
            .filter(|c| c.manual_id == id)
            .count()
    };
    let pump = manuals.path().join(MANUAL);
    let pump_text = std::fs::read_to_string(&pump).unwrap();
    let form = get(
        &app.url("/admin/manuals/vp300-service"),
        &[("cookie", &editor)],
    );
    let csrf = form.hidden("csrf").unwrap();
    let first = post_manual(&app, &editor, &csrf, &edited(&pump_text), "publish");
    let first_job = job_of(&first);
    assert_eq!(
        wait_for_job(&app, &editor, &first_job)["status"],
        "promoted"
    );

    let rsc37 = manuals.path().join("equipment/rsc37-instruction.md");
    let rsc37_text = std::fs::read_to_string(&rsc37).unwrap();
    assert!(served(&app, "rsc37-instruction") > 0);
    std::fs::write(&rsc37, "+++\nid = \"rsc37-instruction\"\ntitle = \n+++\n").unwrap();
    let more = format!("{}\nPurge again after each patient.\n", edited(&pump_text));
    let published = post_manual(&app, &editor, &csrf, &more, "publish");
    assert_eq!(published.status, 303, "{}", published.body);
    let stopped_job = job_of(&published);
    let done = wait_for_job(&app, &editor, &stopped_job);
    assert_eq!(done["status"], "blocked", "{done}");
    let report = done["report"].as_str().unwrap();
    assert!(
        report.contains("rsc37-instruction: served now, but this build would take it off the site")
            && report.contains("equipment/rsc37-instruction.md"),
        "{report}"
    );
    assert!(
        !report.contains(&manuals.path().display().to_string()),
        "{report}"
    );
    assert!(served(&app, "rsc37-instruction") > 0, "still served");
    assert_eq!(std::fs::read_to_string(&pump).unwrap(), edited(&pump_text));
    std::fs::write(&rsc37, &rsc37_text).unwrap();

    // The stopped job built on nothing: the first publish can still be rolled back. Then the
    // stopped text cannot be forced over the rolled-back file; it can be opened again.
    let page = get(
        &app.url(&format!("/admin/jobs/{first_job}")),
        &[("cookie", &editor)],
    );
    assert!(page.body.contains("id=\"rollback\""), "{}", page.body);
    let rolled = post_form(
        &app.url(&format!("/admin/jobs/{first_job}/rollback")),
        &[("cookie", &editor)],
        &[("csrf", &csrf)],
    );
    assert_eq!(rolled.status, 303, "{}", rolled.body);
    assert_eq!(std::fs::read_to_string(&pump).unwrap(), pump_text);
    let admin_csrf = get(&app.url("/admin/manuals"), &[("cookie", &admin)])
        .hidden("csrf")
        .unwrap();
    let forced = post_form(
        &app.url(&format!("/admin/jobs/{stopped_job}/override")),
        &[("cookie", &admin)],
        &[("csrf", &admin_csrf)],
    );
    assert_eq!(forced.status, 409, "{}", forced.body);
    assert!(forced.body.contains("changed since job"), "{}", forced.body);
    assert_eq!(std::fs::read_to_string(&pump).unwrap(), pump_text);
    let rolled_page = get(
        &app.url(&format!("/admin/jobs/{first_job}")),
        &[("cookie", &editor)],
    );
    assert!(
        rolled_page.body.contains("id=\"reopen\""),
        "{}",
        rolled_page.body
    );

    // Renaming a manual lets its old id go.
    let renamed = pump_text.replace("id = \"vp300-service\"", "id = \"vp300-service-manual\"");
    assert_ne!(renamed, pump_text);
    let published = post_manual(&app, &editor, &csrf, &renamed, "publish");
    assert_eq!(published.status, 303, "{}", published.body);
    let done = wait_for_job(&app, &editor, &job_of(&published));
    assert_eq!(done["status"], "promoted", "{done}");
    assert_eq!(served(&app, "vp300-service"), 0);
    assert!(served(&app, "vp300-service-manual") > 0);
    assert!(served(&app, "rsc37-instruction") > 0);
}

/// Two editors open the same manual; the first publishes. The second's publish is refused (their
/// text kept in the form, the first's on disk) instead of silently undoing the first's change.
#[test]
fn a_publish_over_a_text_someone_else_changed_meanwhile_is_refused_and_keeps_the_text() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let original = std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap();
    let first = staff_cookie(&app, "editor-a", Role::Editor);
    let second = staff_cookie(&app, "editor-b", Role::Editor);
    let open = |cookie: &str| {
        let page = get(
            &app.url("/admin/manuals/vp300-service"),
            &[("cookie", cookie)],
        );
        (page.hidden("csrf").unwrap(), page.hidden("base").unwrap())
    };
    let (csrf_a, base_a) = open(&first);
    let (csrf_b, base_b) = open(&second);
    assert_eq!(base_a, base_b);
    let publish = |cookie: &str, csrf: &str, base: &str, text: &str| {
        post_form(
            &app.url("/admin/manuals"),
            &[("cookie", cookie)],
            &[
                ("csrf", csrf),
                ("original", "vp300-service"),
                ("base", base),
                ("markdown", text),
                ("action", "publish"),
            ],
        )
    };
    let first_text = edited(&original);
    let published = publish(&first, &csrf_a, &base_a, &first_text);
    assert_eq!(published.status, 303, "{}", published.body);
    let job = job_of(&published);
    assert_eq!(wait_for_job(&app, &first, &job)["status"], "promoted");

    // The second editor only fixed a typo elsewhere, from the text before the first's change.
    let second_text = original.replace("revision = \"C (2026-03-14)\"", "revision = \"C2 (typo)\"");
    let refused = publish(&second, &csrf_b, &base_b, &second_text);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("changed since you opened it")
            && refused.body.contains("last published by editor-a"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("revision = &#34;C2 (typo)&#34;"),
        "their text is kept in the form"
    );
    // It shows what changed meanwhile (the first editor's new section) and how their text differs
    // from the file now, so they can bring their change over instead of retyping it.
    let meanwhile = between(&refused.body, "id=\"meanwhile-diff\"", "</table>").to_string();
    assert!(
        meanwhile.contains("+ ## Flow sensor purge {#flow-sensor-purge}"),
        "{}",
        refused.body
    );
    let yours = between(&refused.body, "id=\"yours-diff\"", "</table>").to_string();
    assert!(
        yours.contains("- ## Flow sensor purge {#flow-sensor-purge}")
            && yours.contains("+ revision = &#34;C2 (typo)&#34;"),
        "{yours}"
    );
    assert_eq!(
        std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap(),
        first_text,
        "the first editor's change stands"
    );
    // Reopened, the manual carries the new version, and a publish from it goes through.
    let (csrf_b, base_now) = open(&second);
    assert_ne!(base_now, base_b);
    let merged = first_text.replace("revision = \"D (test)\"", "revision = \"D2 (typo)\"");
    assert_eq!(publish(&second, &csrf_b, &base_now, &merged).status, 303);
}

/// A manual published for a model reaches every machine of that model (its pages and its chat),
/// though `assets.toml` lists it for none of them; another model's machines do not get it.
#[test]
fn a_manual_published_for_a_model_reaches_that_models_machines_without_a_registry_edit() {
    let (app, _manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor-m", Role::Editor);
    let csrf = get(&app.url("/admin/manuals/new"), &[("cookie", &editor)])
        .hidden("csrf")
        .unwrap();
    let pump_page = || get(&app.url(&format!("/c/{PUMP_CODE}")), &[]).body;
    let compressor_page = || get(&app.url("/c/85G2cjxt"), &[]).body;
    assert!(!pump_page().contains("Attaching the pole clamp"));
    let text = "+++\nid = \"vp300-pole-clamp\"\ntitle = \"VP-300 Pole Clamp Guide\"\nmodels = [\"VP-300\"]\n\
                audience = [\"operator\"]\nlanguage = \"en\"\nrevision = \"1\"\n+++\n\n# VP-300 Pole Clamp Guide\n\n\
                ## Attaching the pole clamp\n\nTighten the clamp knob until the pump no longer slides down the pole, \
                then pull on the pump to check that the clamp holds.\n";
    // The check says where readers will meet it: on the VP-300's machines; without a model, on none.
    let check = |text: &str| {
        post_form(
            &app.url("/admin/manuals"),
            &[("cookie", &editor)],
            &[
                ("csrf", &csrf),
                ("original", ""),
                ("markdown", text),
                ("action", "check"),
            ],
        )
    };
    let checked = check(text);
    // The check shows the text as its page will: rendered, section by section, with who reads it.
    let preview = between(&checked.body, "id=\"preview\">", "</section>\n  </section>").to_string();
    assert!(
        preview.contains("<h3>Attaching the pole clamp</h3><p class=\"meta\">For: operator</p><p>Tighten the clamp knob"),
        "{}",
        checked.body
    );
    // What a manual must never put on a page stays text in the preview too.
    let scripted = check(&text.replace(
        "then pull on the pump",
        "then <script>alert(1)</script> pull on the pump",
    ));
    assert!(
        scripted
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        scripted.body
    );
    assert!(
        !scripted.body.contains("<script>alert(1)"),
        "{}",
        scripted.body
    );
    let reach = between(&checked.body, "id=\"reach\" role=\"status\">", "</p>").to_string();
    assert!(
        reach.starts_with("Readers will find it on the page and in the chat of")
            && reach.contains("machine(s)"),
        "{reach}"
    );
    let nowhere = check(&text.replace("models = [\"VP-300\"]", "models = []"));
    assert!(
        nowhere
            .body
            .contains("No machine&#39;s page or chat will include this manual"),
        "{}",
        nowhere.body
    );
    let published = post_form(
        &app.url("/admin/manuals"),
        &[("cookie", &editor)],
        &[
            ("csrf", &csrf),
            ("original", ""),
            ("markdown", text),
            ("action", "publish"),
        ],
    );
    assert_eq!(published.status, 303, "{}", published.body);
    let job = job_of(&published);
    let done = wait_for_job(&app, &editor, &job);
    assert_eq!(done["status"], "promoted", "{done}");
    assert!(pump_page().contains("Attaching the pole clamp"));
    assert!(!compressor_page().contains("Attaching the pole clamp"));
    // The pump's chat answers from it too.
    let answer = ask(
        &app,
        &editor,
        "how do I tighten the pole clamp so the pump stops sliding?",
    );
    assert!(
        answer["citations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["url"].as_str().unwrap().contains("vp300-pole-clamp")),
        "{answer}"
    );
}

#[test]
fn a_new_manual_never_overwrites_a_file_that_holds_another() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor-n", Role::Editor);
    let page = get(&app.url("/admin/manuals/new"), &[("cookie", &editor)]);
    let csrf = page.hidden("csrf").unwrap();
    // A file whose name is free as an id: a renamed manual keeps its old file name, and a file
    // that does not parse has no id at all.
    let taken = manuals.path().join("pump-notes.md");
    let kept = "notes someone is still fixing, without front matter\n";
    std::fs::write(&taken, kept).unwrap();
    let new_manual = |id: &str| {
        format!(
            "+++\nid = \"{id}\"\ntitle = \"Pump notes\"\naudience = [\"technician\"]\n\
             language = \"en\"\nrevision = \"1\"\n+++\n\n# Pump notes\n\n## Priming\n\nOpen the vent.\n"
        )
    };
    let post = |text: &str, action: &str| {
        post_form(
            &app.url("/admin/manuals"),
            &[("cookie", &editor)],
            &[
                ("csrf", &csrf),
                ("original", ""),
                ("markdown", text),
                ("action", action),
            ],
        )
    };
    let checked = post(&new_manual("pump-notes"), "check");
    assert!(
        checked.body.contains("pump-notes.md already exists"),
        "{}",
        checked.body
    );
    let refused = post(&new_manual("pump-notes"), "publish");
    assert!(refused.body.contains("Not published"), "{}", refused.body);
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), kept);
    // A hidden file would never be read back: such an id is refused.
    let hidden = post(&new_manual(".pump-notes"), "check");
    assert!(hidden.body.contains("not start with"), "{}", hidden.body);
    // Another id is free.
    let fine = post(&new_manual("pump-notes-2"), "check");
    assert!(!fine.body.contains("already exists"), "{}", fine.body);
}

#[test]
fn a_job_the_server_stopped_in_gets_its_file_back_at_the_next_start() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let relative = "equipment/rsc37-instruction.md";
    let file = manuals.path().join(relative);
    let original = std::fs::read_to_string(&file).unwrap();
    // What a publish had done when the server stopped: the new text written and recorded, its
    // job still running.
    let unpublished = format!("{original}\n## Never promoted\n\nThis text was never served.\n");
    std::fs::write(&file, &unpublished).unwrap();
    app.rows(&format!(
        "INSERT INTO manual_revisions (manual_id, revision, markdown, previous_markdown, file, published_by, published_at) \
         VALUES ('rsc37-instruction', 'X', '{}', '{}', '{relative}', 'editor-x', '2026-12-06T00:00:00Z')",
        unpublished.replace('\'', "''"),
        original.replace('\'', "''")
    ));
    app.rows(
        "INSERT INTO index_jobs (kind, manual_id, revision_id, status, previous_generation, started_by, started_at) \
         SELECT 'publish', 'rsc37-instruction', MAX(id), 'running', NULL, 'editor-x', '2026-12-06T00:00:00Z' FROM manual_revisions",
    );
    let config = app.state.config.clone();
    let data = app.shutdown();
    let again = restart_on(data, config);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        original,
        "the folder holds what the site serves again"
    );
    let job = again.rows("SELECT status, report FROM index_jobs");
    assert_eq!(job[0][0], "failed");
    assert!(
        job[0][1].contains("the file has its previous text"),
        "{job:?}"
    );
}

/// A publish stays undoable after a patient's packet rebuilt the index: the rollback publishes the
/// previous text again as a new job (the replaced generation lacks the packet), and the packet's
/// documents stay searchable.
#[test]
fn a_publish_is_rolled_back_after_a_patients_packet_rebuilt_the_index() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let file = manuals.path().join(MANUAL);
    let original = std::fs::read_to_string(&file).unwrap();
    let editor = staff_cookie(&app, "editor-r", Role::Editor);
    let csrf = get(
        &app.url("/admin/manuals/vp300-service"),
        &[("cookie", &editor)],
    )
    .hidden("csrf")
    .unwrap();
    // The publish adds a section and a quality check guarding it; undoing it removes both, which
    // the gate must not take for a regression.
    let with_its_check = {
        let text = edited(&original);
        let (front, body) = text[4..].split_once("\n+++\n").unwrap();
        format!("+++\n{front}\n[[check]]\nquestion = \"how do I purge the flow sensor with saline?\"\nanchor = \"flow-sensor-purge\"\n+++\n{body}")
    };
    let published = post_manual(&app, &editor, &csrf, &with_its_check, "publish");
    assert_eq!(published.status, 303, "{}", published.body);
    let job = job_of(&published);
    assert_eq!(wait_for_job(&app, &editor, &job)["status"], "promoted");

    // A clinician makes a packet: the index is rebuilt with the patient's note.
    let packet = make_indexed_packet(
        &app,
        scanaid_server::patients::NewPacket {
            patient_name: "Rolled Back".to_string(),
            dob: "1950-01-01".to_string(),
            language: "en".to_string(),
            documents: vec![scanaid_server::patients::NewDocument {
                title: "From your care team".to_string(),
                markdown: "## Your plan\n\nWalk to the quince tree twice a day.\n".to_string(),
                template: None,
            }],
            created_by: "nurse".to_string(),
            contact: String::new(),
        },
    );
    let packet_chunks = |app: &TestApp| {
        app.state
            .index()
            .chunks()
            .iter()
            .filter(|c| c.owner.as_deref() == Some(packet.packet_id.as_str()))
            .count()
    };
    assert!(packet_chunks(&app) > 0);

    // A later publish the gate stops (another manual's file broken meanwhile) built on nothing.
    let rsc37 = manuals.path().join("equipment/rsc37-instruction.md");
    let rsc37_text = std::fs::read_to_string(&rsc37).unwrap();
    std::fs::write(&rsc37, "").unwrap();
    let more = format!("{}\nPurge again after each patient.\n", edited(&original));
    let stopped = post_manual(&app, &editor, &csrf, &more, "publish");
    assert_eq!(
        wait_for_job(&app, &editor, &job_of(&stopped))["status"],
        "blocked"
    );
    std::fs::write(&rsc37, &rsc37_text).unwrap();

    // The job page still offers the rollback; it publishes the previous text as a new job.
    let page = get(
        &app.url(&format!("/admin/jobs/{job}")),
        &[("cookie", &editor)],
    );
    assert!(page.body.contains("id=\"rollback\""), "{}", page.body);
    let rolled = post_form(
        &app.url(&format!("/admin/jobs/{job}/rollback")),
        &[("cookie", &editor)],
        &[("csrf", &csrf)],
    );
    assert_eq!(rolled.status, 303, "{}", rolled.body);
    let again = job_of(&rolled);
    assert_ne!(again, job);
    assert_eq!(wait_for_job(&app, &editor, &again)["status"], "promoted");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    assert!(
        !app.state
            .index()
            .chunks()
            .iter()
            .any(|c| c.anchor == "flow-sensor-purge"),
        "the rolled-back section is gone"
    );
    assert!(packet_chunks(&app) > 0, "the packet's documents stay");
    // The first job is rolled back now: it says so, offers its text again, and is not rolled back
    // twice.
    let page = get(
        &app.url(&format!("/admin/jobs/{job}")),
        &[("cookie", &editor)],
    );
    assert!(
        page.body
            .contains("<strong id=\"job-status\">rolled back</strong>")
            && page.body.contains("id=\"reopen\"")
            && !page.body.contains("id=\"rollback\""),
        "{}",
        page.body
    );
    let twice = post_form(
        &app.url(&format!("/admin/jobs/{job}/rollback")),
        &[("cookie", &editor)],
        &[("csrf", &csrf)],
    );
    assert_eq!(twice.status, 409, "{}", twice.body);
    assert!(twice.body.contains("rolled back"), "{}", twice.body);
}

/// A manual in a non-Latin script somewhat over the 512 KB limit still reaches the editor's
/// check (form-encoded it is three times its size) and is refused with the reason and its text
/// shown back, not with a bare "too long" page that loses it.
#[test]
fn a_long_non_latin_manual_over_the_limit_is_refused_with_its_text_kept() {
    let (app, _manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor-l", Role::Editor);
    let page = get(&app.url("/admin/manuals/new"), &[("cookie", &editor)]);
    let csrf = page.hidden("csrf").unwrap();
    let mut text = String::from(
        "+++\nid = \"long-zh\"\ntitle = \"泵\"\naudience = [\"technician\"]\nrevision = \"1\"\nlanguage = \"zh\"\n+++\n# 清洁\n\n",
    );
    while text.len() < 700 * 1024 {
        text.push_str("用中性清洁剂擦拭泵的外壳，然后晾干。");
    }
    text.push_str("最后一句话。\n");
    let refused = post_form(
        &app.url("/admin/manuals"),
        &[("cookie", &editor)],
        &[
            ("csrf", &csrf),
            ("original", ""),
            ("markdown", &text),
            ("action", "check"),
        ],
    );
    assert_eq!(
        refused.status,
        200,
        "{}",
        refused.body.chars().take(2000).collect::<String>()
    );
    assert!(refused.body.contains("the limit is 512 KB"));
    assert!(
        refused.body.contains("最后一句话。"),
        "the text is shown back"
    );
}

/// A publish is recorded before the folder changes: a store that cannot record it (here a real
/// SQLite failure: a trigger that aborts the audit insert, as a full disk would) refuses it with
/// the file, the revisions and the jobs as they were, so nothing unrecorded is ever served.
#[test]
fn a_publish_the_store_cannot_record_leaves_the_folder_as_it_was() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let file = manuals.path().join(MANUAL);
    let original = std::fs::read_to_string(&file).unwrap();
    let editor = staff_cookie(&app, "editor-f", Role::Editor);
    let page = get(
        &app.url("/admin/manuals/vp300-service"),
        &[("cookie", &editor)],
    );
    let csrf = page.hidden("csrf").unwrap();
    app.rows(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON content_audit \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    );
    let refused = post_manual(&app, &editor, &csrf, &edited(&original), "publish");
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    assert_eq!(
        app.rows(
            "SELECT (SELECT COUNT(*) FROM manual_revisions), (SELECT COUNT(*) FROM index_jobs)"
        ),
        vec![vec!["0", "0"]]
    );
    // Once the store records again, the same publish goes through.
    app.rows("DROP TRIGGER refuse_audit");
    let published = post_manual(&app, &editor, &csrf, &edited(&original), "publish");
    assert_eq!(published.status, 303, "{}", published.body);
    let done = wait_for_job(&app, &editor, &job_of(&published));
    assert_eq!(done["status"], "promoted", "{done}");
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("Flow sensor purge"));
}

#[test]
fn every_bundled_manual_passes_the_editors_checks() {
    let registry =
        scanaid_server::registry::Registry::load(&repo().join("manuals/assets.toml")).unwrap();
    let models: std::collections::BTreeSet<String> =
        registry.assets.iter().map(|a| a.model.clone()).collect();
    let (manuals, problems) =
        scanaid_indexer::manual::load_manuals(&repo().join("manuals")).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(manuals.len() >= 9);
    for manual in manuals {
        let bytes = std::fs::read(&manual.path).unwrap();
        let checked = scanaid_indexer::validate::check_manual(&manual.path, &bytes, &models);
        assert!(
            checked.findings.is_empty(),
            "{}: {:?}",
            manual.path.display(),
            checked.findings
        );
    }
}

const CHECK: &str = "\n[[check]]\nquestion = \"how do I replace the clock coin cell CR2032?\"\nanchor = \"117-replacing-the-real-time-clock-coin-cell\"\n";

/// The manual with its quality check added to the front matter and its revision set.
fn with_check(original: &str, revision: &str) -> String {
    let (front, body) = original[4..].split_once("\n+++\n").unwrap();
    let front = front.replace(
        "revision = \"C (2026-03-14)\"",
        &format!("revision = \"{revision}\""),
    );
    format!("+++\n{front}\n{CHECK}+++\n{body}")
}

fn publish_text(app: &TestApp, cookie: &str, csrf: &str, text: &str) -> String {
    let reply = post_manual(app, cookie, csrf, text, "publish");
    assert_eq!(reply.status, 303, "{}", reply.body);
    job_of(&reply)
}

#[test]
fn the_quality_gate_stops_a_regression_and_only_an_admin_can_override_it() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor2", Role::Editor);
    let admin = staff_cookie(&app, "admin2", Role::Admin);
    let csrf = get(
        &app.url("/admin/manuals/vp300-service"),
        &[("cookie", &editor)],
    )
    .hidden("csrf")
    .unwrap();
    let admin_csrf = get(&app.url("/admin/manuals"), &[("cookie", &admin)])
        .hidden("csrf")
        .unwrap();
    let original = std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap();

    // The manual gets its check; the check holds, the generation is promoted.
    let checked = with_check(&original, "D (checked)");
    let job = publish_text(&app, &editor, &csrf, &checked);
    let done = wait_for_job(&app, &editor, &job);
    assert_eq!(done["status"], "promoted", "{done}");
    assert!(
        done["report"]
            .as_str()
            .unwrap()
            .contains("quality checks passed"),
        "{done}"
    );
    let good_generation = app.state.index().generation.clone();

    // A version that guts the coin-cell procedure (its anchor kept) loses that question: blocked.
    let procedure_start = checked.find("Parts: coin cell CR2032").unwrap();
    let procedure_end = checked.find("### 11.8 Replacing the pole clamp").unwrap();
    let gutted = format!(
        "{}This procedure moved to service bulletin SB-44.\n\n{}",
        &checked[..procedure_start],
        &checked[procedure_end..]
    )
    .replace(
        "### 11.7 Replacing the real-time clock coin cell",
        "### 11.7 Service bulletin {#117-replacing-the-real-time-clock-coin-cell}",
    )
    .replace("revision = \"D (checked)\"", "revision = \"E (gutted)\"");
    // Removing the question in the same edit, or renaming the manual, does not get it past: the
    // served text's checks are asked under the id the served generation knows.
    for (what, text) in [
        ("its check removed", gutted.replacen(CHECK, "", 1)),
        (
            "renamed",
            gutted.replace("id = \"vp300-service\"", "id = \"vp300-service-r\""),
        ),
    ] {
        assert_ne!(text, gutted, "{what}");
        let job = publish_text(&app, &editor, &csrf, &text);
        let done = wait_for_job(&app, &editor, &job);
        assert_eq!(done["status"], "blocked", "{what}: {done}");
        let report = done["report"].as_str().unwrap();
        assert!(
            report.contains("REGRESSED vp300-service"),
            "{what}: {report}"
        );
        if what == "its check removed" {
            assert!(
                report.contains("(a check this edit removed, still asked)"),
                "{report}"
            );
        }
    }
    let blocked_job = publish_text(&app, &editor, &csrf, &gutted);
    let blocked = wait_for_job(&app, &editor, &blocked_job);
    assert_eq!(blocked["status"], "blocked", "{blocked}");
    let report = blocked["report"].as_str().unwrap();
    assert!(report.contains("REGRESSED vp300-service"), "{report}");
    assert!(
        report.contains("1 question(s) no longer find their section (tolerance 0)"),
        "{report}"
    );
    // Nothing changed for readers, and the folder holds what is served.
    assert_eq!(app.state.index().generation, good_generation);
    assert_eq!(
        std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap(),
        checked
    );

    // An editor cannot publish past the gate; an admin can, and it is logged.
    let page = get(
        &app.url(&format!("/admin/jobs/{blocked_job}")),
        &[("cookie", &editor)],
    );
    assert!(!page.body.contains("id=\"override\""));
    // The editor's stopped text is not lost with the file's restore: it opens in the editor again,
    // which starts from the file as it is now.
    assert!(page.body.contains("id=\"reopen\""), "{}", page.body);
    let reopened = get(
        &app.url(&format!("/admin/jobs/{blocked_job}/text")),
        &[("cookie", &editor)],
    );
    assert_eq!(reopened.status, 200);
    assert!(
        reopened.body.contains("revision = &#34;E (gutted)&#34;"),
        "{}",
        reopened.body
    );
    assert_eq!(
        reopened.hidden("base").unwrap(),
        get(
            &app.url("/admin/manuals/vp300-service"),
            &[("cookie", &editor)]
        )
        .hidden("base")
        .unwrap()
    );
    assert_eq!(
        get(&app.url("/admin/jobs/999999/text"), &[("cookie", &editor)]).status,
        404
    );
    let refused = post_form(
        &app.url(&format!("/admin/jobs/{blocked_job}/override")),
        &[("cookie", &editor)],
        &[("csrf", &csrf)],
    );
    assert_eq!(refused.status, 403);
    let page = get(
        &app.url(&format!("/admin/jobs/{blocked_job}")),
        &[("cookie", &admin)],
    );
    assert!(page.body.contains("id=\"override\""), "{}", page.body);
    let overridden = post_form(
        &app.url(&format!("/admin/jobs/{blocked_job}/override")),
        &[("cookie", &admin)],
        &[("csrf", &admin_csrf)],
    );
    assert_eq!(overridden.status, 303, "{}", overridden.body);
    let forced_job = job_of(&overridden);
    let forced = wait_for_job(&app, &admin, &forced_job);
    assert_eq!(forced["status"], "promoted", "{forced}");
    assert_ne!(app.state.index().generation, good_generation);
    assert_eq!(
        std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap(),
        gutted
    );
    let audit = app.rows("SELECT actor, action FROM content_audit ORDER BY id");
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("editor2", "publish"),
            // The check removed, then the rename: both stopped.
            ("editor2", "publish"),
            ("editor2", "publish.blocked"),
            ("editor2", "publish"),
            ("editor2", "publish.blocked"),
            ("editor2", "publish"),
            ("editor2", "publish.blocked"),
            ("admin2", "override"),
        ]
    );
}

/// One call to the content API: (status, JSON body).
fn api(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value, Option<String>) {
    let mut request = agent()
        .request(method, &app.url(path))
        .set("content-type", "application/json");
    if let Some(token) = token {
        request = request.set("authorization", &format!("Bearer {token}"));
    }
    let result = match body {
        Some(b) => request.send_string(&b.to_string()),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = response.status();
    // The header a refusal carries: the bearer challenge, or when to try again.
    let challenge = response
        .header("www-authenticate")
        .or(response.header("retry-after"))
        .map(str::to_string);
    let text = response.into_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        challenge,
    )
}

#[test]
fn the_content_api_needs_a_live_token_and_checks_publishes_and_rolls_back() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let original = std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap();

    // No token, a made-up one: 401 with the challenge.
    let (status, body, challenge) = api(&app, "GET", "/api/content/manuals", None, None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    let (status, ..) = api(
        &app,
        "GET",
        "/api/content/manuals",
        Some("sat_0123456789abcdef"),
        None,
    );
    assert_eq!(status, 401);

    // An admin makes one; an editor may not.
    let editor = staff_cookie(&app, "editor3", Role::Editor);
    assert_eq!(
        get(&app.url("/admin/tokens"), &[("cookie", &editor)]).status,
        403
    );
    let admin = staff_cookie(&app, "admin3", Role::Admin);
    let form = get(&app.url("/admin/tokens"), &[("cookie", &admin)]);
    let csrf = form.hidden("csrf").unwrap();
    let created = post_form(
        &app.url("/admin/tokens"),
        &[("cookie", &admin)],
        &[("csrf", &csrf), ("name", "ci-pipeline")],
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let start =
        created.body.find("<code id=\"new-token\">").unwrap() + "<code id=\"new-token\">".len();
    let token = created.body[start..].split('<').next().unwrap().to_string();
    assert!(token.starts_with("sat_"), "{token}");
    assert!(
        !get(&app.url("/admin/tokens"), &[("cookie", &admin)])
            .body
            .contains(&token),
        "shown once"
    );
    let token = Some(token.as_str());

    let (status, list, _) = api(&app, "GET", "/api/content/manuals", token, None);
    assert_eq!(status, 200, "{list}");
    assert!(list["manuals"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "vp300-service"));

    // Check and a refused publish: every problem with its line, nothing changed.
    let broken = serde_json::json!({"markdown": original.clone() + "\nSee [nothing](#nowhere).\n"});
    let (status, checked, _) = api(
        &app,
        "POST",
        "/api/content/manuals/vp300-service/check",
        token,
        Some(&broken),
    );
    assert_eq!(status, 200);
    assert_eq!(checked["clean"], false);
    assert!(
        checked["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("#nowhere"),
        "{checked}"
    );
    assert!(checked["findings"][0]["line"].as_u64().unwrap() > 400);
    let (status, refused, _) = api(
        &app,
        "PUT",
        "/api/content/manuals/vp300-service",
        token,
        Some(&broken),
    );
    assert_eq!(status, 422, "{refused}");
    let (status, wrong_id, _) = api(
        &app,
        "PUT",
        "/api/content/manuals/rtu12-iom",
        token,
        Some(&serde_json::json!({"markdown": original})),
    );
    assert_eq!(status, 422, "{wrong_id}");
    assert!(wrong_id["findings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("URL names"));
    let (status, _, _) = api(
        &app,
        "PUT",
        "/api/content/manuals/vp300-service",
        token,
        Some(&serde_json::json!({"text": 1})),
    );
    assert_eq!(status, 422);
    assert_eq!(
        std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap(),
        original
    );

    // Replacing a manual without saying which text it replaces is refused (it could undo an
    // editor's change), unless the pipeline says it owns the text outright.
    let (status, unnamed, _) = api(
        &app,
        "PUT",
        "/api/content/manuals/vp300-service",
        token,
        Some(&serde_json::json!({"markdown": edited(&original)})),
    );
    assert_eq!(status, 428, "{unnamed}");
    assert!(
        unnamed["error"].as_str().unwrap().contains("\"base\""),
        "{unnamed}"
    );
    assert_eq!(
        std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap(),
        original
    );

    // A pipeline that says which version its text was made from is refused over a newer one.
    let version = list["manuals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "vp300-service")
        .unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, stale, _) = api(
        &app,
        "PUT",
        "/api/content/manuals/vp300-service",
        token,
        Some(&serde_json::json!({"markdown": edited(&original), "base": "0123456789abcdef"})),
    );
    assert_eq!(status, 409, "{stale}");
    assert_eq!(stale["code"], "stale_base", "{stale}");
    assert!(
        stale["error"]
            .as_str()
            .unwrap()
            .contains("changed since you opened it"),
        "{stale}"
    );
    assert_eq!(
        std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap(),
        original
    );

    // Publish, follow the job, roll back.
    let good = serde_json::json!({"markdown": edited(&original), "base": version});
    let (status, accepted, _) = api(
        &app,
        "PUT",
        "/api/content/manuals/vp300-service",
        token,
        Some(&good),
    );
    assert_eq!(status, 202, "{accepted}");
    let url = accepted["url"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let job = loop {
        let (status, job, _) = api(&app, "GET", &url, token, None);
        assert_eq!(status, 200);
        if job["status"] != "running" {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(job["status"], "promoted", "{job}");
    assert_eq!(job["generation"], app.state.index().generation.as_str());
    let (status, missing, _) = api(
        &app,
        "POST",
        "/api/content/jobs/999999/rollback",
        token,
        None,
    );
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"], "there is no job 999999");
    let (status, missing, _) = api(&app, "GET", "/api/content/jobs/abc", token, None);
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"], "there is no job abc");
    let (status, missing, _) = api(&app, "POST", "/api/content/jobs/abc/rollback", token, None);
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"], "there is no job abc");
    let (status, rolled, _) = api(&app, "POST", &format!("{url}/rollback"), token, None);
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["generation"], job["previous_generation"]);
    assert_eq!(
        std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap(),
        original
    );

    // A pipeline deletes a manual the same way, and rolls the deletion back.
    let (status, missing, _) = api(
        &app,
        "DELETE",
        "/api/content/manuals/no-such-manual",
        token,
        None,
    );
    assert_eq!(status, 404, "{missing}");
    let gone = manuals.path().join("equipment/rsc37-instruction.md");
    let kept = std::fs::read_to_string(&gone).unwrap();
    // With the version it decided on: a text changed since is not deleted unseen.
    let (status, stale, _) = api(
        &app,
        "DELETE",
        "/api/content/manuals/rsc37-instruction?base=0000000000000000",
        token,
        None,
    );
    assert_eq!(status, 409, "{stale}");
    assert_eq!(stale["code"], "stale_base", "{stale}");
    assert!(
        stale["error"].as_str().unwrap().contains("changed since"),
        "{stale}"
    );
    assert!(gone.exists(), "nothing deleted");
    // A base that cannot be read, or an empty one, deletes nothing either.
    for (query, want) in [("?base=a&base=b", 400), ("?base=", 422), ("?bsae=x", 400)] {
        let (status, refused, _) = api(
            &app,
            "DELETE",
            &format!("/api/content/manuals/rsc37-instruction{query}"),
            token,
            None,
        );
        assert_eq!(status, want, "{query}: {refused}");
        assert!(gone.exists(), "{query}: nothing deleted");
    }
    let (status, accepted, _) = api(
        &app,
        "DELETE",
        &format!(
            "/api/content/manuals/rsc37-instruction?base={}",
            scanaid_server::content::text_version(&kept)
        ),
        token,
        None,
    );
    assert_eq!(status, 202, "{accepted}");
    let url = accepted["url"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let job = loop {
        let (_, job, _) = api(&app, "GET", &url, token, None);
        if job["status"] != "running" {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(job["status"], "promoted", "{job}");
    assert!(!gone.exists());
    assert!(app
        .state
        .index()
        .chunks()
        .iter()
        .all(|c| c.manual_id != "rsc37-instruction"));
    let (status, rolled, _) = api(&app, "POST", &format!("{url}/rollback"), token, None);
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(std::fs::read_to_string(&gone).unwrap(), kept);

    // A pipeline that owns the text replaces it without a base when it says so; that is audited.
    // While its job runs (held here by another build), a second change is told to come back later.
    let other_build = app.state.reindex.blocking_lock();
    let (status, forced, _) = api(
        &app,
        "PUT",
        "/api/content/manuals/vp300-service",
        token,
        Some(&serde_json::json!({"markdown": edited(&original), "force": true})),
    );
    assert_eq!(status, 202, "{forced}");
    let (status, busy, retry_after) = api(
        &app,
        "PUT",
        "/api/content/manuals/vp300-service",
        token,
        Some(&serde_json::json!({"markdown": edited(&original), "force": true})),
    );
    assert_eq!(status, 409, "{busy}");
    assert_eq!(busy["code"], "job_running", "{busy}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    drop(other_build);
    let url = forced["url"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let (_, job, _) = api(&app, "GET", &url, token, None);
        if job["status"] != "running" {
            assert_eq!(job["status"], "promoted", "{job}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        app.rows("SELECT COUNT(*) FROM content_audit WHERE action = 'publish.forced' AND manual_id = 'vp300-service'")[0][0],
        "1"
    );

    // The audit trail names the pipeline; a revoked token is refused.
    let actors = app.rows("SELECT DISTINCT actor FROM content_audit");
    assert_eq!(actors, vec![vec!["token:ci-pipeline".to_string()]]);
    let id = app.rows("SELECT id FROM api_tokens")[0][0].clone();
    let revoked = post_form(
        &app.url("/admin/tokens"),
        &[("cookie", &admin)],
        &[("csrf", &csrf), ("revoke", &id)],
    );
    assert_eq!(revoked.status, 200);
    let (status, ..) = api(&app, "GET", "/api/content/manuals", token, None);
    assert_eq!(status, 401);
}

/// Latency percentile (ms) of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn scans_and_questions_during_a_full_reindex_never_fail_or_mix_generations() {
    // The load comes from one address: lift the per-client chat limit for it.
    let (app, manuals, index) = spawn_with_editable_manuals_and(scanaid_server::ServerConfig {
        chat_per_client: 100_000,
        ..scanaid_server::ServerConfig::default()
    });
    let editor = staff_cookie(&app, "editor-load", Role::Editor);
    let technician = staff_cookie(&app, "tech-load", Role::Technician);
    let csrf = get(&app.url("/admin/manuals"), &[("cookie", &editor)])
        .hidden("csrf")
        .unwrap();
    // Every chunk of every manual is embedded again: the embedding cache is gone.
    std::fs::remove_dir_all(index.path().join("embedding-cache")).unwrap();
    let original = std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap();

    // (during the re-index?, milliseconds) per request; every request must succeed.
    let samples = std::sync::Mutex::new(Vec::<(bool, f64)>::new());
    let running = std::sync::atomic::AtomicBool::new(false);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let load = |worker: usize| {
        let mut n = 0;
        // Bounded in time (the re-index) and in count.
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 5_000 {
            n += 1;
            let during = running.load(std::sync::atomic::Ordering::SeqCst);
            let started = std::time::Instant::now();
            if (n + worker).is_multiple_of(4) {
                let answer = ask(&app, &technician, "how do I replace the battery pack?");
                let revisions: std::collections::BTreeSet<&str> = answer["citations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["manual"] == "vp300-service")
                    .map(|c| c["revision"].as_str().unwrap())
                    .collect();
                // The battery answer cites the service manual, from one generation's revision.
                assert_eq!(
                    revisions.len(),
                    1,
                    "one answer, one generation: {revisions:?}"
                );
            } else {
                let page = get(&app.url("/c/tJ6bpUpB"), &[("cookie", &technician)]);
                assert_eq!(page.status, 200);
                assert!(page.body.trim_end().ends_with("</html>"), "a whole page");
            }
            samples
                .lock()
                .unwrap()
                .push((during, started.elapsed().as_secs_f64() * 1000.0));
        }
    };
    let job = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2).map(|w| s.spawn(move || load(w))).collect();
        std::thread::sleep(Duration::from_millis(500));
        running.store(true, std::sync::atomic::Ordering::SeqCst);
        let job = publish_text(&app, &editor, &csrf, &edited(&original));
        let done = wait_for_job(&app, &editor, &job);
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in workers {
            w.join().expect("no request failed");
        }
        done
    });
    assert_eq!(job["status"], "promoted", "{job}");
    let report = job["report"].as_str().unwrap();
    // Every text embedded again (identical windows are embedded once and count as reused).
    let embedded: usize = report
        .split(", ")
        .find_map(|p| p.strip_suffix(" embedded"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(embedded >= 400, "everything re-embedded: {report}");

    let samples = samples.into_inner().unwrap();
    let mut during: Vec<f64> = samples.iter().filter(|s| s.0).map(|s| s.1).collect();
    let mut outside: Vec<f64> = samples.iter().filter(|s| !s.0).map(|s| s.1).collect();
    during.sort_by(f64::total_cmp);
    outside.sort_by(f64::total_cmp);
    assert!(!during.is_empty() && !outside.is_empty());
    // Reported, not asserted: this is a debug build sharing two cores with the re-index.
    println!(
        "requests during the re-index: {} (p50 {:.1} ms, p95 {:.1} ms); outside: {} (p50 {:.1} ms, p95 {:.1} ms); {report}",
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.95),
        outside.len(),
        percentile(&outside, 0.5),
        percentile(&outside, 0.95),
    );
}

/// Opens a job's event stream; its events' names arrive on the channel, then `None` when it ends.
fn job_stream(app: &TestApp, cookie: &str, job: &str) -> std::sync::mpsc::Receiver<Option<String>> {
    use std::io::BufRead;
    let response = agent()
        .get(&app.url(&format!("/admin/jobs/{job}/events")))
        .set("cookie", cookie)
        .call()
        .expect("the event stream opens");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(response.into_reader()).lines() {
            let Ok(line) = line else { break };
            if let Some(name) = line.strip_prefix("event: ") {
                if tx.send(Some(name.to_string())).is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(None);
    });
    rx
}

#[test]
fn a_job_stream_ends_when_its_editor_signs_out_and_is_sent_nothing_after() {
    const WAIT: Duration = Duration::from_secs(120);
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor1", Role::Editor);
    let colleague = staff_cookie(&app, "editor2", Role::Editor);
    let original = std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap();
    let form = get(
        &app.url("/admin/manuals/vp300-service"),
        &[("cookie", &editor)],
    );
    let csrf = form.hidden("csrf").unwrap();

    // The test holds the index builder's lock, so the job stays running until it is let go.
    let builder = app.state.reindex.blocking_lock();
    let published = post_manual(&app, &editor, &csrf, &edited(&original), "publish");
    assert_eq!(published.status, 303, "{}", published.body);
    let job = job_of(&published);
    let mine = job_stream(&app, &editor, &job);
    let theirs = job_stream(&app, &colleague, &job);
    for stream in [&mine, &theirs] {
        assert_eq!(
            stream.recv_timeout(WAIT).unwrap().as_deref(),
            Some("progress"),
            "a running job's stream starts with its progress"
        );
    }

    // The editor signs out on another tab; the job's tab stays open.
    sign_out(&app, &editor);
    drop(builder);

    // The colleague, still signed in, follows the job to its end; the signed-out tab is sent
    // nothing more and its stream ends.
    let mut colleague_saw = Vec::new();
    while let Some(event) = theirs.recv_timeout(WAIT).expect("the job goes on") {
        colleague_saw.push(event);
    }
    assert_eq!(colleague_saw.last().map(String::as_str), Some("done"));
    match mine.recv_timeout(WAIT) {
        Ok(None) => {}
        Ok(Some(event)) => panic!("the editor signed out, yet their tab was sent {event}"),
        Err(_) => panic!("the editor signed out, yet their job stream stayed open"),
    }
}

/// The number after `prefix` in the first link to it on a page (`/admin/revisions/12`).
fn first_id_after(body: &str, prefix: &str) -> String {
    let start = body
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in {body}"))
        + prefix.len();
    body[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect()
}

/// Every change to a manual is in its history with what it changed, and any earlier text, also a
/// deleted manual's, goes back into the editor and is published again through the usual checks.
#[test]
fn a_manuals_history_shows_each_change_and_restores_earlier_and_deleted_texts() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor-h", Role::Editor);
    let technician = staff_cookie(&app, "tech-h", Role::Technician);
    let path = manuals.path().join(MANUAL);
    let original = std::fs::read_to_string(&path).unwrap();
    let history_url = app.url("/admin/manuals/vp300-service/history");

    // Editors only; an id nothing was ever published under is not found.
    assert_eq!(get(&history_url, &[("cookie", &technician)]).status, 403);
    assert_eq!(
        get(
            &app.url("/admin/manuals/no-such-manual/history"),
            &[("cookie", &editor)]
        )
        .status,
        404
    );
    let untouched = get(&history_url, &[("cookie", &editor)]);
    assert_eq!(untouched.status, 200, "{}", untouched.body);
    assert!(
        untouched.body.contains("id=\"no-changes\""),
        "{}",
        untouched.body
    );
    for bad in ["/admin/revisions/999999", "/admin/revisions/abc"] {
        assert_eq!(
            get(&app.url(bad), &[("cookie", &editor)]).status,
            404,
            "{bad}"
        );
    }

    // An edit is published; the history lists it with its job, and its page shows the diff.
    let csrf = get(
        &app.url("/admin/manuals/vp300-service"),
        &[("cookie", &editor)],
    )
    .hidden("csrf")
    .unwrap();
    let published = post_manual(&app, &editor, &csrf, &edited(&original), "publish");
    assert_eq!(published.status, 303, "{}", published.body);
    let job = job_of(&published);
    assert_eq!(wait_for_job(&app, &editor, &job)["status"], "promoted");
    let history = get(&history_url, &[("cookie", &editor)]);
    assert!(history.body.contains("D (test)"), "{}", history.body);
    assert!(history
        .body
        .contains(&format!("href=\"/admin/jobs/{job}\"")));
    assert!(history.body.contains(">edit<"), "{}", history.body);
    let change = first_id_after(&history.body, "/admin/revisions/");
    let shown = get(
        &app.url(&format!("/admin/revisions/{change}")),
        &[("cookie", &editor)],
    );
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(
        shown
            .body
            .contains("+ ## Flow sensor purge {#flow-sensor-purge}"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("1 removed"), "{}", shown.body);
    assert!(shown.body.contains("class=\"removed\""));
    assert!(
        shown.body.contains("id=\"since-same\""),
        "the file holds this text"
    );
    for page in [
        format!("/admin/revisions/{change}"),
        format!("/admin/revisions/{change}/open"),
        format!("/admin/revisions/{change}/open?text=before"),
    ] {
        assert_eq!(
            get(&app.url(&page), &[("cookie", &technician)]).status,
            403,
            "{page}"
        );
        assert_eq!(get(&app.url(&page), &[]).status, 303, "{page}: to sign-in");
    }

    // The text before the edit, back in the editor as the manual, from the file as it is now.
    let reopened = get(
        &app.url(&format!("/admin/revisions/{change}/open?text=before")),
        &[("cookie", &editor)],
    );
    assert_eq!(reopened.status, 200, "{}", reopened.body);
    assert_eq!(
        reopened.hidden("original").as_deref(),
        Some("vp300-service")
    );
    let now = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        reopened.hidden("base"),
        Some(scanaid_server::content::text_version(&now))
    );
    assert!(
        reopened.body.contains("C (2026-03-14)"),
        "{}",
        reopened.body
    );
    assert!(
        !reopened.body.contains("Flow sensor purge"),
        "{}",
        reopened.body
    );
    let restored = post_form(
        &app.url("/admin/manuals"),
        &[("cookie", &editor)],
        &[
            ("csrf", &csrf),
            ("original", "vp300-service"),
            ("base", &reopened.hidden("base").unwrap()),
            ("markdown", &original),
            ("action", "publish"),
        ],
    );
    assert_eq!(restored.status, 303, "{}", restored.body);
    assert_eq!(
        wait_for_job(&app, &editor, &job_of(&restored))["status"],
        "promoted"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    // The first change's text now differs from the file, and its page says how.
    let shown = get(
        &app.url(&format!("/admin/revisions/{change}")),
        &[("cookie", &editor)],
    );
    assert!(shown.body.contains("id=\"since-diff\""), "{}", shown.body);
    let history = get(&history_url, &[("cookie", &editor)]);
    assert_eq!(history.body.matches("<tr id=\"change-").count(), 2);

    // A deleted manual is listed with its history, from which its last text is published again.
    let id = "rsc37-instruction";
    let deleted_text =
        std::fs::read_to_string(manuals.path().join("equipment/rsc37-instruction.md")).unwrap();
    let csrf = get(
        &app.url(&format!("/admin/manuals/{id}")),
        &[("cookie", &editor)],
    )
    .hidden("csrf")
    .unwrap();
    let deleted = post_form(
        &app.url(&format!("/admin/manuals/{id}/delete")),
        &[("cookie", &editor)],
        &[("csrf", &csrf), ("confirm", id)],
    );
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    let deletion_job = job_of(&deleted);
    assert_eq!(
        wait_for_job(&app, &editor, &deletion_job)["status"],
        "promoted"
    );
    // Jobs say what they were, not "publish" for everything.
    let job_page = get(
        &app.url(&format!("/admin/jobs/{deletion_job}")),
        &[("cookie", &editor)],
    );
    assert!(
        job_page
            .body
            .contains(&format!("Job {deletion_job}: deletion {id}")),
        "{}",
        job_page.body
    );
    let list = get(&app.url("/admin/manuals"), &[("cookie", &editor)]);
    assert!(
        list.body
            .contains(&format!("job {deletion_job}</a>: deletion {id}")),
        "{}",
        list.body
    );
    assert!(
        list.body.contains("id=\"deleted-manuals\""),
        "{}",
        list.body
    );
    assert!(list
        .body
        .contains(&format!("href=\"/admin/manuals/{id}/history\"")));
    let history = get(
        &app.url(&format!("/admin/manuals/{id}/history")),
        &[("cookie", &editor)],
    );
    assert_eq!(history.status, 200, "{}", history.body);
    assert!(history.body.contains("id=\"no-file\""), "{}", history.body);
    assert!(history.body.contains(">deleted<"), "{}", history.body);
    let deletion = first_id_after(&history.body, "/admin/revisions/");
    let shown = get(
        &app.url(&format!("/admin/revisions/{deletion}")),
        &[("cookie", &editor)],
    );
    assert!(shown.body.contains("id=\"open-before\""), "{}", shown.body);
    assert!(!shown.body.contains("id=\"open-text\""), "{}", shown.body);
    assert_eq!(
        get(
            &app.url(&format!("/admin/revisions/{deletion}/open")),
            &[("cookie", &editor)]
        )
        .status,
        404,
        "a deletion has no text of its own"
    );
    let reopened = get(
        &app.url(&format!("/admin/revisions/{deletion}/open?text=before")),
        &[("cookie", &editor)],
    );
    assert_eq!(reopened.status, 200, "{}", reopened.body);
    assert_eq!(
        reopened.hidden("original").as_deref(),
        Some(""),
        "a new manual again"
    );
    let republished = post_form(
        &app.url("/admin/manuals"),
        &[("cookie", &editor)],
        &[
            ("csrf", &csrf),
            ("original", ""),
            ("base", &reopened.hidden("base").unwrap()),
            ("markdown", &deleted_text),
            ("action", "publish"),
        ],
    );
    assert_eq!(republished.status, 303, "{}", republished.body);
    let new_job = job_of(&republished);
    assert_eq!(wait_for_job(&app, &editor, &new_job)["status"], "promoted");
    let job_page = get(
        &app.url(&format!("/admin/jobs/{new_job}")),
        &[("cookie", &editor)],
    );
    assert!(
        job_page
            .body
            .contains(&format!("Job {new_job}: restored manual {id}")),
        "{}",
        job_page.body
    );
    assert!(app.state.index().chunks().iter().any(|c| c.manual_id == id));
    let history = get(
        &app.url(&format!("/admin/manuals/{id}/history")),
        &[("cookie", &editor)],
    );
    assert!(
        history.body.contains("restored (its file was gone)"),
        "{}",
        history.body
    );
    let list = get(&app.url("/admin/manuals"), &[("cookie", &editor)]);
    assert!(
        !list.body.contains("id=\"deleted-manuals\""),
        "{}",
        list.body
    );
    // Restored where it was in the folder's tree, not at the folder's top.
    assert_eq!(
        std::fs::read_to_string(manuals.path().join("equipment/rsc37-instruction.md")).unwrap(),
        deleted_text
    );
    assert!(!manuals.path().join("rsc37-instruction.md").exists());
}

/// While another build holds the build lock (a patient packet's, which reads the whole manuals
/// folder), a publish's job does not write the folder: that build would serve the edit before its
/// quality gate ran. It writes once the lock is free, and then runs as usual.
#[test]
fn a_publish_does_not_touch_the_folder_while_another_build_runs() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor-l", Role::Editor);
    let path = manuals.path().join(MANUAL);
    let original = std::fs::read_to_string(&path).unwrap();
    let csrf = get(
        &app.url("/admin/manuals/vp300-service"),
        &[("cookie", &editor)],
    )
    .hidden("csrf")
    .unwrap();
    let other_build = app.state.reindex.blocking_lock();
    let published = post_manual(&app, &editor, &csrf, &edited(&original), "publish");
    assert_eq!(published.status, 303, "{}", published.body);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        original,
        "the folder changed while another build could read it"
    );
    drop(other_build);
    assert_eq!(
        wait_for_job(&app, &editor, &job_of(&published))["status"],
        "promoted"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited(&original));
}

/// A file that is not a usable manual (its front matter broken on disk, say by a sync) is opened
/// from the manuals list in the editor, fixed and published back to the same file, through the
/// usual checks: editors need no shell to unblock a folder whose broken manual stops every publish.
#[test]
fn an_editor_fixes_a_broken_manual_file_from_the_list() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor-f", Role::Editor);
    let technician = staff_cookie(&app, "tech-f", Role::Technician);
    let file = "equipment/rsc37-instruction.md";
    let path = manuals.path().join(file);
    let good = std::fs::read_to_string(&path).unwrap();
    let broken = "+++\nid = \"rsc37-instruction\"\ntitle = \n+++\n# Broken\n";
    std::fs::write(&path, broken).unwrap();

    let list = get(&app.url("/admin/manuals"), &[("cookie", &editor)]);
    assert!(list.body.contains("id=\"broken-files\""), "{}", list.body);
    assert!(
        list.body.contains(&format!(
            "<input type=\"hidden\" name=\"path\" value=\"{file}\">"
        )),
        "{}",
        list.body
    );
    let open_url = app.url(&format!("/admin/files/open?path={file}"));
    assert_eq!(get(&open_url, &[("cookie", &technician)]).status, 403);
    // Only the files the list names: not a usable manual's, not a path outside the folder.
    for other in [
        "equipment/vp300-service.md",
        "../../etc/passwd",
        "no-such-file.md",
    ] {
        let refused = get(
            &app.url(&format!("/admin/files/open?path={other}")),
            &[("cookie", &editor)],
        );
        assert_eq!(refused.status, 404, "{other}");
    }
    let opened = get(&open_url, &[("cookie", &editor)]);
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(opened.hidden("file").as_deref(), Some(file));
    assert!(opened.body.contains("Fix equipment/rsc37-instruction.md"));
    assert!(opened.body.contains("# Broken"), "{}", opened.body);
    let publish = |markdown: &str, file: &str| {
        post_form(
            &app.url("/admin/manuals"),
            &[("cookie", &editor)],
            &[
                ("csrf", &opened.hidden("csrf").unwrap()),
                ("original", ""),
                ("file", file),
                ("base", &opened.hidden("base").unwrap()),
                ("markdown", markdown),
                ("action", "publish"),
            ],
        )
    };
    // Still broken: refused with the problem, the file as it was.
    let refused = publish(broken, file);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.hidden("file").as_deref(), Some(file));
    // A forged file name is not written.
    let forged = publish(&good, "equipment/vp300-service.md");
    assert_eq!(forged.status, 409, "{}", forged.body);
    // Fixed: published back to the same file.
    let fixed = publish(&good, file);
    assert_eq!(fixed.status, 303, "{}", fixed.body);
    assert_eq!(
        wait_for_job(&app, &editor, &job_of(&fixed))["status"],
        "promoted"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), good);
    assert!(!manuals.path().join("rsc37-instruction.md").exists());
    let list = get(&app.url("/admin/manuals"), &[("cookie", &editor)]);
    assert!(!list.body.contains("id=\"broken-files\""), "{}", list.body);

    // A file that is not UTF-8 (a Latin-1 export) opens with what could not be read marked; when
    // the fix's job does not promote (here the gate stops it: another served manual is broken on
    // disk meanwhile), the file gets its exact bytes back, not a lossy reading that could parse.
    let mut latin1 = good.clone().into_bytes();
    latin1.extend_from_slice(b"\nMedicaci\xf3n.\n");
    std::fs::write(&path, &latin1).unwrap();
    let pump = manuals.path().join(MANUAL);
    let pump_text = std::fs::read_to_string(&pump).unwrap();
    std::fs::write(&pump, "+++\nid = \"vp300-service\"\ntitle = \n+++\n").unwrap();
    let opened = get(&open_url, &[("cookie", &editor)]);
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert!(
        opened.body.contains("Medicaci\u{FFFD}n."),
        "{}",
        opened.body
    );
    let fixed = post_form(
        &app.url("/admin/manuals"),
        &[("cookie", &editor)],
        &[
            ("csrf", &opened.hidden("csrf").unwrap()),
            ("original", ""),
            ("file", file),
            ("base", &opened.hidden("base").unwrap()),
            ("markdown", &format!("{good}\nMedicación.\n")),
            ("action", "publish"),
        ],
    );
    assert_eq!(fixed.status, 303, "{}", fixed.body);
    assert_eq!(
        wait_for_job(&app, &editor, &job_of(&fixed))["status"],
        "blocked"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        latin1,
        "the exact bytes are back"
    );
    std::fs::write(&pump, pump_text).unwrap();
}

/// Before deleting or renaming a manual, the editor is told what points at it: other manuals'
/// links and the machines assets.toml lists it for (they would lead nowhere afterwards).
#[test]
fn deleting_or_renaming_a_manual_says_what_points_at_it() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor-x", Role::Editor);
    let rsc37 = manuals.path().join("equipment/rsc37-instruction.md");
    let text = std::fs::read_to_string(&rsc37).unwrap();
    std::fs::write(
        &rsc37,
        format!("{text}\nSee also the [pump service manual](/m/vp300-service#alarms).\n"),
    )
    .unwrap();
    let page = get(
        &app.url("/admin/manuals/vp300-service"),
        &[("cookie", &editor)],
    );
    let breaks = between(&page.body, "id=\"delete-breaks\">", "</ul>").to_string();
    assert!(
        breaks.contains("rsc37-instruction (equipment/rsc37-instruction.md) links to it"),
        "{breaks}"
    );
    assert!(breaks.contains("assets.toml lists it for"), "{breaks}");
    // A manual nothing points at (a patient leaflet: no machine lists it) says nothing.
    let quiet = get(
        &app.url("/admin/manuals/heart-failure-daily-care"),
        &[("cookie", &editor)],
    );
    assert!(
        !quiet.body.contains("id=\"delete-breaks\""),
        "{}",
        quiet.body
    );
    // A check that gives it another id says what the rename leaves behind.
    let original = std::fs::read_to_string(manuals.path().join(MANUAL)).unwrap();
    let renamed = original.replacen("id = \"vp300-service\"", "id = \"vp300-service-manual\"", 1);
    assert_ne!(renamed, original);
    let checked = post_manual(
        &app,
        &editor,
        &page.hidden("csrf").unwrap(),
        &renamed,
        "check",
    );
    let warning = between(&checked.body, "id=\"rename-breaks\">", "</ul>").to_string();
    assert!(warning.contains("rsc37-instruction"), "{}", checked.body);
    assert!(
        checked
            .body
            .contains("gives vp300-service the id vp300-service-manual"),
        "{}",
        checked.body
    );
    let unchanged = post_manual(
        &app,
        &editor,
        &page.hidden("csrf").unwrap(),
        &original,
        "check",
    );
    assert!(!unchanged.body.contains("id=\"rename-breaks\""));
}

/// A file's path used again after its manual was deleted starts a new life: the history of the
/// manual that had it shows its own changes and its rename, not what the path holds later.
#[test]
fn a_reused_file_path_does_not_mix_two_manuals_histories() {
    let (app, manuals, _index) = spawn_with_editable_manuals();
    let editor = staff_cookie(&app, "editor-r", Role::Editor);
    let csrf = get(&app.url("/admin/manuals/new"), &[("cookie", &editor)])
        .hidden("csrf")
        .unwrap();
    let text = |id: &str, step: &str| {
        format!(
            "+++\nid = \"{id}\"\ntitle = \"Pump notes\"\naudience = [\"technician\"]\n\
             language = \"en\"\nrevision = \"{step}\"\n+++\n\n# Pump notes\n\n## Priming\n\nOpen the vent, {step}.\n"
        )
    };
    let publish = |original: &str, markdown: &str| {
        let reply = post_form(
            &app.url("/admin/manuals"),
            &[("cookie", &editor)],
            &[
                ("csrf", &csrf),
                ("original", original),
                ("markdown", markdown),
                ("action", "publish"),
            ],
        );
        assert_eq!(reply.status, 303, "{}", reply.body);
        assert_eq!(
            wait_for_job(&app, &editor, &job_of(&reply))["status"],
            "promoted"
        );
    };
    let rows = |id: &str| {
        let page = get(
            &app.url(&format!("/admin/manuals/{id}/history")),
            &[("cookie", &editor)],
        );
        assert_eq!(page.status, 200, "{}", page.body);
        page.body.matches("<tr id=\"change-").count()
    };
    // zz-notes.md: created, renamed (the file keeps its name), deleted.
    publish("", &text("zz-notes", "1"));
    publish("zz-notes", &text("zz-renamed", "2"));
    assert!(manuals.path().join("zz-notes.md").exists());
    let deleted = post_form(
        &app.url("/admin/manuals/zz-renamed/delete"),
        &[("cookie", &editor)],
        &[("csrf", &csrf), ("confirm", "zz-renamed")],
    );
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert_eq!(
        wait_for_job(&app, &editor, &job_of(&deleted))["status"],
        "promoted"
    );
    assert_eq!(rows("zz-renamed"), 3, "created, renamed, deleted");
    // A new manual takes the path again: its creation is not in the first life's history.
    publish("", &text("zz-notes", "3"));
    assert!(manuals.path().join("zz-notes.md").exists());
    assert_eq!(rows("zz-renamed"), 3);
    assert_eq!(rows("zz-notes"), 4, "the id's own changes, and its rename");
}
