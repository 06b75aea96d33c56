// vitrun serve: keeps a report page live. Polls /api/r/<targets> every two seconds while a
// trial runs, gives the charts their new points (window.vitrunUpdate, from charts.js), and
// shows each running trial's progress and the early-stopping decisions.
(function () {
  'use strict';
  var target = window.vitrunLiveTarget;
  var box = document.createElement('section');
  box.id = 'vr-live';
  var nav = document.querySelector('nav');
  document.body.insertBefore(box, nav ? nav.nextSibling : document.body.firstChild);
  var updates = 0;
  var history = [];

  function cell(row, text) {
    var td = document.createElement('td');
    td.textContent = text;
    row.appendChild(td);
  }

  function clock(seconds) {
    if (seconds === null || seconds === undefined) { return '–'; }
    var s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h > 0 ? h + ' h ' + m + ' min' : m > 0 ? m + ' min ' + (s % 60) + ' s' : s + ' s';
  }

  function render(live) {
    box.textContent = '';
    var points = live.page.charts.reduce(function (n, c) {
      return n + c.lines.reduce(function (k, l) { return k + l.y.length; }, 0);
    }, 0);
    history.push(points);
    box.dataset.points = history.join(',');
    var head = document.createElement('p');
    head.className = 'note';
    head.id = 'vr-live-status';
    head.textContent = 'Live: read ' + live.updated + ' UTC · ' + updates + ' update' + (updates === 1 ? '' : 's') +
      ' · ' + points + ' points' + (live.running.length ? ' · refreshing every 2 s' : ' · no trial running, refresh stopped');
    box.appendChild(head);
    if (live.running.length) {
      var table = document.createElement('table');
      var header = document.createElement('tr');
      ['running trial', 'epoch', 'images/s', 'time left'].forEach(function (h) {
        var th = document.createElement('th');
        th.textContent = h;
        header.appendChild(th);
      });
      table.appendChild(header);
      live.running.forEach(function (r) {
        var row = document.createElement('tr');
        cell(row, r.id + (r.label && r.label !== r.id ? ' — ' + r.label : ''));
        cell(row, r.epoch + ' / ' + r.epochs);
        cell(row, r.images_per_sec === null ? '–' : Math.round(r.images_per_sec).toLocaleString('en-US'));
        cell(row, clock(r.eta_s));
        table.appendChild(row);
      });
      box.appendChild(table);
    }
    if (live.decisions.length) {
      var list = document.createElement('ul');
      live.decisions.forEach(function (d) {
        var item = document.createElement('li');
        item.textContent = d.time.replace('T', ' ').slice(0, 19) + ' ' + d.trial + ': ' + d.message;
        list.appendChild(item);
      });
      var title = document.createElement('p');
      title.className = 'note';
      title.textContent = 'Early-stopping decisions, newest first:';
      box.appendChild(title);
      box.appendChild(list);
    }
  }

  function poll() {
    fetch('/api/r/' + encodeURIComponent(target), { cache: 'no-store' })
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.json();
      })
      .then(function (live) {
        updates += 1;
        if (window.vitrunUpdate) { window.vitrunUpdate(live.page); }
        render(live);
        if (live.running.length) { setTimeout(poll, 2000); }
      })
      .catch(function (e) {
        box.textContent = 'Live updates stopped: ' + e.message + ' (reload the page to retry).';
      });
  }
  poll();
})();
