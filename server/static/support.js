// The support console, kept live: new tickets appear in the queue, status changes show, and on a
// ticket's page the person's new messages and other agents' replies appear as they happen. Without
// this script the pages still work; they just need a reload.
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  if (!root || !window.EventSource) return;
  var status = document.getElementById("live-status");
  var live = new URL(root.getAttribute("data-live"), location.href);
  // Where the stream resumes: the position the page was drawn at, then each event's id.
  var position = live.searchParams.get("from") || "";
  var source = null;
  var ticketId = root.getAttribute("data-ticket");
  var me = root.getAttribute("data-me");
  // The newest turn and reply the page shows: the stream resumes from where the page was read, so
  // an event may repeat what the page already has.
  var shownTurn = Number(root.getAttribute("data-seen") || 0);
  var shownReply = Number(root.getAttribute("data-replied") || 0);

  // Who has a ticket, as the pages say it.
  function agentText(assigned, nobody) {
    if (!assigned) return nobody;
    return assigned === me ? "you" : assigned;
  }

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function onQueue(e) {
    var rowId = "ticket-" + e.ticket;
    var row = document.getElementById(rowId);
    // Moved to a queue this agent does not work: it is another team's now.
    if (e.out_of_scope) {
      if (row) row.remove();
      return;
    }
    if (row) {
      var queueCell = row.querySelector(".queue");
      if (queueCell) queueCell.textContent = e.queue;
      var moved = row.className.split(" ")[0] !== "status-" + e.status;
      row.className = "status-" + e.status;
      row.querySelector(".status").textContent = e.status;
      row.querySelector(".agent").textContent = agentText(e.assigned_to, "");
      // Its section changed (the person wrote again, an agent answered, it closed or reopened):
      // it goes where the queue's order puts it, last among its new section's rows.
      waitedSince(row, e);
      if (moved) place(row, e.status);
      return;
    }
    if (e.event !== "ticket.opened" && e.event !== "ticket.reopened" && e.event !== "ticket.moved") return;
    var empty = document.getElementById("empty");
    if (empty) empty.remove();
    row = document.createElement("tr");
    row.id = rowId;
    row.className = "status-" + e.status + " new";
    var link = document.createElement("a");
    link.href = "/support/tickets/" + e.ticket;
    link.textContent = "#" + e.ticket;
    cell(row, "").appendChild(link);
    cell(row, e.status).className = "status";
    cell(row, agentText(e.assigned_to, "")).className = "agent";
    cell(row, e.asset_name);
    cell(row, e.queue).className = "queue";
    cell(row, e.reason);
    cell(row, Math.round(e.confidence * 100) + "%");
    cell(row, siteTime(e.opened_at || e.at, e.timezone));
    cell(row, "").className = "waited";
    waitedSince(row, e);
    place(row, e.status);
  }

  // An instant as the site lives it ("2026-12-07 14:05 CET"), as the server draws it, so live rows
  // and drawn ones read alike whatever zone the agent's own computer is in.
  function siteTime(iso, zone) {
    var d = new Date(iso);
    try {
      var p = {};
      new Intl.DateTimeFormat("en-CA", {
        timeZone: zone || undefined, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short"
      }).formatToParts(d).forEach(function (part) { p[part.type] = part.value; });
      return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute + " " + p.timeZoneName;
    } catch (err) {
      return d.toLocaleString();
    }
  }

  // How long someone has waited, as the server says it; kept current every half minute.
  function waitedText(since) {
    var minutes = Math.max(0, Math.floor((Date.now() - new Date(since).getTime()) / 60000));
    if (minutes === 0) return "under a minute";
    if (minutes < 60) return minutes + " min";
    if (minutes < 48 * 60) return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
    return Math.floor(minutes / (24 * 60)) + " days";
  }
  function waitedSince(row, e) {
    var td = row.querySelector(".waited");
    if (!td) return;
    var waiting = e.status === "open" || e.status === "waiting";
    td.setAttribute("data-since", waiting ? (e.waiting_since || e.at) : "");
    td.textContent = waiting ? waitedText(td.getAttribute("data-since")) : "";
  }
  if (!ticketId) {
    window.setInterval(function () {
      document.querySelectorAll("#tickets td.waited[data-since]").forEach(function (td) {
        var since = td.getAttribute("data-since");
        if (since) td.textContent = waitedText(since);
      });
    }, 30000);
  }

  // Tickets waiting for an agent come first, longest-waiting at the top, then the answered ones,
  // then the closed ones, newest first. One that just entered a section has waited least there.
  function place(row, status) {
    var body = document.getElementById("tickets");
    row.remove();
    var before = status === "closed"
      ? body.querySelector("tr.status-closed")
      : status === "answered"
        ? body.querySelector("tr.status-closed")
        : body.querySelector("tr.status-answered, tr.status-closed");
    body.insertBefore(row, before);
  }

  function onTicket(e) {
    if (String(e.ticket) !== ticketId) return;
    var st = document.getElementById("ticket-status");
    if (st) st.textContent = e.status;
    var queue = document.getElementById("ticket-queue");
    if (queue) queue.textContent = e.queue + (e.out_of_scope ? " (moved to a queue you do not work)" : "");
    // Moved: the move form acts on the queue the page was drawn with, and would be refused.
    if (e.event === "ticket.moved") {
      var moveForm = document.getElementById("move-form");
      if (moveForm) moveForm.style.display = "none";
    }
    // Someone took the ticket (or let it go), or it closed: say who has it, and put away the take
    // and let-go forms, which act on who had it when the page was drawn: a click now would be
    // refused, or take the ticket from someone the agent has not read about.
    var agent = document.getElementById("ticket-agent");
    if (agent) agent.textContent = agentText(e.assigned_to, "nobody yet");
    var changed = (e.assigned_to || "") !== (root.getAttribute("data-assigned") || "");
    if (changed || e.status === "closed") {
      ["take-form", "release-form"].forEach(function (id) {
        var form = document.getElementById(id);
        if (form) form.style.display = "none";
      });
      if (changed && agent) agent.textContent += " (changed since this page opened: reload to take or let go of it)";
    }
    // A call-back number or address the person left (or changed) since the page was drawn.
    var contact = document.getElementById("ticket-contact");
    if (contact && e.contact) contact.textContent = e.contact;
    if (e.event === "ticket.note" && e.note && e.text) {
      showNote(e);
      return;
    }
    var who = e.event === "ticket.message" ? "person" : e.event === "ticket.reply" ? "agent" : null;
    if (!who || !e.text) return;
    // Already on the page (drawn after the event, which the stream replays).
    if (who === "person" && e.turn) {
      if (e.turn <= shownTurn) return;
      shownTurn = e.turn;
      // The person's message is shown now: replying or closing acts on it as read.
      document.querySelectorAll("input[name=seen]").forEach(function (input) {
        input.value = String(shownTurn);
      });
    }
    if (who === "agent" && e.reply) {
      if (e.reply <= shownReply) return;
      shownReply = e.reply;
    }
    var when = siteTime(e.at, root.getAttribute("data-timezone"));
    entry(who, (who === "person" ? "Person" : "Support (" + e.by + ")") + " · " + when, e.text);
    // What the assistant told the person meanwhile, so the agent does not repeat or contradict it.
    if (who === "person" && e.answer) entry("assistant", "Assistant · " + when, e.answer);
  }

  // A colleague's note, as the page draws notes.
  function showNote(e) {
    if (document.getElementById("note-" + e.note)) return;
    var list = document.querySelector("#notes ol.notes");
    if (!list) {
      list = document.createElement("ol");
      list.className = "notes";
      var none = document.getElementById("no-notes");
      if (none) none.replaceWith(list);
      else return;
    }
    var li = document.createElement("li");
    li.id = "note-" + e.note;
    li.className = "live";
    var meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = e.by + " · " + siteTime(e.at, root.getAttribute("data-timezone"));
    var text = document.createElement("p");
    text.className = "text";
    text.textContent = e.text;
    li.appendChild(meta);
    li.appendChild(text);
    list.appendChild(li);
  }

  function entry(who, label, body) {
    var li = document.createElement("li");
    li.className = "entry " + who + " live";
    // The person writes in the ticket's language; a screen reader reads it in that voice.
    if (who === "person" && root.getAttribute("data-lang")) li.lang = root.getAttribute("data-lang");
    var meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = label;
    var text = document.createElement("p");
    text.className = "text";
    text.textContent = body;
    li.appendChild(meta);
    li.appendChild(text);
    document.getElementById("transcript").appendChild(li);
  }

  // The queue's tab title counts the tickets waiting for an agent, so a console in a background tab
  // still shows that someone is waiting.
  var baseTitle = document.title;
  function countWaiting() {
    if (ticketId) return;
    var n = document.querySelectorAll("#tickets tr.status-open, #tickets tr.status-waiting").length;
    document.title = (n ? "(" + n + ") " : "") + baseTitle;
  }
  countWaiting();

  // One click sends one reply: the button stays off until the page answers (the server also keeps
  // a form it has seen from storing twice).
  var replyForm = document.getElementById("reply-form");
  if (replyForm) {
    replyForm.addEventListener("submit", function () {
      var send = document.getElementById("send-reply");
      if (send) window.setTimeout(function () { send.disabled = true; }, 0);
    });
  }

  // What the agent types (a reply, a note) is kept in this tab as it is typed, so taking the
  // ticket, letting it go, adding a note, a reload or a session that ended on the way loses none of
  // it: it comes back when the page is drawn again without it. Once its form was sent and the page
  // shows that text (the reply in the conversation, the note among the notes), it is forgotten.
  function keepDraft(box, shownAt) {
    if (!box || !ticketId || !window.sessionStorage) return;
    var key = "scanaid.support." + ticketId + "." + box.id;
    var read = function () {
      try { return JSON.parse(sessionStorage.getItem(key) || "null"); } catch (e) { return null; }
    };
    var save = function (sent) {
      try {
        if (box.value.trim()) sessionStorage.setItem(key, JSON.stringify({ text: box.value, sent: sent }));
        else sessionStorage.removeItem(key);
      } catch (e) { /* storage off or full: the form still posts */ }
    };
    var kept = read();
    var shown = Array.prototype.some.call(document.querySelectorAll(shownAt), function (p) {
      return kept && p.textContent.trim() === kept.text.replace(/\r\n/g, "\n").trim();
    });
    if (kept && (box.value.trim() || (kept.sent && shown))) {
      try { sessionStorage.removeItem(key); } catch (e) { /* nothing kept */ }
    } else if (kept && kept.text.trim()) {
      box.value = kept.text;
      var note = document.createElement("p");
      note.className = "meta draft-back";
      note.setAttribute("role", "status");
      note.textContent = "Put back: what you typed here before, not sent yet.";
      box.parentNode.insertBefore(note, box);
    }
    var saving = null;
    box.addEventListener("input", function () {
      clearTimeout(saving);
      saving = setTimeout(function () { save(false); }, 300);
    });
    // Any form sent from the page (take, let go, a note, the reply itself) or leaving it keeps what
    // was typed at once, not 300 ms later: the page may be gone by then. Only the box's own form
    // marks it sent (a pending save must not undo that).
    document.addEventListener("submit", function (e) {
      clearTimeout(saving);
      save(e.target === box.form);
    });
    window.addEventListener("pagehide", function () {
      clearTimeout(saving);
      var kept = read();
      if (!(kept && kept.sent && kept.text === box.value)) save(false);
    });
  }
  keepDraft(document.getElementById("reply"), "#transcript .entry.agent .text");
  keepDraft(document.getElementById("note"), "#notes .notes .text");
  // Signing out leaves no draft in this tab for whoever uses it next.
  document.querySelectorAll('form[action="/signout"]').forEach(function (out) {
    out.addEventListener("submit", function () {
      try {
        for (var i = sessionStorage.length - 1; i >= 0; i--) {
          var k = sessionStorage.key(i);
          if (k && k.indexOf("scanaid.support.") === 0) sessionStorage.removeItem(k);
        }
      } catch (e) { /* nothing kept */ }
    });
  });
  function typing() {
    return ["reply", "note"].some(function (id) {
      var box = document.getElementById(id);
      return box && box.value.trim();
    });
  }

  // Closing a ticket with a reply typed and not sent asks first: the reply would be lost.
  var closeForm = document.getElementById("close-form");
  if (closeForm) {
    closeForm.addEventListener("submit", function (e) {
      var draft = document.getElementById("reply");
      if (draft && draft.value.trim() && !window.confirm("Your reply has not been sent. Close the ticket without sending it?")) {
        e.preventDefault();
      }
    });
  }

  function onEvent(m) {
    if (m.lastEventId) position = m.lastEventId;
    var e = JSON.parse(m.data);
    if (ticketId) onTicket(e); else { onQueue(e); countWaiting(); }
  }
  // What is shown may be stale (the console fell behind, or was disconnected longer than the
  // server keeps events: `resync`), so show the store's view, unless that would throw away a reply
  // being typed; then say so.
  // A reload is a page request, which keeps the session alive. A console nobody has touched for a
  // while (left open overnight, reconnecting after a restart) must not keep itself signed in, so it
  // only says what to do.
  var lastActive = Date.now();
  ["pointerdown", "keydown", "scroll", "focus"].forEach(function (name) {
    window.addEventListener(name, function () { lastActive = Date.now(); }, { passive: true });
  });
  var ACTIVE_MS = 15 * 60 * 1000;
  var MISSED = "Reconnected. Messages may have arrived meanwhile";
  // An administrator changed the queues this agent works: the rows shown are the old queues'.
  var REQUEUED = "An administrator changed the queues you work";
  function refresh(why) {
    why = typeof why === "string" ? why : MISSED;
    if (typing()) {
      if (status) status.textContent = why + ": send or copy what you typed, then reload.";
      return;
    }
    if (document.hidden || Date.now() - lastActive > ACTIVE_MS) {
      if (status) status.textContent = why + ": reload the page to see what is waiting.";
      return;
    }
    location.reload();
  }
  // A reconnect resumes after the last event this page had (the browser sends its id); the server
  // sends `resync` when it no longer has what went by (a long outage, a restart).
  function connect() {
    live.searchParams.set("from", position);
    source = new EventSource(live.pathname + live.search);
    root.setAttribute("data-stream", "open");
    source.addEventListener("ticket", onEvent);
    source.addEventListener("resync", function () { refresh(MISSED); });
    source.addEventListener("queues", function () { refresh(REQUEUED); });
    source.onopen = function () {
      if (status) status.textContent = ticketId ? "Live: the person's messages appear here as they are sent." : "Live: new tickets appear here as they are opened.";
    };
    // The server ends the stream when the session does (signed out, removed); the reconnect then
    // meets the sign-in page and the browser gives up for good (CLOSED), so say what to do, in the
    // tab's title too: a queue in a background tab must not go on showing an old count.
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED && !ticketId) document.title = "(!) " + baseTitle;
      if (!status) return;
      status.textContent = source.readyState === EventSource.CLOSED
        ? "Live updates stopped: your session may have ended. Reload the page to sign in again."
        : "Reconnecting...";
    };
  }
  connect();

  // A browser keeps about six connections to a server over HTTP/1.1, shared by all its tabs, and
  // each live page holds one: an agent with the queue and a handful of tickets open in tabs would
  // leave no connection for sending a reply. So a ticket's page lets go of its stream while it is
  // hidden, and takes it up again, from where it was, when it is shown; the queue keeps its stream
  // (its tab title counts who waits). Over HTTP/2 (serve --tls-cert) all share one connection.
  if (ticketId) {
    var letGo = null;
    document.addEventListener("visibilitychange", function () {
      clearTimeout(letGo);
      if (document.hidden) {
        letGo = setTimeout(function () {
          if (!source) return;
          source.close();
          source = null;
          root.setAttribute("data-stream", "paused");
          if (status) status.textContent = "Paused while this tab is hidden; it catches up when shown.";
        }, 5000);
      } else if (!source) {
        connect();
      }
    });
  }
})();
