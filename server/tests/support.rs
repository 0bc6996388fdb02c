//! End-to-end live support on the real server: an escalation opens a ticket that an agent's console
//! sees at once (SSE), the agent's reply reaches the person's chat stream at once, a reconnecting
//! chat catches up from the store, closing is seen by both sides, the console is for agents only,
//! and a queue's webhook gets every ticket event signed (HMAC-SHA256) and retried until delivered.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use scanaid_server::roles::Role;
use scanaid_server::ServerConfig;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn ask(app: &TestApp, body: Value) -> (u16, Value) {
    let reply = post_json(&app.url("/api/chat"), &[], &body.to_string());
    let json: Value = serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.body));
    (reply.status, json)
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: Option<String>,
    data: Value,
}

/// Reads an event stream on a thread; events arrive on the channel, and `None` when the stream ends.
fn open_stream(url: &str, headers: &[(&str, &str)]) -> mpsc::Receiver<Option<Sse>> {
    stream_of(url, headers, None)
}

/// A person's reply stream for `conversation`: a POST naming it in the body, as the chat opens it.
fn reply_stream(
    app: &TestApp,
    conversation: &str,
    headers: &[(&str, &str)],
) -> mpsc::Receiver<Option<Sse>> {
    let body = serde_json::json!({ "conversation": conversation }).to_string();
    stream_of(&app.url("/api/chat/events"), headers, Some(&body))
}

fn stream_of(
    url: &str,
    headers: &[(&str, &str)],
    json: Option<&str>,
) -> mpsc::Receiver<Option<Sse>> {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let mut request = match json {
        Some(_) => agent.post(url).set("content-type", "application/json"),
        None => agent.get(url),
    }
    .set("accept", "text/event-stream");
    for (k, v) in headers {
        request = request.set(k, v);
    }
    let response = match json {
        Some(body) => request.send_string(body),
        None => request.call(),
    }
    .expect("the stream opens");
    assert_eq!(response.status(), 200);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let reader = BufReader::new(response.into_reader());
        let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if line.is_empty() {
                if !data.is_empty() {
                    let sse = Sse {
                        event: std::mem::replace(&mut event, "message".to_string()),
                        id: id.take(),
                        data: serde_json::from_str(&data).unwrap_or(Value::Null),
                    };
                    data.clear();
                    if tx.send(Some(sse)).is_err() {
                        return;
                    }
                }
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        let _ = tx.send(None);
    });
    rx
}

/// The next event on `stream` that `wanted` accepts, skipping others.
fn next_matching(stream: &mpsc::Receiver<Option<Sse>>, wanted: impl Fn(&Sse) -> bool) -> Sse {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match stream.recv_timeout(left) {
            Ok(Some(event)) if wanted(&event) => return event,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended before the event came"),
            Err(_) => panic!("no such event within {WAIT:?}"),
        }
    }
}

fn ticket_event(stream: &mpsc::Receiver<Option<Sse>>, name: &str, ticket: i64) -> Sse {
    next_matching(stream, |e| {
        e.event == "ticket" && e.data["event"] == name && e.data["ticket"] == ticket
    })
}

#[test]
fn an_escalation_reaches_the_console_live_and_the_agents_reply_reaches_the_person_live() {
    let app = spawn_app();
    let agent = staff_cookie(&app, "agent1", Role::Agent);
    let console = open_stream(&app.url("/support/events"), &[("cookie", &agent)]);

    // The person asks for a person and leaves a number.
    let (status, reply) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "the pump keeps alarming, can I talk to a person", "contact": "+34 600 000 000"}),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["escalated"], true);
    let ticket = reply["ticket"]["id"].as_i64().unwrap();
    let conversation = reply["conversation"].as_str().unwrap().to_string();

    let opened = ticket_event(&console, "ticket.opened", ticket);
    assert_eq!(opened.data["status"], "open");
    assert_eq!(opened.data["reason"], "asked for a person");
    assert_eq!(opened.data["code"], PUMP_CODE);
    assert!(opened.data["text"]
        .as_str()
        .unwrap()
        .contains("keeps alarming"));
    assert!(
        opened.data.get("conversation").is_none(),
        "the conversation id is the person's key and is not broadcast"
    );

    // The queue and the ticket page: transcript, the sections cited, the contact.
    let queue = get(&app.url("/support"), &[("cookie", &agent)]);
    assert_eq!(queue.status, 200);
    assert!(queue
        .body
        .contains(&format!("href=\"/support/tickets/{ticket}\"")));
    let page = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &agent)],
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("the pump keeps alarming"));
    assert!(page.body.contains("+34 600 000 000"));
    assert!(page.body.contains("asked for a person"));
    let cited = reply["citations"].as_array().unwrap();
    assert!(!cited.is_empty(), "{reply}");
    for c in cited {
        assert!(
            page.body
                .contains(&format!("href=\"{}\"", c["url"].as_str().unwrap())),
            "the ticket shows cited section {}",
            c["url"]
        );
    }
    // Times read as the site lives them: the ticket's opening in its site's time zone.
    let row = &app.rows(&format!(
        "SELECT t.created_at, s.timezone FROM tickets t JOIN assets a ON a.id = t.asset_id JOIN sites s ON s.id = a.site_id WHERE t.id = {ticket}"
    ))[0];
    let tz: chrono_tz::Tz = row[1].parse().unwrap();
    let local = chrono::DateTime::parse_from_rfc3339(&row[0])
        .unwrap()
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string();
    assert!(page.body.contains(&local), "{local} in {}", page.body);
    let csrf = page.hidden("csrf").unwrap();

    // The person's chat listens; the agent replies; the reply arrives.
    let person = reply_stream(&app, &conversation, &[]);
    let sent = post_form(
        &app.url(&format!("/support/tickets/{ticket}/reply")),
        &[("cookie", &agent)],
        &[
            ("csrf", &csrf),
            ("body", "Check the door latch first; I am on my way."),
        ],
    );
    assert_eq!(sent.status, 303, "{}", sent.body);
    let reply_event = next_matching(&person, |e| e.event == "reply");
    assert_eq!(
        reply_event.data["text"],
        "Check the door latch first; I am on my way."
    );
    assert!(reply_event.id.is_some(), "replies carry ids to resume from");
    assert!(
        !reply_event.data.to_string().contains("agent1"),
        "the person is not told the agent's username"
    );
    // A chat reloaded on the phone gets the conversation back as it was shown: the question, the
    // answer's sentences with their citation numbers, the agent's reply (not the agent's name),
    // and the open ticket to listen on.
    let history = post_json(
        &app.url("/api/chat/history"),
        &[],
        &serde_json::json!({ "conversation": conversation }).to_string(),
    );
    assert_eq!(history.status, 200, "{}", history.body);
    let history: Value = serde_json::from_str(&history.body).unwrap();
    let turns = history["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(
        turns[0]["question"],
        "the pump keeps alarming, can I talk to a person"
    );
    assert_eq!(turns[0]["sentences"], reply["sentences"]);
    assert_eq!(turns[0]["citations"], reply["citations"]);
    assert_eq!(turns[0]["unsure"], reply["unsure"]);
    assert_eq!(
        history["replies"][0]["text"],
        "Check the door latch first; I am on my way."
    );
    assert!(!history.to_string().contains("agent1"));
    assert_eq!(history["ticket"]["id"], ticket);
    for unknown in [
        serde_json::json!({ "conversation": "0".repeat(32) }),
        serde_json::json!({ "conversation": "../../etc" }),
    ] {
        let refused = post_json(&app.url("/api/chat/history"), &[], &unknown.to_string());
        assert_eq!(refused.status, 404, "{}", refused.body);
    }
    // Only the role that held the conversation gets it back: staff signed in on the same tablet
    // (or signed out, the other way round) get nothing.
    let as_staff = post_json(
        &app.url("/api/chat/history"),
        &[("cookie", &agent)],
        &serde_json::json!({ "conversation": conversation }).to_string(),
    );
    assert_eq!(as_staff.status, 404, "{}", as_staff.body);
    // Nor do its replies stream to another role, nor may another role write into it (and so into
    // its ticket, contact included).
    let staff_stream = post_json(
        &app.url("/api/chat/events"),
        &[("cookie", &agent)],
        &serde_json::json!({ "conversation": conversation }).to_string(),
    );
    assert_eq!(staff_stream.status, 404, "{}", staff_stream.body);
    let continued = post_json(
        &app.url("/api/chat"),
        &[("cookie", &agent)],
        &serde_json::json!({"conversation": conversation, "message": "and then?", "contact": "someone else"})
            .to_string(),
    );
    assert_eq!(continued.status, 404, "{}", continued.body);
    let malformed = post_json(&app.url("/api/chat/history"), &[], "{\"conversation\": 7}");
    assert_eq!(malformed.status, 422, "{}", malformed.body);

    let answered = ticket_event(&console, "ticket.reply", ticket);
    assert_eq!(answered.data["status"], "answered");
    assert_eq!(answered.data["by"], "agent1");

    // A chat that reconnects gets what it missed from the store, and nothing it had.
    let late = reply_stream(&app, &conversation, &[]);
    let missed = next_matching(&late, |e| e.event == "reply");
    assert_eq!(missed.id, reply_event.id);
    let resumed = reply_stream(
        &app,
        &conversation,
        &[("last-event-id", reply_event.id.as_deref().unwrap())],
    );
    // Four streams per conversation at most (a phone, a tab, a reconnect overlapping the old one):
    // a fifth is served and the oldest ends (the likelier dead one; refusing the newest would make
    // the browser give up for good).
    let _fourth = reply_stream(&app, &conversation, &[]);
    let fifth = reply_stream(&app, &conversation, &[]);
    loop {
        match person.recv_timeout(WAIT) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => panic!("the oldest stream was not ended"),
        }
    }

    // The person writes again on the ticket: the agent sees it.
    let (status, _) = ask(
        &app,
        serde_json::json!({"conversation": conversation, "message": "the latch looks fine, what next?"}),
    );
    assert_eq!(status, 200);
    let message = ticket_event(&console, "ticket.message", ticket);
    assert_eq!(message.data["text"], "the latch looks fine, what next?");

    // Closing: both sides hear it; a reply to a closed ticket is refused.
    let closed = post_form(
        &app.url(&format!("/support/tickets/{ticket}/close")),
        &[("cookie", &agent)],
        &[("csrf", &csrf)],
    );
    assert_eq!(closed.status, 303);
    ticket_event(&console, "ticket.closed", ticket);
    next_matching(&fifth, |e| e.event == "closed");
    // On connecting it was told the ticket is open; then nothing until the close.
    let first_on_resumed = next_matching(&resumed, |_| true);
    assert_eq!(
        (
            first_on_resumed.event.as_str(),
            &first_on_resumed.data["ticket"]
        ),
        ("open", &Value::from(ticket))
    );
    let second_on_resumed = next_matching(&resumed, |_| true);
    assert_eq!(
        second_on_resumed.event, "closed",
        "a resumed stream does not repeat the reply it had"
    );
    // A chat reloaded now says it closed, and which ticket (it listens on, for a reopen).
    let history = post_json(
        &app.url("/api/chat/history"),
        &[],
        &serde_json::json!({ "conversation": conversation }).to_string(),
    );
    let history: Value = serde_json::from_str(&history.body).unwrap();
    assert_eq!(
        (
            &history["closed"],
            &history["closed_ticket"],
            &history["ticket"]
        ),
        (&Value::Bool(true), &Value::from(ticket), &Value::Null)
    );
    let refused = post_form(
        &app.url(&format!("/support/tickets/{ticket}/reply")),
        &[("cookie", &agent)],
        &[("csrf", &csrf), ("body", "hello?")],
    );
    assert_eq!(refused.status, 409);
    assert!(
        refused.body.contains("Your reply, not sent") && refused.body.contains("hello?"),
        "the agent still has the text: {}",
        refused.body
    );

    // The person asks for someone again: a new ticket, whose page shows the earlier ticket's reply
    // too (the person saw it; the agent answering now should).
    let (status, again) = ask(
        &app,
        serde_json::json!({"conversation": conversation, "message": "talk to a person please"}),
    );
    assert_eq!(status, 200, "{again}");
    let second = again["ticket"]["id"].as_i64().unwrap();
    assert_ne!(second, ticket);
    let page = get(
        &app.url(&format!("/support/tickets/{second}")),
        &[("cookie", &agent)],
    );
    assert!(
        page.body
            .contains("Check the door latch first; I am on my way.")
            && page.body.contains(&format!("on ticket {ticket}")),
        "{}",
        page.body
    );

    // Shutting down ends every open stream instead of waiting on them.
    drop(app.shutdown());
    loop {
        match console.recv_timeout(WAIT) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => panic!("the console stream is still open after shutdown"),
        }
    }
}

/// The `<tr id="ticket-{id}">` row of the queue page, as `who` sees it.
fn queue_row(app: &TestApp, who: &str, ticket: i64) -> String {
    let queue = get(&app.url("/support"), &[("cookie", who)]);
    let from = queue
        .body
        .find(&format!("<tr id=\"ticket-{ticket}\""))
        .unwrap_or_else(|| panic!("ticket {ticket} in {}", queue.body));
    let to = queue.body[from..].find("</tr>").unwrap() + from;
    queue.body[from..to].to_string()
}

#[test]
fn an_agent_takes_a_ticket_and_a_colleague_acting_on_an_older_page_changes_nothing() {
    let app = spawn_app();
    let ana = staff_cookie(&app, "ana.agent", Role::Agent);
    let ben = staff_cookie(&app, "ben.agent", Role::Agent);
    let console = open_stream(&app.url("/support/events"), &[("cookie", &ben)]);
    let (_, opened) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "can I talk to a person"}),
    );
    let ticket = opened["ticket"]["id"].as_i64().unwrap();
    let conversation = opened["conversation"].as_str().unwrap().to_string();
    let person = reply_stream(&app, &conversation, &[]);
    let assigned = || {
        app.rows(&format!(
            "SELECT assigned_to FROM tickets WHERE id = {ticket}"
        ))[0][0]
            .clone()
    };
    let page_of = |who: &str| {
        get(
            &app.url(&format!("/support/tickets/{ticket}")),
            &[("cookie", who)],
        )
    };
    let take = |who: &str, csrf: &str, expected: &str| {
        post_form(
            &app.url(&format!("/support/tickets/{ticket}/take")),
            &[("cookie", who)],
            &[("csrf", csrf), ("expected", expected)],
        )
    };

    // Both open the ticket while nobody has it.
    let ana_page = page_of(&ana);
    let ben_page = page_of(&ben);
    assert!(ben_page
        .body
        .contains("<span id=\"ticket-agent\">nobody yet</span>"));
    assert_eq!(ben_page.hidden("expected").as_deref(), Some(""));
    assert!(queue_row(&app, &ben, ticket).contains("<td class=\"agent\"></td>"));

    // Ana takes it: the consoles hear it live, and the queue says who has it.
    let taken = take(&ana, &ana_page.hidden("csrf").unwrap(), "");
    assert_eq!(taken.status, 303, "{}", taken.body);
    assert_eq!(assigned(), "ana.agent");
    let event = ticket_event(&console, "ticket.assigned", ticket);
    assert_eq!(
        (event.data["assigned_to"].clone(), event.data["by"].clone()),
        (Value::from("ana.agent"), Value::from("ana.agent"))
    );
    assert!(queue_row(&app, &ben, ticket).contains("<td class=\"agent\">ana.agent</td>"));
    assert!(queue_row(&app, &ana, ticket).contains("<td class=\"agent\">you</td>"));

    // Ben, on the page he opened before, also takes it: nothing changes, and he is told who has
    // it, with a form to take it over.
    let ben_csrf = ben_page.hidden("csrf").unwrap();
    let refused = take(&ben, &ben_csrf, "");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("ana.agent has this ticket now"),
        "{}",
        refused.body
    );
    assert_eq!(refused.hidden("expected").as_deref(), Some("ana.agent"));
    assert_eq!(assigned(), "ana.agent");
    // Taking it over from the colleague the page names works.
    assert_eq!(take(&ben, &ben_csrf, "ana.agent").status, 303);
    assert_eq!(assigned(), "ben.agent");
    assert_eq!(
        ticket_event(&console, "ticket.assigned", ticket).data["assigned_to"],
        "ben.agent"
    );

    // Only the agent who has it lets go of it; then nobody has it.
    let release = |who: &str| {
        post_form(
            &app.url(&format!("/support/tickets/{ticket}/release")),
            &[("cookie", who)],
            &[("csrf", &page_of(who).hidden("csrf").unwrap())],
        )
    };
    assert_eq!(release(&ana).status, 409);
    assert_eq!(assigned(), "ben.agent");
    assert_eq!(release(&ben).status, 303);
    assert_eq!(assigned(), "NULL");
    assert_eq!(
        ticket_event(&console, "ticket.assigned", ticket).data["assigned_to"],
        Value::Null
    );

    // A reply to a ticket nobody has makes it the replier's; it does not take one from a colleague.
    let replied = post_form(
        &app.url(&format!("/support/tickets/{ticket}/reply")),
        &[("cookie", &ana)],
        &[
            ("csrf", &page_of(&ana).hidden("csrf").unwrap()),
            ("body", "I can help: what does the screen show?"),
        ],
    );
    assert_eq!(replied.status, 303, "{}", replied.body);
    assert_eq!(assigned(), "ana.agent");
    let answered = ticket_event(&console, "ticket.reply", ticket);
    assert_eq!(answered.data["assigned_to"], "ana.agent");
    // Said as a take is, for whoever listens only to those.
    assert_eq!(
        ticket_event(&console, "ticket.assigned", ticket).data["by"],
        "ana.agent"
    );
    post_form(
        &app.url(&format!("/support/tickets/{ticket}/reply")),
        &[("cookie", &ben)],
        &[
            ("csrf", &page_of(&ben).hidden("csrf").unwrap()),
            ("body", "Adding: check the door latch."),
        ],
    );
    assert_eq!(assigned(), "ana.agent");

    // The person's chat was told the ticket is open (on connecting), then sent the two replies
    // and nothing else: not the takes, not who has the ticket.
    let connected = person.recv_timeout(WAIT).unwrap().unwrap();
    assert_eq!(connected.event, "open", "{connected:?}");
    for _ in 0..2 {
        let seen = person.recv_timeout(WAIT).unwrap().unwrap();
        assert_eq!(seen.event, "reply", "{seen:?}");
        let text = seen.data.to_string();
        assert!(
            !text.contains("ana.agent") && !text.contains("ben.agent"),
            "{text}"
        );
    }

    // A closed ticket cannot be taken.
    let ana_csrf = page_of(&ana).hidden("csrf").unwrap();
    post_form(
        &app.url(&format!("/support/tickets/{ticket}/close")),
        &[("cookie", &ana)],
        &[("csrf", &ana_csrf)],
    );
    let after_close = take(&ben, &ben_csrf, "ana.agent");
    assert_eq!(after_close.status, 409);
    assert!(
        after_close.body.contains("This ticket is closed"),
        "{}",
        after_close.body
    );
    assert_eq!(assigned(), "ana.agent");
    // Nor is a made-up ticket, or a form without its CSRF token.
    assert_eq!(
        post_form(
            &app.url("/support/tickets/999999/take"),
            &[("cookie", &ben)],
            &[("csrf", &ben_csrf), ("expected", "")],
        )
        .status,
        404
    );
    assert_eq!(take(&ben, "forged", "").status, 403);

    // Closed too soon: ben reopens it, and it is his; reopening an open ticket changes nothing.
    let closed_page = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &ben)],
    );
    assert!(
        closed_page.body.contains("id=\"reopen-form\""),
        "{}",
        closed_page.body
    );
    let reopen = |who: &str, csrf: &str| {
        post_form(
            &app.url(&format!("/support/tickets/{ticket}/reopen")),
            &[("cookie", who)],
            &[("csrf", csrf)],
        )
    };
    assert_eq!(reopen(&ben, "forged").status, 403);
    assert_eq!(
        next_matching(&person, |_| true).event,
        "closed",
        "the person's chat heard the close"
    );
    assert_eq!(reopen(&ben, &ben_csrf).status, 303);
    // The person's chat, still listening, hears the reopen and then ben's reply.
    let reopened = next_matching(&person, |_| true);
    assert_eq!(
        (reopened.event.as_str(), &reopened.data["ticket"]),
        ("open", &Value::from(ticket))
    );
    assert_eq!(
        app.rows(&format!(
            "SELECT status, assigned_to, closed_at FROM tickets WHERE id = {ticket}"
        )),
        vec![vec![
            "open".to_string(),
            "ben.agent".to_string(),
            "NULL".to_string()
        ]]
    );
    let again = reopen(&ben, &ben_csrf);
    assert_eq!(again.status, 409);
    assert!(again.body.contains("open already"), "{}", again.body);
    post_form(
        &app.url(&format!("/support/tickets/{ticket}/reply")),
        &[("cookie", &ben)],
        &[
            ("csrf", &ben_csrf),
            ("body", "Reopened: did the latch help?"),
        ],
    );
    let after_reopen = next_matching(&person, |_| true);
    assert_eq!(after_reopen.event, "reply");
    assert_eq!(after_reopen.data["text"], "Reopened: did the latch help?");
}

#[test]
fn what_the_person_writes_while_an_agent_acts_is_neither_closed_nor_answered_away() {
    let app = spawn_app();
    let ana = staff_cookie(&app, "ana.agent", Role::Agent);
    let console = open_stream(&app.url("/support/events"), &[("cookie", &ana)]);
    let (_, opened) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "can I talk to a person"}),
    );
    let ticket = opened["ticket"]["id"].as_i64().unwrap();
    let conversation = opened["conversation"].as_str().unwrap().to_string();
    let opened_event = ticket_event(&console, "ticket.opened", ticket);
    let first_turn = opened_event.data["turn"]
        .as_i64()
        .expect("the event names its turn");
    let page = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &ana)],
    );
    let (csrf, seen) = (page.hidden("csrf").unwrap(), page.hidden("seen").unwrap());
    assert_eq!(
        seen,
        first_turn.to_string(),
        "the page shows up to the opening turn"
    );
    let status =
        || app.rows(&format!("SELECT status FROM tickets WHERE id = {ticket}"))[0][0].clone();

    // The person writes (leaving a number) while the agent's page is open.
    let (code, _) = ask(
        &app,
        serde_json::json!({"conversation": conversation, "message": "how do I clean the pump", "contact": "+34 600 111 222"}),
    );
    assert_eq!(code, 200);
    let message = ticket_event(&console, "ticket.message", ticket);
    assert!(message.data["turn"].as_i64().unwrap() > first_turn);
    // The console learns the number live, and what the assistant told the person meanwhile; the
    // queue's webhook would get only that there is a number (checked in the webhook test).
    assert_eq!(message.data["contact"], "+34 600 111 222");
    assert_eq!(message.data["has_contact"], true);
    assert!(
        message.data["answer"]
            .as_str()
            .is_some_and(|a| !a.is_empty()),
        "{}",
        message.data
    );

    // Closing from the page that did not show the message closes nothing, and shows it.
    let close = |seen: &str| {
        post_form(
            &app.url(&format!("/support/tickets/{ticket}/close")),
            &[("cookie", &ana)],
            &[("csrf", &csrf), ("seen", seen)],
        )
    };
    let refused = close(&seen);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("the person wrote after this page was drawn"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("how do I clean the pump"),
        "{}",
        refused.body
    );
    assert_eq!(status(), "open");

    // A reply sent from that old page is stored, but the message it did not see still waits.
    let reply = |seen: &str, nonce: &str, body: &str| {
        post_form(
            &app.url(&format!("/support/tickets/{ticket}/reply")),
            &[("cookie", &ana)],
            &[
                ("csrf", &csrf),
                ("seen", seen),
                ("nonce", nonce),
                ("body", body),
            ],
        )
    };
    let nonce = page.hidden("nonce").unwrap();
    let sent = reply(&seen, &nonce, "Hello, I am looking at your pump now.");
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(
        sent.body.contains("The person wrote meanwhile"),
        "{}",
        sent.body
    );
    assert_eq!(
        status(),
        "open",
        "nobody has answered the newer message yet"
    );
    // The same form sent again (a double click) stores nothing more.
    let repeated = reply(&seen, &nonce, "Hello, I am looking at your pump now.");
    assert_eq!(repeated.status, 303, "{}", repeated.body);
    let count = || {
        app.rows(&format!(
            "SELECT COUNT(*) FROM ticket_messages WHERE ticket_id = {ticket}"
        ))[0][0]
            .clone()
    };
    assert_eq!(count(), "1");

    // From the page that shows everything, a reply answers the ticket.
    let current = refused.hidden("seen").unwrap();
    let fresh_nonce = refused.hidden("nonce").unwrap();
    assert_ne!(fresh_nonce, nonce, "each drawing of the form is its own");
    assert_eq!(
        reply(
            &current,
            &fresh_nonce,
            "The blinking light means the door is open: close it firmly."
        )
        .status,
        303
    );
    assert_eq!(
        (status(), count()),
        ("answered".to_string(), "2".to_string())
    );

    // Answered, then the person writes and the agent replies from the page before it: the ticket
    // waits again, from the person's message on.
    // The agent has the conversation now: the message goes to them, and the assistant, which
    // answered before anyone took the ticket, stays out of it.
    let (code, to_agent) = ask(
        &app,
        serde_json::json!({"conversation": conversation, "message": "closed it, still beeping"}),
    );
    assert_eq!(code, 200, "{to_agent}");
    assert_eq!(status(), "waiting");
    assert_eq!(to_agent["answer"], "", "{to_agent}");
    assert_eq!(to_agent["sentences"].as_array().map(Vec::len), Some(0));
    assert_eq!(to_agent["ticket"]["id"], ticket);
    assert!(
        to_agent["ticket"]["next"]
            .as_str()
            .is_some_and(|n| n.starts_with("Sent to ") && n.contains(&format!("ticket {ticket}"))),
        "{to_agent}"
    );
    let kind = app.rows(&format!(
        "SELECT kind FROM chat_turns WHERE conversation_id = '{conversation}' ORDER BY id DESC LIMIT 1"
    ))[0][0]
        .clone();
    assert_eq!(kind, "to_agent");
    assert_eq!(
        reply(&current, &format!("{nonce}-2"), "One moment.").status,
        200
    );
    assert_eq!(status(), "waiting");
    let waiting_since = app.rows(&format!(
        "SELECT t.waiting_since = (SELECT MAX(at) FROM chat_turns WHERE conversation_id = t.conversation_id) FROM tickets t WHERE t.id = {ticket}"
    ))[0][0]
        .clone();
    assert_eq!(waiting_since, "1", "it waits from the unanswered message");

    // With everything seen, closing closes; without the field (an older page), it closes as before.
    let latest = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &ana)],
    )
    .hidden("seen")
    .unwrap();
    assert_eq!(close(&latest).status, 303);
    assert_eq!(status(), "closed");
    ticket_event(&console, "ticket.closed", ticket);
}

/// A message the person sends while an agent closes their ticket reaches someone, whichever
/// happens first: the close is refused (it had not seen the message), or the ticket closes and the
/// message opens a new one.
#[test]
fn a_message_sent_as_the_agent_closes_the_ticket_is_not_lost() {
    let app = spawn_app();
    let ana = staff_cookie(&app, "ana.agent", Role::Agent);
    let mut checked = 0;
    for attempt in 0..4 {
        let (_, opened) = ask(
            &app,
            serde_json::json!({"code": PUMP_CODE, "message": "can I talk to a person"}),
        );
        let ticket = opened["ticket"]["id"].as_i64().unwrap();
        let conversation = opened["conversation"].as_str().unwrap().to_string();
        let page = get(
            &app.url(&format!("/support/tickets/{ticket}")),
            &[("cookie", &ana)],
        );
        let (csrf, seen) = (page.hidden("csrf").unwrap(), page.hidden("seen").unwrap());
        // The person's question runs the assistant (nobody has taken the ticket yet); the agent
        // closes the ticket from the page drawn before it, a moment after it is sent.
        let question = format!("how do I clean the pump, attempt {attempt}");
        let sent = std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                ask(
                    &app,
                    serde_json::json!({"conversation": conversation, "message": question}),
                )
            });
            std::thread::sleep(Duration::from_millis(30 * attempt as u64));
            let closed = post_form(
                &app.url(&format!("/support/tickets/{ticket}/close")),
                &[("cookie", &ana)],
                &[("csrf", &csrf), ("seen", &seen)],
            );
            assert!(
                closed.status == 303 || closed.status == 409,
                "{}",
                closed.body
            );
            writer.join().unwrap()
        });
        assert_eq!(sent.0, 200, "{}", sent.1);
        // A message that arrived after the close is a new question to the assistant, which
        // answered it (the person's chat was told the ticket closed). One that arrived while the
        // ticket was open was for the agent: it is on a live ticket, and the reply says which.
        let kind = app.rows(&format!(
            "SELECT kind FROM chat_turns WHERE conversation_id = '{conversation}' ORDER BY id DESC LIMIT 1"
        ))[0][0]
            .clone();
        if kind != "to_agent" {
            continue;
        }
        checked += 1;
        let live = app.rows(&format!(
            "SELECT id FROM tickets WHERE conversation_id = '{conversation}' AND status != 'closed'"
        ));
        assert_eq!(
            live.len(),
            1,
            "attempt {attempt}: the message reached nobody"
        );
        assert_eq!(
            sent.1["ticket"]["id"].as_i64().map(|id| id.to_string()),
            Some(live[0][0].clone()),
            "attempt {attempt}: {}",
            sent.1
        );
    }
    // At least one message went to the agent while the ticket was open (the attempts that lost the
    // race to the close were new questions, which prove nothing here).
    assert!(checked > 0, "no attempt sent a message to the agent");
}

#[test]
fn a_console_resumes_from_where_its_page_was_read_and_a_reconnect_from_its_last_event() {
    let app = spawn_app();
    let ana = staff_cookie(&app, "ana.agent", Role::Agent);
    // The queue page is read; a ticket opens before its script opens the stream.
    let page = get(&app.url("/support"), &[("cookie", &ana)]);
    let live = between(&page.body, "data-live=\"", "\"").to_string();
    assert!(live.starts_with("/support/events?from="), "{live}");
    let (_, opened) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "can I talk to a person"}),
    );
    let ticket = opened["ticket"]["id"].as_i64().unwrap();
    let console = open_stream(&app.url(&live), &[("cookie", &ana)]);
    let missed = ticket_event(&console, "ticket.opened", ticket);
    let id = missed.id.clone().expect("console events carry an id");

    // A reconnect names the last event it had: what came after it is sent, and not it again.
    let conversation = opened["conversation"].as_str().unwrap();
    ask(
        &app,
        serde_json::json!({"conversation": conversation, "message": "the door light blinks"}),
    );
    let resumed = open_stream(&app.url(&live), &[("cookie", &ana), ("last-event-id", &id)]);
    let first = next_matching(&resumed, |_| true);
    assert_eq!(
        (
            first.event.as_str(),
            &first.data["event"],
            &first.data["ticket"]
        ),
        (
            "ticket",
            &Value::from("ticket.message"),
            &Value::from(ticket)
        ),
        "{first:?}"
    );
    // A page drawn now resumes after both: its stream sends only what happens next.
    let later = get(&app.url("/support"), &[("cookie", &ana)]);
    let now = open_stream(
        &app.url(between(&later.body, "data-live=\"", "\"")),
        &[("cookie", &ana)],
    );
    let ticket_page = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &ana)],
    );
    post_form(
        &app.url(&format!("/support/tickets/{ticket}/close")),
        &[("cookie", &ana)],
        &[
            ("csrf", &ticket_page.hidden("csrf").unwrap()),
            ("seen", &ticket_page.hidden("seen").unwrap()),
        ],
    );
    let next = next_matching(&now, |_| true);
    assert_eq!(next.data["event"], "ticket.closed", "{next:?}");

    // A position this server never gave (from before a restart) is caught up from the store.
    for stale in ["00000000.0", "garbage"] {
        let reloaded = open_stream(
            &app.url(&format!("/support/events?from={stale}")),
            &[("cookie", &ana)],
        );
        assert_eq!(next_matching(&reloaded, |_| true).event, "resync");
    }
}

/// A ticket that reached the wrong team goes to the right queue: that queue's agents see it (live,
/// with a note saying who moved it) and take it; the agents of the queue it left no longer do;
/// the person is told the new team's name; a form drawn before the move changes nothing.
#[test]
fn an_agent_moves_a_ticket_to_the_right_teams_queue() {
    let app = spawn_app();
    let admin = staff_cookie(&app, "admin-m", Role::Admin);
    let bio = staff_cookie(&app, "bio.mover", Role::Agent);
    let fac = staff_cookie(&app, "fac.agent", Role::Agent);
    let users = get(&app.url("/admin/users"), &[("cookie", &admin)]);
    let csrf = users.hidden("csrf").unwrap();
    for (user, queue) in [("bio.mover", "biomed"), ("fac.agent", "mercy-facilities")] {
        let set = post_form(
            &app.url(&format!("/admin/users/{user}/queues")),
            &[("cookie", &admin)],
            &[("csrf", csrf.as_str()), ("queue", queue)],
        );
        assert_eq!(set.status, 200, "{}", set.body);
    }
    let bio_console = open_stream(&app.url("/support/events"), &[("cookie", &bio)]);
    let fac_console = open_stream(&app.url("/support/events"), &[("cookie", &fac)]);
    let (_, opened) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "can I talk to a person"}),
    );
    let ticket = opened["ticket"]["id"].as_i64().unwrap();
    let conversation = opened["conversation"].as_str().unwrap().to_string();
    ticket_event(&bio_console, "ticket.opened", ticket);
    let page = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &bio)],
    );
    assert!(page.body.contains("id=\"move-form\""), "{}", page.body);
    assert!(
        page.body
            .contains("<option value=\"mercy-facilities\">Facilities and Plant Operations"),
        "{}",
        page.body
    );
    let bio_csrf = page.hidden("csrf").unwrap();
    let taken = post_form(
        &app.url(&format!("/support/tickets/{ticket}/take")),
        &[("cookie", &bio)],
        &[("csrf", &bio_csrf), ("expected", "")],
    );
    assert_eq!(taken.status, 303);
    let move_to = |cookie: &str, csrf: &str, from: &str, to: &str| {
        post_form(
            &app.url(&format!("/support/tickets/{ticket}/move")),
            &[("cookie", cookie)],
            &[("csrf", csrf), ("from", from), ("to", to)],
        )
    };
    // A queue that does not exist: refused, nothing moves.
    let unknown = move_to(&bio, &bio_csrf, "biomed", "no-such-queue");
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert!(unknown.body.contains("There is no support queue"));

    let moved = move_to(&bio, &bio_csrf, "biomed", "mercy-facilities");
    assert_eq!(moved.status, 303, "{}", moved.body);
    assert_eq!(
        moved.header("location"),
        Some("/support"),
        "bio.mover does not work that queue: back to their queue"
    );
    assert_eq!(
        app.rows(&format!(
            "SELECT queue_id, assigned_to IS NULL FROM tickets WHERE id = {ticket}"
        ))[0],
        vec!["mercy-facilities".to_string(), "1".to_string()],
        "moved, and nobody has it until the new team takes it"
    );
    // The team it left hears that it went; the new team hears of it, with where it came from.
    let left = ticket_event(&bio_console, "ticket.moved", ticket);
    assert_eq!(left.data["out_of_scope"], true, "{left:?}");
    let arrived = ticket_event(&fac_console, "ticket.moved", ticket);
    assert_eq!(arrived.data["queue"], "mercy-facilities");
    assert_eq!(arrived.data["from_queue"], "biomed");
    assert!(arrived.data.get("out_of_scope").is_none(), "{arrived:?}");
    // Pages follow: gone for the old team, listed with a note for the new one.
    assert_eq!(
        get(
            &app.url(&format!("/support/tickets/{ticket}")),
            &[("cookie", &bio)]
        )
        .status,
        404
    );
    assert!(!get(&app.url("/support"), &[("cookie", &bio)])
        .body
        .contains(&format!("id=\"ticket-{ticket}\"")));
    let theirs = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &fac)],
    );
    assert_eq!(theirs.status, 200);
    assert!(
        theirs
            .body
            .contains("Moved this ticket from queue biomed to mercy-facilities"),
        "{}",
        theirs.body
    );
    assert!(theirs.body.contains("bio.mover"), "the note says who");
    // A form drawn before the move (from the old queue) changes nothing.
    let stale = move_to(
        &fac,
        &theirs.hidden("csrf").unwrap(),
        "biomed",
        "kestrel-maintenance",
    );
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert_eq!(
        app.rows(&format!("SELECT queue_id FROM tickets WHERE id = {ticket}"))[0][0],
        "mercy-facilities"
    );
    // The person is told the new team's name with their next message.
    let (_, next) = ask(
        &app,
        serde_json::json!({"conversation": conversation, "message": "is anyone there?"}),
    );
    assert!(
        next["ticket"]["next"]
            .as_str()
            .is_some_and(|n| n.contains("Facilities and Plant Operations")),
        "{next}"
    );
}

/// An agent who goes home does not keep people waiting on them: signing out lets go of the
/// tickets they held (unless they are still signed in on another device), and the hourly
/// retention pass lets go of those of an agent whose session ran out without a sign-out.
#[test]
fn an_agent_who_goes_home_lets_go_of_their_tickets() {
    let app = spawn_app();
    let console = open_stream(
        &app.url("/support/events"),
        &[("cookie", &staff_cookie(&app, "watcher", Role::Agent))],
    );
    let ana = staff_cookie(&app, "ana.home", Role::Agent);
    let take = |cookie: &str| {
        let (_, opened) = ask(
            &app,
            serde_json::json!({"code": PUMP_CODE, "message": "can I talk to a person"}),
        );
        let ticket = opened["ticket"]["id"].as_i64().unwrap();
        let page = get(
            &app.url(&format!("/support/tickets/{ticket}")),
            &[("cookie", cookie)],
        );
        let taken = post_form(
            &app.url(&format!("/support/tickets/{ticket}/take")),
            &[("cookie", cookie)],
            &[("csrf", &page.hidden("csrf").unwrap()), ("expected", "")],
        );
        assert_eq!(taken.status, 303, "{}", taken.body);
        ticket
    };
    let holder = |ticket: i64| {
        app.rows(&format!(
            "SELECT COALESCE(assigned_to, '') FROM tickets WHERE id = {ticket}"
        ))[0][0]
            .clone()
    };
    let first = take(&ana);
    // Signed in on a second device too: signing out of one keeps the ticket.
    let ana_tablet = {
        let form = get(&app.url("/signin"), &[]);
        let csrf_cookie = form.set_cookie("scanaid_csrf").unwrap();
        let signed_in = post_form(
            &app.url("/signin"),
            &[("cookie", &format!("scanaid_csrf={csrf_cookie}"))],
            &[
                ("csrf", &form.hidden("csrf").unwrap()),
                ("username", "ana.home"),
                ("password", "ana.home-password-long"),
            ],
        );
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        format!(
            "scanaid_session={}",
            signed_in.set_cookie("scanaid_session").unwrap()
        )
    };
    sign_out(&app, &ana);
    assert_eq!(holder(first), "ana.home", "still signed in on the tablet");
    sign_out(&app, &ana_tablet);
    assert_eq!(holder(first), "", "signed out everywhere: let go");
    let released = next_matching(&console, |e| {
        e.data["event"] == "ticket.assigned"
            && e.data["ticket"] == first
            && e.data["assigned_to"].is_null()
    });
    assert_eq!(released.data["by"], "ana.home");

    // Gone home without signing out: once the session is past its idle limit, retention lets go.
    let bo = staff_cookie(&app, "bo.home", Role::Agent);
    let second = take(&bo);
    let kept = take(&staff_cookie(&app, "cy.here", Role::Agent));
    app.rows(
        "UPDATE sessions SET last_seen = '2020-01-01T00:00:00.000Z'
         WHERE user_id = (SELECT id FROM users WHERE username = 'bo.home')",
    );
    let state = app.state.clone();
    app.block_on(async move {
        scanaid_server::retention::purge_and_announce(&state, chrono::Utc::now()).await
    })
    .unwrap();
    assert_eq!(holder(second), "");
    assert_eq!(holder(kept), "cy.here", "a signed-in agent keeps theirs");
    drop(bo);
}

/// A compressor at the Kestrel plant: its tickets go to the plant's maintenance queue.
const COMPRESSOR_CODE: &str = "85G2cjxt";

#[test]
fn an_agent_given_queues_sees_only_those_queues_tickets_pages_and_events() {
    let app = spawn_app();
    let admin = staff_cookie(&app, "admin9", Role::Admin);
    let bio = staff_cookie(&app, "bio.agent", Role::Agent);
    let anyone = staff_cookie(&app, "any.agent", Role::Agent);

    // The administrator gives bio.agent the biomedical queue on the users page.
    let users = get(&app.url("/admin/users"), &[("cookie", &admin)]);
    let csrf = users.hidden("csrf").unwrap();
    assert!(
        users
            .body
            .contains("action=\"/admin/users/bio.agent/queues\""),
        "{}",
        users.body
    );
    let set_queues = |user: &str, queues: &[&str]| {
        let mut fields = vec![("csrf", csrf.as_str())];
        fields.extend(queues.iter().map(|q| ("queue", *q)));
        post_form(
            &app.url(&format!("/admin/users/{user}/queues")),
            &[("cookie", &admin)],
            &fields,
        )
    };
    let unknown = set_queues("bio.agent", &["biomed", "no-such-queue"]);
    assert_eq!(unknown.status, 422);
    assert!(
        unknown.body.contains("There is no queue"),
        "{}",
        unknown.body
    );
    assert_eq!(set_queues("admin9", &["biomed"]).status, 422);
    assert_eq!(set_queues("nobody.here", &["biomed"]).status, 404);
    assert_eq!(
        app.rows("SELECT COUNT(*) FROM agent_queues")[0][0],
        "0",
        "a refused form changes nothing"
    );
    let set = set_queues("bio.agent", &["biomed"]);
    assert_eq!(set.status, 200, "{}", set.body);
    assert!(set.body.contains("bio.agent works biomed."), "{}", set.body);
    assert!(
        set.body.contains("value=\"biomed\" checked"),
        "{}",
        set.body
    );

    let bio_console = open_stream(&app.url("/support/events"), &[("cookie", &bio)]);
    let every_console = open_stream(&app.url("/support/events"), &[("cookie", &anyone)]);
    let open_ticket = |code: &str| {
        let (status, reply) = ask(
            &app,
            serde_json::json!({"code": code, "message": "can I talk to a person"}),
        );
        assert_eq!(status, 200, "{reply}");
        reply["ticket"]["id"].as_i64().unwrap()
    };
    let pump = open_ticket(PUMP_CODE);
    let compressor = open_ticket(COMPRESSOR_CODE);

    // An agent given no queue works every queue, and hears of both.
    ticket_event(&every_console, "ticket.opened", pump);
    ticket_event(&every_console, "ticket.opened", compressor);
    // bio.agent hears of the pump's ticket, then of its take, and never of the compressor's.
    let page = get(
        &app.url(&format!("/support/tickets/{pump}")),
        &[("cookie", &bio)],
    );
    assert_eq!(page.status, 200);
    let bio_csrf = page.hidden("csrf").unwrap();
    let taken = post_form(
        &app.url(&format!("/support/tickets/{pump}/take")),
        &[("cookie", &bio)],
        &[("csrf", &bio_csrf), ("expected", "")],
    );
    assert_eq!(taken.status, 303);
    for expected in ["ticket.opened", "ticket.assigned"] {
        let seen = bio_console.recv_timeout(WAIT).unwrap().unwrap();
        assert_eq!(
            (seen.data["event"].as_str(), seen.data["ticket"].as_i64()),
            (Some(expected), Some(pump)),
            "{seen:?}"
        );
    }

    // The queue page, the ticket's page and every action on it: the other team's ticket is one
    // that does not exist.
    let row = |who: &str, ticket: i64| {
        get(&app.url("/support"), &[("cookie", who)])
            .body
            .contains(&format!("<tr id=\"ticket-{ticket}\""))
    };
    assert!(row(&bio, pump) && !row(&bio, compressor));
    assert!(row(&anyone, pump) && row(&anyone, compressor));
    assert!(
        get(&app.url("/support"), &[("cookie", &bio)])
            .body
            .contains("You work Biomedical Engineering."),
        "the console says which queues its agent works"
    );
    assert!(!get(&app.url("/support"), &[("cookie", &anyone)])
        .body
        .contains("You work"));
    assert!(row(&admin, pump) && row(&admin, compressor));
    assert_eq!(
        get(
            &app.url(&format!("/support/tickets/{compressor}")),
            &[("cookie", &bio)],
        )
        .status,
        404
    );
    for (action, fields) in [
        (
            "reply",
            vec![("csrf", bio_csrf.as_str()), ("body", "hello")],
        ),
        ("take", vec![("csrf", bio_csrf.as_str()), ("expected", "")]),
        ("release", vec![("csrf", bio_csrf.as_str())]),
        ("close", vec![("csrf", bio_csrf.as_str())]),
    ] {
        let refused = post_form(
            &app.url(&format!("/support/tickets/{compressor}/{action}")),
            &[("cookie", &bio)],
            &fields,
        );
        assert_eq!(refused.status, 404, "{action}: {}", refused.body);
    }
    assert_eq!(
        app.rows(&format!(
            "SELECT status, assigned_to FROM tickets WHERE id = {compressor}"
        )),
        vec![vec!["open".to_string(), "NULL".to_string()]]
    );
    assert_eq!(
        app.rows(&format!(
            "SELECT COUNT(*) FROM ticket_messages WHERE ticket_id = {compressor}"
        ))[0][0],
        "0"
    );

    // Moved to the plant's queue, bio.agent lets go of the pump's ticket: colleagues see it waiting
    // for someone, not held by an agent who can no longer answer it.
    let moved = set_queues("bio.agent", &["kestrel-maintenance"]);
    assert!(
        moved.body.contains("1 ticket(s) they had in other queues"),
        "{}",
        moved.body
    );
    assert_eq!(
        app.rows(&format!(
            "SELECT assigned_to FROM tickets WHERE id = {pump}"
        ))[0][0],
        "NULL"
    );
    assert!(row(&bio, compressor) && !row(&bio, pump));
    // bio.agent's open console is told its queues changed (its rows are the old queues'), and
    // hears nothing of the biomedical queue any more; a console whose queues did not change is
    // told nothing of it.
    let seen = bio_console.recv_timeout(WAIT).unwrap().unwrap();
    assert_eq!(seen.event, "queues", "{seen:?}");
    for expected in ["ticket.assigned", "ticket.assigned"] {
        let seen = every_console.recv_timeout(WAIT).unwrap().unwrap();
        assert_eq!(
            (seen.event.as_str(), seen.data["event"].as_str()),
            ("ticket", Some(expected)),
            "{seen:?}"
        );
    }

    // The closed tickets listed are the agent's queues' last 20, not everyone's: twenty closed
    // compressor tickets after the pump's do not push it off the biomedical agent's page.
    set_queues("bio.agent", &["biomed"]);
    let admin_csrf = get(
        &app.url(&format!("/support/tickets/{pump}")),
        &[("cookie", &admin)],
    )
    .hidden("csrf")
    .unwrap();
    post_form(
        &app.url(&format!("/support/tickets/{pump}/close")),
        &[("cookie", &admin)],
        &[("csrf", &admin_csrf)],
    );
    for _ in 0..20 {
        app.rows(&format!(
            "INSERT INTO tickets (conversation_id, asset_id, code, role, language, confidence, reason, status, created_at)
             SELECT conversation_id, asset_id, code, role, language, confidence, reason, 'closed', created_at
             FROM tickets WHERE id = {compressor}"
        ));
    }
    assert!(
        row(&bio, pump),
        "the pump's closed ticket is on its agent's page"
    );
    assert!(
        !row(&anyone, pump),
        "everyone's last 20 closed are the compressor's"
    );

    // No queue ticked: every queue again.
    assert!(set_queues("bio.agent", &[])
        .body
        .contains("bio.agent works every queue."));
    assert!(row(&bio, compressor));

    // A removed agent's queues go with the account.
    set_queues("bio.agent", &["biomed"]);
    let removed = post_form(
        &app.url("/admin/users/bio.agent/remove"),
        &[("cookie", &admin)],
        &[("csrf", &csrf), ("confirm", "remove")],
    );
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(app.rows("SELECT COUNT(*) FROM agent_queues")[0][0], "0");
}

/// Where two people or two requests meet: escalations at the same moment share one ticket, a
/// reply to a ticket closed meanwhile is refused and not stored, a person writing after an agent's
/// reply puts the ticket back at the head of the queue, and a person coming back after the close is
/// told it closed.
#[test]
fn simultaneous_escalations_share_a_ticket_and_the_queue_shows_who_waits() {
    let app = spawn_app();
    let agent = staff_cookie(&app, "agent4", Role::Agent);
    let (_, first) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "how do I clean the pump"}),
    );
    let conversation = first["conversation"].as_str().unwrap().to_string();

    // Four "talk to a person" messages of one conversation at once: one ticket.
    let url = app.url("/api/chat");
    let askers: Vec<_> = (0..4)
        .map(|i| {
            let (url, conversation) = (url.clone(), conversation.clone());
            std::thread::spawn(move || {
                let body = serde_json::json!({"conversation": conversation, "message": format!("talk to a person please ({i})")});
                let reply = post_json(&url, &[], &body.to_string());
                assert_eq!(reply.status, 200, "{}", reply.body);
                serde_json::from_str::<Value>(&reply.body).unwrap()["ticket"]["id"]
                    .as_i64()
                    .unwrap()
            })
        })
        .collect();
    let tickets: std::collections::BTreeSet<i64> =
        askers.into_iter().map(|a| a.join().unwrap()).collect();
    assert_eq!(
        tickets.len(),
        1,
        "one ticket for one conversation: {tickets:?}"
    );
    let shared = *tickets.first().unwrap();
    assert_eq!(
        app.rows(&format!(
            "SELECT COUNT(*) FROM tickets WHERE conversation_id = '{conversation}'"
        )),
        vec![vec!["1"]]
    );

    // A reply that reaches the store after the ticket closed is refused and nothing is stored.
    let store = app.state.store.clone();
    let stored = app
        .block_on(async move {
            store.close_ticket(shared, "agent4", None).await?;
            store
                .add_ticket_reply(shared, "agent4", "too late", None, None)
                .await
        })
        .unwrap();
    assert!(matches!(
        stored,
        scanaid_server::tickets::ReplyOutcome::Closed
    ));
    assert_eq!(
        app.rows(&format!(
            "SELECT COUNT(*) FROM ticket_messages WHERE ticket_id = {shared}"
        )),
        vec![vec!["0"]]
    );
    // The person comes back after the close: their stream says it closed, at once.
    let back = reply_stream(&app, &conversation, &[]);
    let told = next_matching(&back, |_| true);
    assert_eq!(
        (told.event.as_str(), &told.data["ticket"]),
        ("closed", &Value::from(shared))
    );

    // The queue: E (open; its person writes again at the end), C (answered), A (answered, then the
    // person writes again: waiting), B (open).
    let escalate = |message: &str| {
        let (status, reply) = ask(
            &app,
            serde_json::json!({"code": PUMP_CODE, "message": message}),
        );
        assert_eq!(status, 200, "{reply}");
        (
            reply["ticket"]["id"].as_i64().unwrap(),
            reply["conversation"].as_str().unwrap().to_string(),
        )
    };
    let reply_to = |ticket: i64| {
        let page = get(
            &app.url(&format!("/support/tickets/{ticket}")),
            &[("cookie", &agent)],
        );
        let csrf = page.hidden("csrf").unwrap();
        let sent = post_form(
            &app.url(&format!("/support/tickets/{ticket}/reply")),
            &[("cookie", &agent)],
            &[("csrf", &csrf), ("body", "On it.")],
        );
        assert_eq!(sent.status, 303, "{}", sent.body);
    };
    let (e, e_conversation) = escalate("talk to a person about the screen");
    let (c, _) = escalate("talk to a person about the stand");
    reply_to(c);
    let (a, a_conversation) = escalate("talk to a person about the battery");
    reply_to(a);
    let (b, _) = escalate("talk to a person about the alarm");
    let (status, _) = ask(
        &app,
        serde_json::json!({"conversation": a_conversation, "message": "it still beeps, what now?"}),
    );
    assert_eq!(status, 200);
    // E's person, still unanswered, writes again: E keeps its place (it has waited longest).
    let (status, _) = ask(
        &app,
        serde_json::json!({"conversation": e_conversation, "message": "anyone there?"}),
    );
    assert_eq!(status, 200);
    let status_of =
        |t: i64| app.rows(&format!("SELECT status FROM tickets WHERE id = {t}"))[0][0].clone();
    assert_eq!(
        (status_of(a), status_of(b), status_of(c)),
        (
            "waiting".to_string(),
            "open".to_string(),
            "answered".to_string()
        )
    );
    let queue = get(&app.url("/support"), &[("cookie", &agent)]).body;
    let position = |t: i64| {
        queue
            .find(&format!("id=\"ticket-{t}\""))
            .unwrap_or_else(|| panic!("ticket {t} listed"))
    };
    assert!(
        position(e) < position(b) && position(b) < position(a) && position(a) < position(c),
        "waiting for an agent first, by how long they waited; answered after"
    );
}

/// Waits for `stream` to end, failing if a ticket event reaches it first.
fn ends_without_tickets(stream: &mpsc::Receiver<Option<Sse>>, why: &str) {
    loop {
        match stream.recv_timeout(WAIT) {
            Ok(None) => return,
            Ok(Some(event)) if event.event == "ticket" => {
                panic!("{why}, yet the console was sent {event:?}")
            }
            Ok(Some(_)) => {}
            Err(_) => panic!("{why}, yet the console stream stayed open {WAIT:?}"),
        }
    }
}

#[test]
fn a_console_stream_ends_when_its_agent_is_signed_out_and_is_sent_nothing_after() {
    let app = spawn_app();
    let agent = staff_cookie(&app, "agent1", Role::Agent);
    let colleague = staff_cookie(&app, "agent2", Role::Agent);
    // A console left open reconnects by itself; that must not keep its session alive. Opening the
    // stream leaves the session's last activity where it was.
    let idle = |since: &str| {
        app.rows(&format!(
            "UPDATE sessions SET last_seen = '{since}' WHERE user_id = (SELECT id FROM users WHERE username = 'agent1') RETURNING 1"
        ))
    };
    let last_seen = || {
        app.rows("SELECT s.last_seen FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = 'agent1'")[0][0].clone()
    };
    let recent = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    idle(&recent);
    let console = open_stream(&app.url("/support/events"), &[("cookie", &agent)]);
    assert_eq!(
        last_seen(),
        recent,
        "opening the stream renewed the session"
    );
    let colleagues = open_stream(&app.url("/support/events"), &[("cookie", &colleague)]);

    // The agent signs out on another tab; the open console tab keeps listening.
    sign_out(&app, &agent);

    let (status, reply) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "the pump keeps alarming, can I talk to a person", "contact": "+34 600 000 000"}),
    );
    assert_eq!(status, 200, "{reply}");
    let ticket = reply["ticket"]["id"].as_i64().unwrap();
    ends_without_tickets(&console, "the agent signed out");
    // A colleague still signed in sees the ticket.
    ticket_event(&colleagues, "ticket.opened", ticket);

    // Removing an account ends its open console too.
    let admin = staff_cookie(&app, "admin1", Role::Admin);
    let users = get(&app.url("/admin/users"), &[("cookie", &admin)]);
    let removed = post_form(
        &app.url("/admin/users/agent2/remove"),
        &[("cookie", &admin)],
        &[
            ("csrf", &users.hidden("csrf").unwrap()),
            ("confirm", "remove"),
        ],
    );
    assert!(removed.status < 400, "{}", removed.body);
    let (status, reply) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "I need to speak to a human about the pump", "contact": "+34 600 000 001"}),
    );
    assert_eq!(status, 200, "{reply}");
    ends_without_tickets(&colleagues, "the agent's account was removed");
}

#[test]
fn a_signed_in_persons_reply_stream_ends_when_they_sign_out() {
    let app = spawn_app();
    let agent = staff_cookie(&app, "agent1", Role::Agent);
    let technician = staff_cookie(&app, "tech1", Role::Technician);
    let asked = post_json(
        &app.url("/api/chat"),
        &[("cookie", &technician)],
        &serde_json::json!({"code": PUMP_CODE, "message": "the pump keeps alarming, can I talk to a person"})
            .to_string(),
    );
    assert_eq!(asked.status, 200, "{}", asked.body);
    let reply: Value = serde_json::from_str(&asked.body).unwrap();
    let conversation = reply["conversation"].as_str().unwrap().to_string();
    let ticket = reply["ticket"]["id"].as_i64().unwrap();
    let replies = reply_stream(&app, &conversation, &[("cookie", &technician)]);
    let watching = reply_stream(&app, &conversation, &[("cookie", &technician)]);
    let agent_reply = |text: &str| {
        let page = get(
            &app.url(&format!("/support/tickets/{ticket}")),
            &[("cookie", &agent)],
        );
        let sent = post_form(
            &app.url(&format!("/support/tickets/{ticket}/reply")),
            &[("cookie", &agent)],
            &[("csrf", &page.hidden("csrf").unwrap()), ("body", text)],
        );
        assert_eq!(sent.status, 303, "{}", sent.body);
    };
    agent_reply("I am on my way.");
    assert_eq!(
        next_matching(&replies, |e| e.event == "reply").data["text"],
        "I am on my way."
    );

    // The technician signs out of the shared tablet; the chat tab stays open.
    sign_out(&app, &technician);
    agent_reply("The spare seal is in drawer 3.");
    for stream in [&replies, &watching] {
        loop {
            match stream.recv_timeout(WAIT) {
                Ok(None) => break,
                Ok(Some(e)) if e.event == "reply" && e.data["text"] != "I am on my way." => {
                    panic!("signed out, yet the tab was sent {e:?}")
                }
                Ok(Some(_)) => {}
                Err(_) => panic!("signed out, yet the reply stream stayed open"),
            }
        }
    }
    // Whoever picks the tablet up next is not sent the technician's replies either.
    let next_person = post_json(
        &app.url("/api/chat/events"),
        &[],
        &serde_json::json!({ "conversation": conversation }).to_string(),
    );
    assert_eq!(next_person.status, 404, "{}", next_person.body);
}

#[test]
fn the_console_is_for_agents_and_bad_requests_get_clear_answers() {
    let app = spawn_app();
    let anonymous = get(&app.url("/support"), &[]);
    assert_eq!(anonymous.status, 303);
    assert_eq!(
        anonymous.header("location"),
        Some("/signin?next=%2Fsupport")
    );
    assert_eq!(get(&app.url("/support/events"), &[]).status, 303);
    let technician = staff_cookie(&app, "tech1", Role::Technician);
    assert_eq!(
        get(&app.url("/support"), &[("cookie", &technician)]).status,
        403
    );
    assert_eq!(
        get(&app.url("/support/tickets/1"), &[("cookie", &technician)]).status,
        403
    );

    let agent = staff_cookie(&app, "agent2", Role::Agent);
    assert_eq!(
        get(&app.url("/support/tickets/999"), &[("cookie", &agent)]).status,
        404
    );
    let (_, reply) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "talk to a person"}),
    );
    let ticket = reply["ticket"]["id"].as_i64().unwrap();
    // The number a person reads out on the phone opens their ticket from the queue page.
    for typed in [
        format!("{ticket}"),
        format!("%23{ticket}"),
        format!("+{ticket}+"),
    ] {
        let found = get(
            &app.url(&format!("/support/find?ticket={typed}")),
            &[("cookie", &agent)],
        );
        assert_eq!(found.status, 303, "{typed}");
        assert_eq!(
            found.header("location"),
            Some(format!("/support/tickets/{ticket}").as_str())
        );
    }
    for bad in ["abc", "", "-3", "0"] {
        let refused = get(
            &app.url(&format!("/support/find?ticket={bad}")),
            &[("cookie", &agent)],
        );
        assert_eq!(refused.status, 400, "{bad}");
        assert!(
            refused.body.contains("is not a ticket number"),
            "{}",
            refused.body
        );
    }
    assert_eq!(get(&app.url("/support/find?ticket=1"), &[]).status, 303);
    assert_eq!(
        get(
            &app.url("/support/find?ticket=1"),
            &[("cookie", &technician)]
        )
        .status,
        403
    );
    // Whether the person's chat is open now, so the agent knows a reply reaches them at once.
    let listening = |who: &str| {
        let page = get(
            &app.url(&format!("/support/tickets/{ticket}")),
            &[("cookie", who)],
        );
        between(&page.body, "id=\"person-listening\">", "</td>").to_string()
    };
    assert!(
        listening(&agent).starts_with("not open now"),
        "{}",
        listening(&agent)
    );
    let conversation = reply["conversation"].as_str().unwrap().to_string();
    let person = reply_stream(&app, &conversation, &[]);
    let deadline = std::time::Instant::now() + WAIT;
    while !listening(&agent).starts_with("open now") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            listening(&agent)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(person);
    // The queue says how long the person has waited, and since when (for the page's script).
    let row = queue_row(&app, &agent, ticket);
    assert!(
        row.contains("<td class=\"waited\" data-since=\"20")
            && row.contains(">under a minute</td>"),
        "{row}"
    );
    let page = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &agent)],
    );
    let csrf = page.hidden("csrf").unwrap();
    let forged = post_form(
        &app.url(&format!("/support/tickets/{ticket}/reply")),
        &[("cookie", &agent)],
        &[("csrf", "not-the-token"), ("body", "hi")],
    );
    assert_eq!(forged.status, 403);
    let empty = post_form(
        &app.url(&format!("/support/tickets/{ticket}/reply")),
        &[("cookie", &agent)],
        &[("csrf", &csrf), ("body", "   ")],
    );
    assert_eq!(empty.status, 422);
    assert!(empty.body.contains("A reply is 1 to"));
    let long = "x".repeat(4001);
    let too_long = post_form(
        &app.url(&format!("/support/tickets/{ticket}/reply")),
        &[("cookie", &agent)],
        &[("csrf", &csrf), ("body", &long)],
    );
    assert_eq!(too_long.status, 422);
    assert!(
        too_long.body.contains(&format!(">{long}</textarea>")),
        "the refused reply is back in the box to shorten"
    );
    assert_eq!(
        app.rows("SELECT COUNT(*) FROM ticket_messages")[0][0],
        "0",
        "nothing refused was stored"
    );
    // 4,000 characters typed over lines arrive with CRLF breaks (over 4,000 bytes): they fit.
    let lines = format!("{}\r\n", "y".repeat(99)).repeat(40);
    let fits = post_form(
        &app.url(&format!("/support/tickets/{ticket}/reply")),
        &[("cookie", &agent)],
        &[("csrf", &csrf), ("body", &lines)],
    );
    assert_eq!(fits.status, 303, "{}", fits.body);

    // The person's stream: unknown or malformed conversations are 404 JSON, not a hanging stream.
    for bad in ["0123456789abcdef0123456789abcdef", "nothex", "../../etc"] {
        let r = post_json(
            &app.url("/api/chat/events"),
            &[],
            &serde_json::json!({ "conversation": bad }).to_string(),
        );
        assert_eq!(r.status, 404, "{bad}");
        assert!(r.body.contains("unknown conversation"));
    }
    // A body that is not the request is refused with why, as JSON.
    for body in ["{}", "{\"conversation\": 7}", "not json"] {
        let r = post_json(&app.url("/api/chat/events"), &[], body);
        assert!(matches!(r.status, 400 | 415 | 422), "{body}: {}", r.status);
        assert!(r.body.contains("not a reply stream request"), "{}", r.body);
    }
    // The conversation is never in a URL: the old address names no route.
    assert_eq!(
        get(
            &app.url("/api/chat/0123456789abcdef0123456789abcdef/events"),
            &[]
        )
        .status,
        404
    );

    // A contact that is not one short line is refused with a reason.
    let (status, body) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "talk to a person", "contact": "x".repeat(201)}),
    );
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("contact"));
}

/// A webhook receiver on loopback that fails its first `fail_first` requests with 500 and records
/// every request (headers lower-cased, body).
type Headers = Vec<(String, String)>;

struct Receiver {
    url: String,
    /// Each request's headers, its body, and the status it was answered with.
    requests: mpsc::Receiver<(Headers, String, u16)>,
}

fn receiver_on(listener: std::net::TcpListener, fail_first: usize) -> Receiver {
    receiver_answering(listener, move |n, _| if n < fail_first { 500 } else { 200 })
}

/// A webhook receiver on loopback that answers request `n` (counted from 0) with the status
/// `answer(n, its headers)` gives, and records every request as `receiver_on` does.
fn receiver_answering(
    listener: std::net::TcpListener,
    answer: impl Fn(usize, &Headers) -> u16 + Send + 'static,
) -> Receiver {
    let url = format!("http://{}/hooks/scanaid", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.trim().to_lowercase(), v.trim().to_string()));
            }
            let length: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let status = answer(n, &headers);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            if tx
                .send((headers, String::from_utf8(body).unwrap(), status))
                .is_err()
            {
                return;
            }
        }
    });
    Receiver { url, requests: rx }
}

/// An address nobody listens on yet: a port reserved, then closed (a receiver that is down).
fn a_closed_port() -> std::net::SocketAddr {
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    reserved.local_addr().unwrap()
}

/// Gives the pump's support queue a webhook to `url` signed with `secret`; the queue's id.
/// The support queue of the asset `code` is on.
fn queue_of(app: &TestApp, code: &'static str) -> String {
    let store = app.state.store.clone();
    app.block_on(async move { store.resolve_code(code).await })
        .unwrap()
        .unwrap()
        .asset
        .clone()
        .unwrap()
        .queue_id
}

fn webhook_on_pumps_queue(app: &TestApp, url: &str, secret: &str) -> String {
    let store = app.state.store.clone();
    let queue = queue_of(app, PUMP_CODE);
    let (q, url, secret) = (queue.clone(), url.to_string(), secret.to_string());
    assert!(app
        .block_on(async move { store.set_queue_webhook(&q, Some(&url), Some(&secret)).await })
        .unwrap());
    queue
}

/// A receiver that will not take one kind of event (it answers 422 every time) must not hold up
/// the queue's later events for ever: after five refusals (failures of other kinds, a receiver
/// that is down, do not count) it is set aside, the next events go out, and an administrator sends
/// it again from the webhooks page once the receiver takes it.
#[test]
fn a_delivery_the_receiver_keeps_refusing_is_set_aside_and_later_events_go_out() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let app = spawn_app_with(ServerConfig {
        webhook_backoff: scanaid_server::webhook::Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        ..ServerConfig::default()
    });
    let refusing = Arc::new(AtomicBool::new(true));
    let refuses = refusing.clone();
    let openings = std::sync::atomic::AtomicUsize::new(0);
    let receiver = receiver_answering(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        move |_, headers| {
            if header(headers, "x-scanaid-event") != "ticket.opened"
                || !refuses.load(Ordering::SeqCst)
            {
                return 200;
            }
            // Down twice (500) first: those are not refusals.
            if openings.fetch_add(1, Ordering::SeqCst) < 2 {
                500
            } else {
                422
            }
        },
    );
    let queue = webhook_on_pumps_queue(&app, &receiver.url, "shared-secret");
    let (_, opened) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "please, a person"}),
    );
    let conversation = opened["conversation"].as_str().unwrap().to_string();
    ask(
        &app,
        serde_json::json!({"conversation": conversation, "message": "the door light blinks"}),
    );
    // Two failures and five refusals of the opening, then the message goes out behind it.
    let (mut failures, mut refusals) = (0, 0);
    loop {
        let (headers, _, status) = receiver.requests.recv_timeout(WAIT).expect("a delivery");
        let event = header(&headers, "x-scanaid-event").to_string();
        if status == 422 || status == 500 {
            assert_eq!(event, "ticket.opened");
            if status == 422 {
                refusals += 1;
            } else {
                failures += 1;
            }
            continue;
        }
        assert_eq!(event, "ticket.message", "the next event went out");
        break;
    }
    assert_eq!((failures, refusals), (2, 5));
    // Recorded once the attempt's outcome is stored (a moment after the receiver answered).
    let deadline = std::time::Instant::now() + WAIT;
    while app.rows("SELECT COUNT(*) FROM webhook_deliveries WHERE delivered_at IS NOT NULL")[0][0]
        != "1"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not recorded as delivered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows = app.rows(
        "SELECT event, attempts, set_aside_at IS NOT NULL, delivered_at IS NOT NULL, COALESCE(last_error, '')
         FROM webhook_deliveries ORDER BY id",
    );
    assert_eq!(
        rows[0],
        vec!["ticket.opened", "7", "1", "0", "receiver answered 422"]
    );
    assert_eq!(rows[1][..4], ["ticket.message", "1", "0", "1"]);
    // The webhooks page says so, and sends it again once the receiver takes it.
    let admin = staff_cookie(&app, "admin-w", Role::Admin);
    let page = get(&app.url("/admin/webhooks"), &[("cookie", &admin)]);
    let row = between(&page.body, &format!("<tr id=\"webhook-{queue}\">"), "</tr>");
    assert!(row.contains("<td class=\"waiting\">0</td>"), "{row}");
    assert!(row.contains("<td class=\"set-aside\">1<form"), "{row}");
    refusing.store(false, Ordering::SeqCst);
    let again = post_form(
        &app.url(&format!("/admin/webhooks/{queue}/retry")),
        &[("cookie", &admin)],
        &[("csrf", &page.hidden("csrf").unwrap())],
    );
    assert_eq!(again.status, 303, "{}", again.body);
    let (headers, _, status) = receiver.requests.recv_timeout(WAIT).expect("sent again");
    assert_eq!(
        (header(&headers, "x-scanaid-event"), status),
        ("ticket.opened", 200)
    );
    let deadline = std::time::Instant::now() + WAIT;
    while app.rows("SELECT COUNT(*) FROM webhook_deliveries WHERE delivered_at IS NULL")[0][0]
        != "0"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not recorded as delivered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A forged form changes nothing.
    assert_eq!(
        post_form(
            &app.url(&format!("/admin/webhooks/{queue}/retry")),
            &[("cookie", &admin)],
            &[("csrf", "forged")],
        )
        .status,
        403
    );
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[test]
fn a_queue_webhook_gets_signed_events_retried_until_delivered() {
    let app = spawn_app_with(ServerConfig {
        webhook_backoff: scanaid_server::webhook::Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_secs(2),
        },
        ..ServerConfig::default()
    });
    // The receiver is down at first.
    let addr = a_closed_port();
    let url = format!("http://{addr}/hooks/scanaid");
    let secret = "s3cret-shared-with-the-receiver";
    let queue = webhook_on_pumps_queue(&app, &url, secret);

    let (status, reply) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "please, I need to speak to a person"}),
    );
    assert_eq!(status, 200);
    let ticket = reply["ticket"]["id"].as_i64().unwrap();
    // The person writes again while the receiver is down: that event waits behind the opening one
    // (a receiver gets a queue's events in order), however the retries of the first are timed.
    let conversation = reply["conversation"].as_str().unwrap().to_string();
    ask(
        &app,
        serde_json::json!({"conversation": conversation, "message": "the door light blinks"}),
    );

    // Attempts fail while nobody listens; the delivery is kept with the reason.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = app
            .rows("SELECT attempts, delivered_at, last_error FROM webhook_deliveries ORDER BY id");
        assert_eq!(
            rows[1][0], "0",
            "the second event is not tried before the first is delivered"
        );
        let row = &rows[0];
        if row[0].parse::<i64>().unwrap() >= 2 {
            assert_eq!(row[1], "NULL");
            assert!(row[2].contains("could not reach"), "{row:?}");
            // The URL (a webhook's may carry its secret) is neither stored nor, so, logged.
            assert!(
                !row[2].contains("/hooks/") && !row[2].contains(&addr.port().to_string()),
                "{row:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no retries: {row:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The receiver comes up, answers 500 once, then 200.
    let receiver = receiver_on(std::net::TcpListener::bind(addr).unwrap(), 1);
    assert_eq!(receiver.url, url);
    let (first_headers, first_body, first_status) = receiver.requests.recv_timeout(WAIT).unwrap();
    assert_eq!(first_status, 500);
    let (headers, body, status) = receiver.requests.recv_timeout(WAIT).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, first_body, "a retry sends the same event");
    assert_eq!(
        header(&headers, "x-scanaid-delivery"),
        header(&first_headers, "x-scanaid-delivery")
    );
    assert_eq!(header(&headers, "x-scanaid-event"), "ticket.opened");
    assert_eq!(header(&headers, "content-type"), "application/json");
    // The receiver's check: recompute the signature over the timestamp and the body as received.
    let timestamp: i64 = header(&headers, "x-scanaid-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    assert_eq!(
        header(&headers, "x-scanaid-signature"),
        scanaid_server::webhook::signature(secret, timestamp, &body)
    );
    assert_ne!(
        header(&headers, "x-scanaid-signature"),
        scanaid_server::webhook::signature("another-secret", timestamp, &body)
    );
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["event"], "ticket.opened");
    assert_eq!(event["ticket"], ticket);
    assert_eq!(event["queue"], queue.as_str());
    assert!(event["console_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/support/tickets/{ticket}")));
    assert!(event.get("conversation").is_none());

    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let row = &app.rows("SELECT delivered_at, attempts FROM webhook_deliveries ORDER BY id")[0];
        if row[0] != "NULL" {
            assert!(row[1].parse::<i64>().unwrap() >= 4, "{row:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    // Then the message that waited behind it.
    let (headers, body, _) = receiver.requests.recv_timeout(WAIT).unwrap();
    assert_eq!(header(&headers, "x-scanaid-event"), "ticket.message");
    assert!(body.contains("the door light blinks"), "{body}");

    // Later events go out too, in order: the person writes again.
    ask(
        &app,
        serde_json::json!({"conversation": conversation, "message": "it says E-204", "contact": "+34 600 333 444"}),
    );
    let (headers, body, _) = receiver.requests.recv_timeout(WAIT).unwrap();
    assert_eq!(header(&headers, "x-scanaid-event"), "ticket.message");
    assert!(body.contains("E-204"));
    // The receiver learns that the person left a number, not the number: that stays in the console.
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["has_contact"], true);
    assert!(
        event.get("contact").is_none() && !body.contains("600 333"),
        "{body}"
    );
}

#[test]
fn a_queue_whose_receiver_hangs_does_not_hold_up_another_queues_webhook() {
    let app = spawn_app();
    // The pump's queue has a receiver that takes connections and never answers.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_url = format!("http://{}/hooks/scanaid", hanging.local_addr().unwrap());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for stream in hanging.incoming().flatten() {
                held.lock().unwrap().push(stream);
            }
        });
    }
    webhook_on_pumps_queue(&app, &hanging_url, "pump-secret");
    // The compressor's queue (another team) has one that works.
    let working = receiver_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), 0);
    let compressor_queue = queue_of(&app, COMPRESSOR_CODE);
    let (store, q, url) = (
        app.state.store.clone(),
        compressor_queue.clone(),
        working.url.clone(),
    );
    assert!(app
        .block_on(async move {
            store
                .set_queue_webhook(&q, Some(&url), Some("plant-secret"))
                .await
        })
        .unwrap());

    ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "talk to a person"}),
    );
    // The pump's delivery is in flight (the receiver holds the connection) ...
    let deadline = std::time::Instant::now() + WAIT;
    while held.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pump's receiver was never called"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... when the compressor's event is delivered, not after the pump's attempt gives up.
    ask(
        &app,
        serde_json::json!({"code": COMPRESSOR_CODE, "message": "talk to a person"}),
    );
    let (headers, _, status) = working.requests.recv_timeout(WAIT).unwrap();
    assert_eq!(
        (header(&headers, "x-scanaid-event"), status),
        ("ticket.opened", 200)
    );
    assert_eq!(
        app.rows(&format!(
            "SELECT d.attempts, d.delivered_at IS NULL FROM webhook_deliveries d WHERE d.queue_id != '{compressor_queue}'"
        )),
        vec![vec!["0", "1"]],
        "the pump's first attempt had not even ended"
    );
    // The hanging receiver lets go: its attempt fails now rather than at its timeout.
    held.lock().unwrap().clear();
}

#[test]
fn a_webhook_needs_an_http_url_and_a_secret() {
    let registry = |queue: &str| {
        format!(
            "[[site]]\nid = \"s\"\nname = \"Site\"\ntimezone = \"Europe/Madrid\"\n\n[[queue]]\nid = \"q\"\nname = \"Queue\"\nsite = \"s\"\n{queue}\n"
        )
    };
    use scanaid_server::registry::Registry;
    let ok = Registry::parse(&registry(
        "webhook_url = \"http://10.0.0.5/hook\"\nwebhook_secret = \"k\"",
    ))
    .unwrap();
    assert_eq!(ok.queues[0].webhook_secret.as_deref(), Some("k"));
    let no_secret =
        Registry::parse(&registry("webhook_url = \"http://10.0.0.5/hook\"")).unwrap_err();
    assert!(no_secret.contains("needs webhook_secret"), "{no_secret}");
    let https = Registry::parse(&registry(
        "webhook_url = \"https://tickets.example/hook\"\nwebhook_secret = \"k\"",
    ))
    .unwrap_err();
    assert!(https.contains("http:// relay"), "{https}");
    let missing_env = Registry::parse(&registry(
        "webhook_url = \"http://10.0.0.5/hook\"\nwebhook_secret = \"env:SCANAID_TEST_SURELY_UNSET\"",
    ))
    .unwrap_err();
    assert!(
        missing_env.contains("SCANAID_TEST_SURELY_UNSET"),
        "{missing_env}"
    );
}

#[test]
fn retention_deletes_quiet_conversations_old_contacts_idle_tickets_and_untaken_payloads() {
    use scanaid_server::retention::purge_and_announce;
    let app = spawn_app();
    let agent = staff_cookie(&app, "agent3", Role::Agent);
    let (_, closed) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "talk to a person", "contact": "ward 4 phone 2231"}),
    );
    let closed_ticket = closed["ticket"]["id"].as_i64().unwrap();
    let page = get(
        &app.url(&format!("/support/tickets/{closed_ticket}")),
        &[("cookie", &agent)],
    );
    let csrf = page.hidden("csrf").unwrap();
    post_form(
        &app.url(&format!("/support/tickets/{closed_ticket}/reply")),
        &[("cookie", &agent)],
        &[("csrf", &csrf), ("body", "Done, closing.")],
    );
    post_form(
        &app.url(&format!("/support/tickets/{closed_ticket}/close")),
        &[("cookie", &agent)],
        &[("csrf", &csrf)],
    );
    let (_, plain) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "how do I clean the pump"}),
    );
    let (_, open) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "I need to speak to someone"}),
    );
    get(&app.url(&format!("/c/{PUMP_CODE}")), &[]);
    app.flush_events();
    let count = |table: &str| app.rows(&format!("SELECT COUNT(*) FROM {table}"))[0][0].clone();
    assert_eq!(count("conversations"), "3");

    let state = app.state.clone();
    let run = |days: i64| {
        let state = state.clone();
        app.block_on(async move {
            purge_and_announce(&state, chrono::Utc::now() + chrono::Duration::days(days)).await
        })
        .unwrap()
    };
    // Tomorrow only the agent's expired session goes; in 15 days the closed ticket's contact is
    // cleared, nothing else.
    let tomorrow = run(1);
    assert_eq!((tomorrow.conversations, tomorrow.sessions), (0, 1));
    assert_eq!(
        app.rows(&format!(
            "SELECT contact FROM tickets WHERE id = {closed_ticket}"
        ))[0][0],
        "ward 4 phone 2231"
    );
    let later = run(15);
    assert_eq!((later.conversations, later.contacts_cleared), (0, 1));
    assert_eq!(
        app.rows(&format!(
            "SELECT contact FROM tickets WHERE id = {closed_ticket}"
        ))[0][0],
        "NULL"
    );

    // Payloads a receiver never took, and audit entries, have limits too.
    app.rows(&format!(
        "INSERT INTO webhook_deliveries (queue_id, event, payload, created_at, next_attempt_at)
         VALUES ('q', 'ticket.opened', '{{\"text\": \"talk to a person\"}}', '{now}', '{now}')
         RETURNING id",
        now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    ));
    app.rows(&format!(
        "INSERT INTO audit_log (at, actor, action) VALUES ('{}', 'agent3', 'signin') RETURNING id",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    ));

    // A ticket still open is kept while it is touched; nobody touched this one, so after 30 days
    // the purge closes it, leaving the conversation's own clock alone.
    assert!(run(29).tickets_closed.is_empty());
    // An agent at work on day 31 has a console open (a session seen then, so the purge keeps it).
    let on_duty = staff_cookie(&app, "agent4", Role::Agent);
    let console = open_stream(&app.url("/support/events"), &[("cookie", &on_duty)]);
    app.rows(&format!(
        "UPDATE sessions SET last_seen = '{}' RETURNING user_id",
        (chrono::Utc::now() + chrono::Duration::days(31))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    ));
    let idle = run(31);
    let open_ticket = open["ticket"]["id"].as_i64().unwrap();
    assert_eq!(
        (idle.tickets_closed.as_slice(), idle.conversations),
        (&[open_ticket][..], 0)
    );
    // The console hears of it as of an agent's close, so the ticket leaves its queue.
    let closed_event = ticket_event(&console, "ticket.closed", open_ticket);
    assert_eq!(closed_event.data["by"], "retention");
    assert_eq!(closed_event.data["status"], "closed");
    assert_eq!(
        app.rows(&format!(
            "SELECT status, closed_by, updated_at IS NULL FROM tickets WHERE id = {open_ticket}"
        ))[0],
        vec!["closed", "retention", "1"]
    );

    // After 91 quiet days every conversation goes with everything in it, and so does the payload
    // nobody took.
    let purged = run(91);
    assert_eq!((purged.conversations, purged.webhook_deliveries), (3, 1));
    assert!(app.rows("SELECT id FROM conversations").is_empty());
    for gone in [&closed, &plain, &open] {
        let id = gone["conversation"].as_str().unwrap();
        assert_eq!(
            app.rows(&format!(
                "SELECT COUNT(*) FROM chat_turns WHERE conversation_id = '{id}'"
            ))[0][0],
            "0"
        );
    }
    assert_eq!(count("ticket_messages"), "0");
    assert_eq!(count("tickets"), "0");
    assert_eq!(count("scan_events"), "1", "scan events are kept 13 months");
    assert_eq!(count("audit_log"), "1", "the audit log is kept 13 months");
    // Many old events go in several short batches, all of them.
    app.rows(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
         INSERT INTO scan_events (at, code, placement, device, language, role, returning_visit, rule, destination, fallback, latency_us)
         SELECT at, code, placement, device, language, role, returning_visit, rule, destination, fallback, latency_us
         FROM scan_events, n RETURNING 1",
    );
    // So do the audit logs: patients' (12,001 rows) and editors' (one, as old).
    app.rows(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
         INSERT INTO audit_log (at, actor, action, detail)
         SELECT at, actor, action, detail FROM audit_log, n RETURNING 1",
    );
    app.rows(
        "INSERT INTO content_audit (at, actor, action) SELECT at, 'editor-x', 'publish' FROM audit_log LIMIT 1 RETURNING 1",
    );
    let year_on = run(396);
    assert_eq!((year_on.scan_events, year_on.audit_entries), (12001, 12002));
    assert_eq!(count("scan_events"), "0");
    assert_eq!(count("audit_log"), "0");
    assert_eq!(count("content_audit"), "0");
}

#[test]
fn an_administrator_sees_a_webhooks_backlog_and_sends_it_once_the_receiver_is_back() {
    // Retries wait an hour: only "Send now" gets the event out within the test.
    let app = spawn_app_with(ServerConfig {
        webhook_backoff: scanaid_server::webhook::Backoff {
            first: Duration::from_secs(3600),
            max: Duration::from_secs(3600),
        },
        ..ServerConfig::default()
    });
    let addr = a_closed_port();
    // Receivers often carry their secret in the path: the page must not show it.
    let url = format!("http://{addr}/hooks/T0-secret-path-token");
    let queue = webhook_on_pumps_queue(&app, &url, "k");
    let (status, _) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "I need to talk to a person"}),
    );
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + WAIT;
    while app.rows("SELECT attempts FROM webhook_deliveries")[0][0] == "0" {
        assert!(std::time::Instant::now() < deadline, "no first attempt");
        std::thread::sleep(Duration::from_millis(50));
    }

    let admin = staff_cookie(&app, "admin-w", Role::Admin);
    let page = get(&app.url("/admin/webhooks"), &[("cookie", &admin)]);
    assert_eq!(page.status, 200, "{}", page.body);
    let row = between(&page.body, &format!("<tr id=\"webhook-{queue}\">"), "</tr>");
    assert!(row.contains("<td class=\"waiting\">1</td>"), "{row}");
    assert!(
        row.contains(&format!("<td class=\"receiver\">http://{addr}</td>")),
        "{row}"
    );
    assert!(row.contains("could not reach the receiver"), "{row}");
    assert!(!page.body.contains("secret-path-token"), "{}", page.body);
    let metric = format!("scanaid_webhook_deliveries_waiting{{queue=\"{queue}\"}} 1");
    assert!(get(&app.url("/metrics"), &[]).body.contains(&metric));
    let csrf = page.hidden("csrf").unwrap();

    // Administrators only, with their own form, for a queue that exists.
    let agent = staff_cookie(&app, "agent-w", Role::Agent);
    assert_eq!(
        get(&app.url("/admin/webhooks"), &[("cookie", &agent)]).status,
        403
    );
    let send = app.url(&format!("/admin/webhooks/{queue}/send"));
    assert_eq!(
        post_form(&send, &[("cookie", &admin)], &[("csrf", "forged")]).status,
        403
    );
    assert_eq!(
        post_form(
            &app.url("/admin/webhooks/no-such-queue/send"),
            &[("cookie", &admin)],
            &[("csrf", &csrf)]
        )
        .status,
        404
    );

    // The receiver is back; an hour's wait is cut short.
    let receiver = receiver_on(std::net::TcpListener::bind(addr).unwrap(), 0);
    let sent = post_form(&send, &[("cookie", &admin)], &[("csrf", &csrf)]);
    assert_eq!(sent.status, 303);
    // At once: the deliverer is woken, not left to its 30 s idle check.
    let (headers, _, status) = receiver
        .requests
        .recv_timeout(Duration::from_secs(5))
        .expect("sent within 5 s of Send now");
    assert_eq!(
        (header(&headers, "x-scanaid-event"), status),
        ("ticket.opened", 200)
    );
    let deadline = std::time::Instant::now() + WAIT;
    while app.rows("SELECT delivered_at IS NOT NULL FROM webhook_deliveries")[0][0] != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "not recorded as delivered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let page = get(&app.url("/admin/webhooks"), &[("cookie", &admin)]);
    let row = between(&page.body, &format!("<tr id=\"webhook-{queue}\">"), "</tr>");
    assert!(row.contains("<td class=\"waiting\">0</td>"), "{row}");
    assert!(row.contains("<td class=\"delivered\">1</td>"), "{row}");
    assert!(!row.contains("Send now"), "{row}");
    let metric = format!("scanaid_webhook_deliveries_waiting{{queue=\"{queue}\"}} 0");
    assert!(get(&app.url("/metrics"), &[]).body.contains(&metric));
}

/// Agents leave each other notes on a ticket; the person never sees them, in their chat's history,
/// on the no-script replies page or anywhere else, and they go with the ticket when retention
/// deletes it. A note that is empty or too long is shown back with why.
#[test]
fn agents_notes_stay_with_agents_and_go_with_their_ticket() {
    let app = spawn_app();
    let (status, reply) = ask(
        &app,
        serde_json::json!({"code": PUMP_CODE, "message": "Talk to a person"}),
    );
    assert_eq!(status, 200, "{reply}");
    let conversation = reply["conversation"].as_str().unwrap().to_string();
    let ticket = reply["ticket"]["id"].as_i64().unwrap();
    let agent = staff_cookie(&app, "agent-n", Role::Agent);
    let colleague = staff_cookie(&app, "agent-m", Role::Agent);
    let page = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &agent)],
    );
    assert!(page.body.contains("id=\"no-notes\""), "{}", page.body);
    let csrf = page.hidden("csrf").unwrap();
    let note = |cookie: &str, csrf: &str, body: &str| {
        post_form(
            &app.url(&format!("/support/tickets/{ticket}/note")),
            &[("cookie", cookie)],
            &[("csrf", csrf), ("body", body)],
        )
    };
    let secret = "Called back at 14:05, no answer; try the ward phone <b>next</b>";
    // A colleague with the ticket open sees the note live; the queue's webhook gets nothing of it.
    let colleague_console = open_stream(&app.url("/support/events"), &[("cookie", &colleague)]);
    let url = format!("http://{}/hooks/scanaid", a_closed_port());
    webhook_on_pumps_queue(&app, &url, "webhook-secret");
    // A ticket worked by phone (notes, no replies) is active: the idle close counts from the note.
    app.rows(&format!(
        "UPDATE tickets SET updated_at = '2020-01-01T00:00:00.000000Z' WHERE id = {ticket}"
    ));
    let added = note(&agent, &csrf, secret);
    assert_eq!(added.status, 303, "{}", added.body);
    assert_eq!(
        app.rows(&format!(
            "SELECT updated_at > '2026' FROM tickets WHERE id = {ticket}"
        ))[0][0],
        "1"
    );
    // The same form sent again (a double tap, back and resend) adds nothing.
    assert_eq!(note(&agent, &csrf, secret).status, 303);
    assert_eq!(app.rows("SELECT COUNT(*) FROM ticket_notes")[0][0], "1");
    let live = ticket_event(&colleague_console, "ticket.note", ticket);
    assert_eq!(live.data["text"], secret);
    assert_eq!(live.data["by"], "agent-n");
    assert!(live.data["note"].as_i64().is_some(), "{live:?}");
    assert_eq!(
        app.rows("SELECT COUNT(*) FROM webhook_deliveries WHERE event = 'ticket.note'")[0][0],
        "0"
    );
    // A colleague sees it, escaped, with who wrote it.
    let seen = get(
        &app.url(&format!("/support/tickets/{ticket}")),
        &[("cookie", &colleague)],
    );
    assert!(seen.body.contains("agent-n"), "{}", seen.body);
    assert!(
        seen.body
            .contains("try the ward phone &#60;b&#62;next&#60;/b&#62;"),
        "{}",
        seen.body
    );
    // Bad notes: shown back, nothing stored; a forged form changes nothing; not for non-agents.
    let long = "n".repeat(2_001);
    let refused = note(&agent, &csrf, &long);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("A note is 1 to 2000 characters"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(&long), "the text is kept");
    assert_eq!(note(&agent, &csrf, "   ").status, 422);
    assert_eq!(note(&agent, "forged", "x").status, 403);
    let technician = staff_cookie(&app, "tech-n", Role::Technician);
    assert_eq!(note(&technician, &csrf, "x").status, 403);
    assert_eq!(app.rows("SELECT COUNT(*) FROM ticket_notes")[0][0], "1");

    // The person's side never shows it.
    let history = post_json(
        &app.url("/api/chat/history"),
        &[],
        &serde_json::json!({ "conversation": conversation }).to_string(),
    );
    assert_eq!(history.status, 200, "{}", history.body);
    assert!(!history.body.contains("Called back"), "{}", history.body);
    let replies = post_form(
        &app.url("/chat/replies"),
        &[],
        &[
            ("asset", "pump-icu-07"),
            ("conversation", &conversation),
            ("lang", "en"),
        ],
    );
    assert_eq!(replies.status, 200, "{}", replies.body);
    assert!(!replies.body.contains("Called back"), "{}", replies.body);

    // Notes may hold what a contact does: they go when the closed ticket's contact does (14 days
    // after the close), while the ticket itself stays for the chat limit.
    let purge = || {
        let state = app.state.clone();
        app.block_on(async move {
            scanaid_server::retention::purge_and_announce(&state, chrono::Utc::now()).await
        })
        .unwrap()
    };
    app.rows(&format!(
        "UPDATE tickets SET status = 'closed', closed_by = 'agent-n', closed_at = '{}'",
        (chrono::Utc::now() - chrono::Duration::days(20))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    ));
    purge();
    assert_eq!(app.rows("SELECT COUNT(*) FROM ticket_notes")[0][0], "0");
    assert_eq!(app.rows("SELECT COUNT(*) FROM tickets")[0][0], "1");
    note(&agent, &csrf, "added after the close");
    assert_eq!(app.rows("SELECT COUNT(*) FROM ticket_notes")[0][0], "1");

    // Retention deletes the notes with their ticket.
    app.rows("UPDATE tickets SET status = 'closed', updated_at = '2020-01-01T00:00:00.000Z', created_at = '2020-01-01T00:00:00.000Z'");
    app.rows("UPDATE chat_turns SET at = '2020-01-01T00:00:00.000Z'");
    app.rows("UPDATE conversations SET created_at = '2020-01-01T00:00:00.000Z'");
    purge();
    assert_eq!(app.rows("SELECT COUNT(*) FROM tickets")[0][0], "0");
    assert_eq!(app.rows("SELECT COUNT(*) FROM ticket_notes")[0][0], "0");
}
