// The chat on a role page, with JavaScript: the question goes to /api/chat as server-sent events
// (sources first, then the answer), every sentence links to the manual section it came from, each
// answer can be rated, and once a ticket is open the support agent's replies appear as they are
// sent. Without this script the same forms post to /chat and get a page back.
(function () {
  "use strict";
  var form = document.querySelector("form[data-chat]");
  if (!form || !window.fetch || !window.EventSource || !window.TextDecoder) return;
  var log = document.getElementById("chat-log");
  var personForm = document.getElementById("talk-to-person");
  var t = form.dataset;
  var conversation = "";
  var replies = null;

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
    if (answer.unsure) body.appendChild(el("p", "error", t.unsure));
    answer.sentences.forEach(function (s) {
      var p = el("p", "sentence", s.text + " ");
      var c = byN[s.citation];
      var a = el("a", "cite", "[" + s.citation + "]");
      if (c) a.href = c.url;
      p.appendChild(a);
      body.appendChild(p);
    });
    box.insertBefore(body, box.querySelector("h3"));
  }

  function showDone(box, reply) {
    conversation = reply.conversation;
    form.elements.conversation.value = conversation;
    if (personForm) personForm.elements.conversation.value = conversation;
    var rate = el("p", "rate");
    var up = el("button", "small", t.helpful);
    var down = el("button", "small", t.notHelpful);
    up.type = down.type = "button";
    up.dataset.vote = "up";
    down.dataset.vote = "down";
    [up, down].forEach(function (b) {
      b.addEventListener("click", function () { feedback(box, reply.turn, b.dataset.vote, [up, down]); });
      rate.appendChild(b);
    });
    if (reply.sentences.length) box.appendChild(rate);
    if (reply.ticket) {
      var p = el("p", "ticket");
      p.setAttribute("role", "status");
      p.appendChild(el("strong", "", t.ticket + " " + reply.ticket.id));
      p.appendChild(document.createTextNode(": " + reply.ticket.next));
      box.appendChild(p);
      if (personForm) personForm.hidden = true;
      listen();
    }
  }

  // Agents' replies to this conversation, live; the browser reconnects by itself and the server
  // resumes after the last reply shown.
  function listen() {
    if (replies || !conversation) return;
    replies = new EventSource("/api/chat/" + conversation + "/events");
    replies.addEventListener("reply", function (m) {
      var r = JSON.parse(m.data);
      if (document.getElementById("reply-" + r.id)) return;
      var box = el("section", "card turn agent-reply");
      box.id = "reply-" + r.id;
      box.appendChild(el("p", "meta", t.support));
      box.appendChild(el("p", "text", r.text));
      log.appendChild(box);
    });
    replies.addEventListener("closed", function () {
      log.appendChild(el("p", "meta", t.closed));
      replies.close();
      replies = null;
    });
  }

  function parseEvent(block) {
    var name = "message", data = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) name = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
    });
    return { name: name, data: data.length ? JSON.parse(data.join("\n")) : null };
  }

  async function ask(message, contact) {
    var box = el("section", "card turn");
    box.dataset.turn = String(log.children.length + 1);
    box.appendChild(el("p", "meta", t.youAsked + ": " + message));
    log.appendChild(box);
    var body = { asset: form.elements.asset.value, message: message, lang: form.elements.lang.value };
    if (conversation) body.conversation = conversation;
    if (contact) body.contact = contact;
    var citations = [];
    try {
      var res = await fetch("/api/chat", {
        method: "POST",
        headers: { "content-type": "application/json", "accept": "text/event-stream" },
        body: JSON.stringify(body)
      });
      if (!res.ok) {
        var err = await res.json().catch(function () { return { error: t.failed }; });
        box.appendChild(el("p", "error", err.error || t.failed));
        return;
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
          if (ev.name === "citations") { citations = ev.data.citations; showCitations(box, citations); }
          else if (ev.name === "answer") showAnswer(box, ev.data, citations);
          else if (ev.name === "done") showDone(box, ev.data);
        }
      }
    } catch (e) {
      box.appendChild(el("p", "error", t.failed));
    }
    box.scrollIntoView({ block: "start" });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var input = form.elements.message;
    var message = input.value.trim();
    if (!message) return;
    input.value = "";
    ask(message);
  });
  if (personForm) {
    personForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var contact = personForm.elements.contact;
      ask(personForm.elements.message.value, contact ? contact.value.trim() : "");
    });
  }
})();
