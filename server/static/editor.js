// The content editors' helpers, both optional (without script the editors work as plain forms):
// - loads a chosen markdown file into the text box, to check and publish like a typed edit (without
//   script the file can be pasted instead; the picker stays hidden);
// - keeps the text of a `textarea[data-draft]` (a manual, the routing rules) in this tab's
//   sessionStorage as it is typed and sent, so a form that comes back to the sign-in
//   page (the session ended, or was renewed in another tab) loses nothing: the editor opened again
//   offers the text back, with the version it was based on (a publish over someone else's change
//   meanwhile is then refused with the text kept, as for any stale edit).
(function () {
  var text = document.getElementById('markdown');
  var input = document.getElementById('upload');
  if (text && input && window.FileReader) {
    input.parentNode.hidden = false;
    input.addEventListener('change', function () {
      var file = input.files && input.files[0];
      if (!file) return;
      // Decoded strictly: a file saved in another encoding (a Windows export) would otherwise come
      // in with its accented letters silently replaced, and be published that way.
      var reader = new FileReader();
      reader.onload = function () {
        try {
          text.value = new TextDecoder('utf-8', { fatal: true }).decode(reader.result);
          input.setCustomValidity('');
        } catch (e) {
          input.setCustomValidity(file.name + ' is not UTF-8 text: save it as UTF-8 (\u201cUnicode\u201d) and choose it again. The text box was left as it was.');
          input.reportValidity();
        }
      };
      reader.readAsArrayBuffer(file);
    });
  }
  document.querySelectorAll('textarea[data-draft]').forEach(keepDrafts);
  // Signing out leaves no draft in this tab for whoever uses it next.
  document.querySelectorAll('form[action="/signout"]').forEach(function (out) {
    out.addEventListener('submit', function () {
      try {
        for (var i = sessionStorage.length - 1; i >= 0; i--) {
          var k = sessionStorage.key(i);
          if (k && k.indexOf('scanaid.draft.') === 0) sessionStorage.removeItem(k);
        }
      } catch (e) { /* nothing kept */ }
    });
  });
})();

// `text`'s drafts, under its `data-draft` name, in this tab's sessionStorage.
function keepDrafts(text) {
  'use strict';
  var form = text.form;
  var key = 'scanaid.draft.' + text.dataset.draft;
  var base = form.elements.base;
  function read() {
    try { return JSON.parse(sessionStorage.getItem(key) || 'null'); } catch (e) { return null; }
  }
  function keep() {
    try {
      sessionStorage.setItem(key, JSON.stringify({
        text: text.value, base: base ? base.value : '', at: new Date().toISOString()
      }));
    } catch (e) { /* storage off or full: the form still posts */ }
  }
  function drop() { try { sessionStorage.removeItem(key); } catch (e) { /* nothing kept */ } }
  form.addEventListener('submit', keep);
  var saving = null;
  text.addEventListener('input', function () {
    clearTimeout(saving);
    saving = setTimeout(keep, 500);
  });

  var draft = read();
  if (!draft) return;
  // The page shows that very text (the check's answer, or the text as published): nothing lost.
  if (draft.text === text.value) { drop(); return; }
  var offer = document.createElement('div');
  offer.className = 'card draft';
  offer.setAttribute('role', 'alert');
  var when = new Date(draft.at);
  var said = document.createElement('p');
  said.textContent = 'This tab kept the text you last typed or sent here, at ' +
    when.toLocaleTimeString() + ', and it is not the text below (the session may have ended ' +
    'before it arrived).';
  var restore = document.createElement('button');
  restore.type = 'button';
  restore.className = 'draft-restore';
  restore.textContent = 'Put it back in the editor';
  var discard = document.createElement('button');
  discard.type = 'button';
  discard.className = 'small draft-discard';
  discard.textContent = 'Discard it';
  restore.addEventListener('click', function () {
    text.value = draft.text;
    if (draft.base && base) base.value = draft.base;
    offer.remove();
  });
  discard.addEventListener('click', function () { drop(); offer.remove(); });
  var buttons = document.createElement('p');
  buttons.appendChild(restore);
  buttons.appendChild(document.createTextNode(' '));
  buttons.appendChild(discard);
  offer.appendChild(said);
  offer.appendChild(buttons);
  form.parentNode.insertBefore(offer, form);
}
