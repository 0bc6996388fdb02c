// The chat on a role page, with JavaScript: the question goes to /api/chat as server-sent events
// (sources first, then the answer), every sentence links to the manual section it came from, each
// answer can be rated, and once a ticket is open the support agent's replies appear as they are
// sent. The conversation survives a reload or a phone dropping the tab: its id is kept in this tab's
// sessionStorage (per asset) and the chat is shown again from /api/chat/history. Without this script
// the same forms post to /chat and get a page back.
(function () {
  "use strict";
  var form = document.querySelector("form[data-chat]");
  if (!form || !window.fetch || !window.AbortController || !window.TextDecoder) return;
  var log = document.getElementById("chat-log");
  var personForm = document.getElementById("talk-to-person");
  var t = form.dataset;
  var conversation = "";
  var replies = null;
  var key = "scanaid.chat." + form.elements.asset.value;

  // Storage can be off (private browsing, a full quota): the chat then works without surviving a reload.
  function remember() { try { sessionStorage.setItem(key, conversation); } catch (e) { /* not kept */ } }
  function saved() { try { return sessionStorage.getItem(key); } catch (e) { return null; } }
  function forget() { try { sessionStorage.removeItem(key); } catch (e) { /* nothing kept */ } }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function feedback(turnBox, turn, vote, buttons) {
    fetch("/api/chat/feedback", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ conversation: conversation, turn: turn, vote: vote })
    }).then(function (r) {
      if (r.ok) buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.vote === vote)); });
    });
  }

  function showCitations(box, citations) {
    if (!citations.length) return;
    box.appendChild(el("h3", "", t.sources));
    var ol = el("ol", "sources");
    citations.forEach(function (c) {
      var li = el("li");
      li.id = "source-" + box.dataset.turn + "-" + c.n;
      var a = el("a", "", c.section);
      a.href = c.url;
      li.appendChild(a);
      li.appendChild(document.createTextNode(" · " + c.manual_title + ", rev. " + c.revision));
      ol.appendChild(li);
    });
    box.appendChild(ol);
  }

  function showAnswer(box, answer, citations) {
    var byN = {};
    citations.forEach(function (c) { byN[c.n] = c; });
    var body = el("div", "answer-text");
    if (answer.no_manuals) body.appendChild(el("p", "error", t.noManuals));
    else if (answer.unsure) body.appendChild(el("p", "error", t.unsure));
    answer.sentences.forEach(function (s) {
      var p = el("p", "sentence", s.text + " ");
      var c = byN[s.citation];
      // Citation 0: an answer stored before sentences were kept, shown again as plain text.
      if (s.citation) {
        var a = el("a", "cite", "[" + s.citation + "]");
        if (c) a.href = c.url;
        p.appendChild(a);
      }
      body.appendChild(p);
    });
    box.insertBefore(body, box.querySelector("h3"));
  }

  function adopt(id) {
    conversation = id;
    form.elements.conversation.value = conversation;
    if (personForm) personForm.elements.conversation.value = conversation;
    remember();
  }

  function showTicket(box, ticket) {
    openTicket = ticket.id;
    var p = el("p", "ticket");
    p.setAttribute("role", "status");
    p.appendChild(el("strong", "", t.ticket + " " + ticket.id));
    p.appendChild(document.createTextNode(": " + ticket.next));
    box.appendChild(p);
    callBack(true);
    listen();
  }

  // While a ticket is open, the person form asks only for a phone or email, so someone who may
  // close the page before the agent answers can still be called back (the server files it on the
  // ticket); otherwise it is the "talk to a person" form again.
  function callBack(ticketOpen) {
    if (!personForm) return;
    personForm.hidden = false;
    var button = personForm.querySelector("button[type=submit]");
    if (button) {
      if (!button.dataset.label) button.dataset.label = button.textContent;
      button.textContent = ticketOpen ? t.sendContact : button.dataset.label;
    }
    var contact = personForm.elements.contact;
    if (contact) contact.required = ticketOpen;
    var label = personForm.querySelector("label[for=person-contact]");
    if (label) {
      if (!label.dataset.text) label.dataset.text = label.textContent;
      label.textContent = ticketOpen ? t.contactForCallBack : label.dataset.text;
    }
    var message = personForm.elements.message;
    if (!message.dataset.text) message.dataset.text = message.value;
    message.value = ticketOpen ? t.callBackMessage : message.dataset.text;
  }

  function showRating(box, turn) {
    var rate = el("p", "rate");
    var up = el("button", "small", t.helpful);
    var down = el("button", "small", t.notHelpful);
    up.type = down.type = "button";
    up.dataset.vote = "up";
    down.dataset.vote = "down";
    [up, down].forEach(function (b) {
      b.addEventListener("click", function () { feedback(box, turn, b.dataset.vote, [up, down]); });
      rate.appendChild(b);
    });
    box.appendChild(rate);
  }

  function showDone(box, reply) {
    adopt(reply.conversation);
    offerNewConversation();
    if (reply.sentences.length) showRating(box, reply.turn);
    if (reply.ticket) showTicket(box, reply.ticket);
  }

  // `live`: it arrived just now, so it is brought into view (the person may be reading above).
  function showReply(r, live) {
    if (document.getElementById("reply-" + r.id)) return;
    var box = el("section", "card turn agent-reply");
    box.id = "reply-" + r.id;
    box.setAttribute("role", "status");
    box.appendChild(el("p", "meta", t.support));
    box.appendChild(el("p", "text", r.text));
    log.appendChild(box);
    if (live) box.scrollIntoView({ block: "nearest" });
  }

  function turnBox(question) {
    var box = el("section", "card turn");
    box.dataset.turn = String(log.children.length + 1);
    box.appendChild(el("p", "meta", t.youAsked + ": " + question));
    log.appendChild(box);
    return box;
  }

  // Agents' replies to this conversation, live. The stream is a POST whose body names the
  // conversation (an EventSource could only put it in the URL, where proxies and access logs keep
  // it); a dropped stream is opened again after a pause and the server resumes after the last
  // reply shown (`Last-Event-ID`). One the server refuses (the conversation is not this caller's
  // any more: signed out on a shared tablet) is not retried. The stream stays open after a close:
  // an agent may reopen a ticket closed too soon, and their replies must still arrive. `closed`
  // and `open` come again on every reconnect, so each note is shown only when it changes what the
  // chat said last about that ticket.
  var lastReply = "";
  function listen() {
    if (replies || !conversation) return;
    var controller = new AbortController();
    var listening = conversation;
    replies = controller;
    var headers = { "content-type": "application/json", "accept": "text/event-stream" };
    if (lastReply) headers["last-event-id"] = lastReply;
    fetch("/api/chat/events", {
      method: "POST",
      headers: headers,
      body: JSON.stringify({ conversation: listening }),
      signal: controller.signal
    }).then(async function (res) {
      if (!res.ok) return res.status >= 500 || res.status === 429;
      var reader = res.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) return true;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          var block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (!/^(event|data|id):/m.test(block)) continue; // a keep-alive comment
          var ev = parseEvent(block);
          var id = /^id:\s*(.*)$/m.exec(block);
          if (id) lastReply = id[1].trim();
          if (ev.name === "reply") showReply(ev.data, true);
          else if (ev.name === "closed") showClosed(ev.data.ticket);
          else if (ev.name === "open") showOpen(ev.data.ticket);
        }
      }
    }).catch(function () {
      return !controller.signal.aborted;
    }).then(function (again) {
      if (replies !== controller) return; // left for a new conversation meanwhile
      replies = null;
      if (!again) return;
      // Checked again when it fires: the person may have started a new conversation meanwhile.
      retry = setTimeout(function () { if (conversation === listening) listen(); }, 5000);
    });
  }
  var retry = null;

  // The conversation's ticket not closed (its id), if it has one: a new conversation would leave it
  // behind, with the agent's reply going where the person no longer looks.
  var openTicket = null;
  function showOpen(ticket) {
    openTicket = ticket;
    if (!closedTickets[ticket]) return;
    delete closedTickets[ticket];
    log.appendChild(el("p", "meta reopened", t.reopened)).setAttribute("role", "status");
    callBack(true);
  }

  // Tickets this chat has said are closed.
  var closedTickets = {};
  function showClosed(ticket) {
    if (openTicket === ticket) openTicket = null;
    if (closedTickets[ticket]) return;
    closedTickets[ticket] = true;
    log.appendChild(el("p", "meta closed", t.closed));
    // A new question may need a person again.
    callBack(false);
  }

  function parseEvent(block) {
    var name = "message", data = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) name = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
    });
    return { name: name, data: data.length ? JSON.parse(data.join("\n")) : null };
  }

  // The conversation this tab had on this asset, shown again as it was, with the agents' replies
  // and, while a ticket is open, listening for more. One the store no longer has is forgotten.
  async function restore() {
    var id = saved();
    if (!id) return;
    var res;
    try {
      res = await fetch("/api/chat/history", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ conversation: id })
      });
    } catch (e) { return; }
    if (res.status === 404) { forget(); return; }
    if (!res.ok) return;
    var h = await res.json();
    if (log.children.length) return; // the person asked something meanwhile
    adopt(h.conversation);
    // Turns and agents' replies in the order they happened (times are UTC RFC 3339, so they sort
    // as text).
    var items = h.turns.map(function (turn) { return { at: turn.at, turn: turn }; })
      .concat(h.replies.map(function (r) { return { at: r.at, reply: r }; }))
      .sort(function (a, b) { return a.at < b.at ? -1 : a.at > b.at ? 1 : 0; });
    var box = null;
    items.forEach(function (item) {
      if (item.reply) { showReply(item.reply); return; }
      var turn = item.turn;
      box = turnBox(turn.question);
      showCitations(box, turn.citations);
      showAnswer(box, turn, turn.citations);
      if (turn.sentences.length) showRating(box, turn.turn);
    });
    if (h.ticket && box) showTicket(box, h.ticket);
    if (h.closed_ticket) {
      showClosed(h.closed_ticket);
      listen();
    }
    offerNewConversation();
  }

  // A "start a new conversation" button above the chat once there is one, so an unrelated
  // question is not read in the light of the earlier turns.
  function offerNewConversation() {
    if (document.getElementById("new-conversation")) return;
    var again = el("button", "small", t.newConversation);
    again.type = "button";
    again.id = "new-conversation";
    again.disabled = busy;
    again.addEventListener("click", function () {
      if (openTicket !== null && !window.confirm(t.leaveTicket.replace("{id}", String(openTicket)))) return;
      openTicket = null;
      forget();
      if (replies) { replies.abort(); replies = null; }
      clearTimeout(retry);
      closedTickets = {};
      lastReply = "";
      conversation = "";
      unanswered = null;
      form.elements.conversation.value = "";
      if (personForm) personForm.elements.conversation.value = "";
      callBack(false);
      while (log.firstChild) log.removeChild(log.firstChild);
    });
    log.insertBefore(el("p", "restored"), log.firstChild).appendChild(again);
  }

  // Asks, showing the answer as it streams in; true when an answer (or a ticket) came back.
  // `lookUp`: the manuals are searched for it (not for "talk to a person" alone), so say so.
  async function ask(message, contact, lookUp, request) {
    var box = turnBox(message);
    var answering = el("p", "meta answering", lookUp ? t.answering : "");
    answering.setAttribute("role", "status");
    box.appendChild(answering);
    box.scrollIntoView({ block: "nearest" });
    var ok = false;
    var body = { asset: form.elements.asset.value, message: message, lang: form.elements.lang.value };
    if (conversation) body.conversation = conversation;
    if (contact) body.contact = contact;
    body.request = request;
    var citations = [];
    try {
      var res = await fetch("/api/chat", {
        method: "POST",
        headers: { "content-type": "application/json", "accept": "text/event-stream" },
        body: JSON.stringify(body)
      });
      if (!res.ok) {
        var err = await res.json().catch(function () { return { error: t.failed }; });
        answering.remove();
        box.appendChild(el("p", "error failed", err.error || t.failed));
        return false;
      }
      var reader = res.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          var ev = parseEvent(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (ev.name === "citations") { answering.remove(); citations = ev.data.citations; showCitations(box, citations); }
          else if (ev.name === "answer") { answering.remove(); showAnswer(box, ev.data, citations); }
          else if (ev.name === "done") { answering.remove(); showDone(box, ev.data); ok = true; }
        }
      }
    } catch (e) {
      box.appendChild(el("p", "error failed", t.failed));
    }
    answering.remove();
    if (!ok && !box.querySelector(".failed")) box.appendChild(el("p", "error failed", t.failed));
    box.scrollIntoView({ block: "start" });
    return ok;
  }

  // One message at a time, from either form: its buttons (and "start a new conversation", which
  // would be undone by the answer's arrival) wait for the answer, and a question that did not go
  // through (busy, a limit, no network) is put back in its box rather than typed again.
  var busy = false;
  function setBusy(on) {
    busy = on;
    document.querySelectorAll("form[data-chat] button, #talk-to-person button, #new-conversation")
      .forEach(function (b) { b.disabled = on; });
  }
  // The message whose answer never arrived (the connection dropped after the server had it, or
  // before): sent again unchanged, it goes with the same request id, and the server answers it
  // with what it stored instead of storing, forwarding or opening a ticket twice.
  var unanswered = null;
  function requestFor(message, contact) {
    if (unanswered && unanswered.message === message && unanswered.contact === contact) return unanswered.id;
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
  }
  // `typed`: the person's own box, emptied while the question is out (the talk-to-person form's
  // message is fixed and stays).
  async function send(input, contact, typed) {
    var message = input.value.trim();
    if (!message || busy) return;
    setBusy(true);
    if (typed) input.value = "";
    var ok = false;
    var request = requestFor(message, contact);
    try {
      ok = await ask(message, contact, typed, request);
    } finally {
      unanswered = ok ? null : { message: message, contact: contact, id: request };
      if (typed && !ok && !input.value) input.value = message;
      setBusy(false);
    }
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    send(form.elements.message, "", true);
  });
  restore();
  if (personForm) {
    personForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var contact = personForm.elements.contact;
      send(personForm.elements.message, contact ? contact.value.trim() : "", false);
    });
  }
})();
