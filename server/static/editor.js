// Loads a chosen markdown file into the manual editor, to check and publish like a typed edit.
// Without script the file can be pasted into the text box instead (the picker stays hidden).
(function () {
  var input = document.getElementById('upload');
  var text = document.getElementById('markdown');
  if (!input || !text || !window.FileReader) return;
  input.parentNode.hidden = false;
  input.addEventListener('change', function () {
    var file = input.files && input.files[0];
    if (!file) return;
    var reader = new FileReader();
    reader.onload = function () { text.value = reader.result; };
    reader.readAsText(file);
  });
})();
