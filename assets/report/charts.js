// vitrun report charts: draws every `[data-chart]` element of the page with uPlot from the JSON
// in <script id="vitrun-data">, adds one toolbar (x axis, smoothing, log y), and shows a
// trial's view at #trial-<id>. No network, no other library.
(function () {
  'use strict';
  var holder = document.getElementById('vitrun-data');
  if (!holder || typeof uPlot === 'undefined') {
    return;
  }
  var data = JSON.parse(holder.textContent);
  var charts = {};
  data.charts.forEach(function (c) { charts[c.id] = c; });
  var trials = {};
  data.trials.forEach(function (t) { trials[t.id] = t; });
  var state = { x: 'epoch', smooth: 0, logy: false };
  var live = [];
  var WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6];
  var X_LABELS = { step: 'optimizer step', epoch: 'epoch', wall: 'wall time' };

  function text(tag, content, cls) {
    var el = document.createElement(tag);
    if (content !== undefined && content !== null) { el.textContent = content; }
    if (cls) { el.className = cls; }
    return el;
  }

  function clock(seconds) {
    var s = Math.max(0, Math.round(seconds));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var two = function (v) { return (v < 10 ? '0' : '') + v; };
    return h > 0 ? h + ':' + two(m) + ':' + two(r) : m + ':' + two(r);
  }

  function number(v, chart) {
    if (v === null || v === undefined || !isFinite(v)) { return '–'; }
    var s;
    if (chart.integer) {
      s = Math.round(v).toLocaleString('en-US');
    } else {
      var a = Math.abs(v);
      s = a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(2) : String(Number(v.toPrecision(4)));
    }
    return chart.percent ? s + ' %' : s;
  }

  function tick(v, chart) {
    if (v === null) { return ''; }
    var a = Math.abs(v);
    var s = a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(1) : String(Number(v.toPrecision(6)));
    return chart.percent ? s + '%' : s;
  }

  function xValue(v, kind) {
    if (v === null || v === undefined) { return '–'; }
    if (kind === 'wall') { return clock(v); }
    if (kind === 'epoch') { return Number.isInteger(v) ? String(v) : v.toFixed(2); }
    return String(Math.round(v));
  }

  // TensorBoard's smoothing: an exponential moving average, debiased for its first points.
  function smoothed(ys, weight) {
    if (!weight) { return ys; }
    var last = 0, n = 0;
    return ys.map(function (v) {
      if (v === null || !isFinite(v)) { return v; }
      last = last * weight + (1 - weight) * v;
      n += 1;
      return last / (1 - Math.pow(weight, n));
    });
  }

  // uPlot's data: the union of the lines' x values, each line's y at them (null elsewhere).
  function aligned(chart, lines) {
    var kind = state.x;
    var weight = chart.per_step ? state.smooth : 0;
    var seen = {};
    var xs = [];
    lines.forEach(function (l) {
      l[kind].forEach(function (x) {
        if (!(x in seen)) { seen[x] = true; xs.push(x); }
      });
    });
    xs.sort(function (a, b) { return a - b; });
    var at = {};
    xs.forEach(function (x, i) { at[x] = i; });
    var out = [xs];
    lines.forEach(function (l) {
      var ys = xs.map(function () { return null; });
      var values = smoothed(l.y, weight);
      l[kind].forEach(function (x, i) { ys[at[x]] = values[i]; });
      out.push(ys);
    });
    return out;
  }

  function positive(lines) {
    return lines.every(function (l) {
      return l.y.every(function (v) { return v === null || v > 0; });
    });
  }

  function options(chart, lines, width) {
    var kind = state.x;
    var logy = state.logy && positive(lines);
    var xAxis = {
      label: X_LABELS[kind],
      values: function (u, ticks) { return ticks.map(function (t) { return xValue(t, kind); }); }
    };
    if (kind !== 'wall') { xAxis.incrs = WHOLE; }
    var yAxis = {
      label: chart.y_label,
      size: 64,
      values: function (u, ticks) { return ticks.map(function (t) { return tick(t, chart); }); }
    };
    if (chart.integer && !logy) { yAxis.incrs = WHOLE; }
    return {
      width: width,
      height: 260,
      focus: { alpha: 0.3 },
      cursor: { focus: { prox: 24 }, drag: { x: true, y: false } },
      legend: { live: true },
      scales: { x: { time: false }, y: logy ? { distr: 3 } : {} },
      axes: [xAxis, yAxis],
      series: [{
        label: X_LABELS[kind],
        value: function (u, v) { return xValue(v, kind); }
      }].concat(lines.map(function (l) {
        return {
          label: l.label,
          stroke: l.colour,
          width: l.width,
          dash: l.dash ? [6, 4] : [],
          spanGaps: true,
          value: function (u, v) { return number(v, chart); }
        };
      }))
    };
  }

  function draw(entry) {
    if (entry.plot) { entry.plot.destroy(); }
    var width = Math.max(280, entry.el.clientWidth || 380);
    entry.plot = new uPlot(options(entry.chart, entry.lines, width), aligned(entry.chart, entry.lines), entry.el);
    entry.note.textContent = state.logy && !positive(entry.lines) ? 'linear y: some values are ≤ 0' : '';
  }

  function mount(el) {
    var chart = charts[el.getAttribute('data-chart')];
    if (!chart) { return; }
    var trial = el.getAttribute('data-trial');
    var lines = chart.lines.filter(function (l) { return !trial || l.trial === trial; });
    if (lines.length === 0) { return; }
    var note = text('p', '', 'vr-chart-note');
    el.parentNode.insertBefore(note, el.nextSibling);
    var entry = { el: el, chart: chart, lines: lines, note: note, plot: null };
    live.push(entry);
    draw(entry);
  }

  function redraw() { live.forEach(draw); }

  function toolbar() {
    var bar = text('div', null, 'vr-toolbar');
    bar.id = 'vr-toolbar';
    var axis = document.createElement('select');
    axis.id = 'vr-x';
    ['epoch', 'step', 'wall'].forEach(function (k) {
      var o = text('option', X_LABELS[k]);
      o.value = k;
      axis.appendChild(o);
    });
    axis.value = state.x;
    axis.addEventListener('change', function () { state.x = axis.value; redraw(); });
    var smooth = document.createElement('input');
    smooth.type = 'range'; smooth.min = '0'; smooth.max = '0.99'; smooth.step = '0.01'; smooth.value = '0';
    smooth.id = 'vr-smooth';
    var shown = text('span', '0.00');
    smooth.addEventListener('input', function () {
      state.smooth = Number(smooth.value);
      shown.textContent = state.smooth.toFixed(2);
      redraw();
    });
    var logy = document.createElement('input');
    logy.type = 'checkbox'; logy.id = 'vr-logy';
    logy.addEventListener('change', function () { state.logy = logy.checked; redraw(); });
    var label = function (content, control) {
      var l = text('label', content);
      l.appendChild(control);
      return l;
    };
    bar.appendChild(label('x axis ', axis));
    bar.appendChild(label('smoothing (per-step series) ', smooth));
    bar.appendChild(shown);
    bar.appendChild(label(' log y ', logy));
    bar.appendChild(text('span', 'hover for values · drag to zoom · double-click to reset · click a legend entry to hide it', 'vr-hint'));
    return bar;
  }

  function table(header, rows, marked) {
    var t = document.createElement('table');
    var head = document.createElement('tr');
    header.forEach(function (h) { head.appendChild(text('th', h)); });
    t.appendChild(head);
    rows.forEach(function (row, i) {
      var tr = document.createElement('tr');
      if (marked && marked[i]) { tr.className = 'vr-changed'; }
      row.forEach(function (cell) { tr.appendChild(text('td', cell)); });
      t.appendChild(tr);
    });
    return t;
  }

  function trialView(id) {
    var t = trials[id];
    var view = document.getElementById('vr-trial');
    live = live.filter(function (e) {
      if (view.contains(e.el)) { e.plot.destroy(); return false; }
      return true;
    });
    view.textContent = '';
    if (!t) { view.hidden = true; return; }
    view.hidden = false;
    view.appendChild(text('h2', 'Trial ' + t.id + (t.label ? ' — ' + t.label : '')));
    var back = text('a', '← back to the whole report');
    back.href = '#';
    view.appendChild(back);
    view.appendChild(text('p', 'status: ' + t.status, 'vr-status status-' + t.status));
    if (t.error) { view.appendChild(text('pre', t.error, 'vr-error')); }
    view.appendChild(table(['fact', 'value'], t.facts));
    view.appendChild(table(['metric', 'best', 'at epoch', 'final', 'at epoch'], t.metrics.map(function (m) {
      return [m.key, m.best, String(m.best_epoch), m.last, String(m.last_epoch)];
    })));
    var grid = text('div', null, 'vr-grid');
    data.charts.forEach(function (c) {
      if (!c.lines.some(function (l) { return l.trial === t.id; })) { return; }
      var card = text('div', null, 'vr-card');
      card.appendChild(text('h3', c.title));
      var el = text('div', null, 'vr-chart');
      el.setAttribute('data-chart', c.id);
      el.setAttribute('data-trial', t.id);
      card.appendChild(el);
      grid.appendChild(card);
    });
    view.appendChild(grid);
    grid.querySelectorAll('[data-chart]').forEach(mount);
    if (!grid.firstChild) {
      view.appendChild(text('p', 'Its curves are not on this page: the charts draw the best trials only. `vitrun report ' + t.id + '` draws them.', 'note'));
    }
    view.appendChild(text('h3', 'Config: the keys that differ from vitrun\'s defaults'));
    view.appendChild(table(['config key', 'value'], t.config.map(function (c) { return [c.key, c.value]; }),
      t.config.map(function (c) { return c.changed; })));
    view.scrollIntoView();
  }

  function route() {
    var hash = decodeURIComponent(location.hash || '');
    if (hash.indexOf('#trial-') === 0) {
      trialView(hash.slice('#trial-'.length));
    } else if (document.getElementById('vr-trial')) {
      trialView(null);
    }
  }

  var grids = document.querySelectorAll('.vr-grid');
  if (grids.length > 0) {
    grids[0].parentNode.insertBefore(toolbar(), grids[0]);
  }
  document.querySelectorAll('[data-chart]').forEach(mount);
  window.addEventListener('hashchange', route);
  route();
  var pending = null;
  window.addEventListener('resize', function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      live.forEach(function (e) {
        e.plot.setSize({ width: Math.max(280, e.el.clientWidth || 380), height: 260 });
      });
    }, 100);
  });
  // A live page (vitrun serve) hands new data here: each chart gets its new points, keeping
  // the x axis, smoothing, log-y and zoom chosen; a chart whose lines changed is drawn again.
  window.vitrunUpdate = function (next) {
    data = next;
    charts = {};
    data.charts.forEach(function (c) { charts[c.id] = c; });
    trials = {};
    data.trials.forEach(function (t) { trials[t.id] = t; });
    live.forEach(function (e) {
      var chart = charts[e.chart.id];
      if (!chart) { return; }
      var trial = e.el.getAttribute('data-trial');
      var lines = chart.lines.filter(function (l) { return !trial || l.trial === trial; });
      var same = lines.length === e.lines.length && lines.every(function (l, i) {
        return l.trial === e.lines[i].trial && l.key === e.lines[i].key;
      });
      e.chart = chart;
      e.lines = lines;
      if (same) {
        // A chart the reader zoomed into keeps its window; the others follow the new points.
        var xs = e.plot.data[0];
        var scale = e.plot.scales.x;
        var zoomed = xs.length > 1 && (scale.min > xs[0] || scale.max < xs[xs.length - 1]);
        e.plot.setData(aligned(chart, lines), !zoomed);
      } else {
        draw(e);
      }
    });
  };
  window.vitrunCharts = live;
})();
