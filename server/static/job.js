// Live progress of a publish job (the page works without it: it refreshes itself while the job runs).
(function () {
  // Rolling back takes the publish off the site at once: asked first.
  var rollback = document.getElementById('rollback');
  if (rollback) {
    rollback.addEventListener('submit', function (e) {
      if (!window.confirm('Roll back this publish? Readers get the previous text again; this text can be opened in the editor again from this page.')) e.preventDefault();
    });
  }
  var card = document.getElementById('job');
  if (!card || card.dataset.running !== 'true' || !window.EventSource) return;
  var status = document.getElementById('job-status');
  var bar = document.getElementById('job-progress');
  var count = document.getElementById('job-count');
  var report = document.getElementById('job-report');
  var source = new EventSource('/admin/jobs/' + card.dataset.job + '/events');
  function show(p) {
    status.textContent = p.status;
    bar.max = Math.max(p.total, 1);
    bar.value = p.total ? p.done : (p.status === 'running' ? 0 : 1);
    count.textContent = p.done + ' / ' + p.total + ' chunks embedded';
    report.textContent = p.report;
  }
  source.addEventListener('progress', function (e) { show(JSON.parse(e.data)); });
  source.addEventListener('done', function (e) {
    show(JSON.parse(e.data));
    source.close();
    // The rollback button depends on the outcome: the page knows it now.
    window.location.reload();
  });
})();
