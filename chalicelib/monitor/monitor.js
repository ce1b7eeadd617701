/* Cache monitor: polls GET /api/cache/stats every 2 s with an operator token
   (sessionStorage only) and draws the fleet's figures with this container's beside them,
   an SVG hit-rate chart and the view table. The banner and every status card are set
   together from one verdict per poll, so they cannot disagree. */
(function () {
  'use strict';

  var TOKEN_KEY = 'hbMonitorToken';
  var POLL_MS = 2000;
  var FETCH_TIMEOUT_MS = 5000;
  var WINDOW_S = 300;          // chart and history: last 5 minutes
  var LOADS_WINDOW_S = 60;     // DB loads per minute over the last minute
  var SVG_NS = 'http://www.w3.org/2000/svg';
  // relative, so it also works behind an API Gateway stage prefix (…/api/monitor -> …/api/api/cache/stats)
  var STATS_URL = 'api/cache/stats';

  var samples = [];            // {t (s, client clock), overall, interval, dbHits, req, hit}
  var timer = null;
  var generation = 0;          // bumps on token change: late answers of an old token are ignored
  var lastDoc = null;

  function $(id) { return document.getElementById(id); }

  function getToken() {
    try { return window.sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  function setToken(value) {
    try {
      if (value) { window.sessionStorage.setItem(TOKEN_KEY, value); } else { window.sessionStorage.removeItem(TOKEN_KEY); }
    } catch (e) { /* storage blocked: the token then lives in this page only */ }
    memoryToken = value || '';
  }
  var memoryToken = '';
  function token() { return getToken() || memoryToken; }

  /* ---------- formatting ---------- */
  function pct(rate) { return (rate === null || rate === undefined) ? '—' : (rate * 100).toFixed(1) + ' %'; }
  function micros(us) {
    if (us === null || us === undefined) { return '—'; }
    if (us < 10) { return us.toFixed(2) + ' µs'; }
    if (us < 1000) { return Math.round(us) + ' µs'; }
    if (us < 1e6) { return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + ' ms'; }
    return (us / 1e6).toFixed(2) + ' s';
  }
  function bytes(n) {
    if (n === null || n === undefined) { return '—'; }
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
  }
  function count(n) { return (n === null || n === undefined) ? '—' : Number(n).toLocaleString('en-US'); }
  function ago(seconds) {
    if (!isFinite(seconds)) { return '—'; }
    if (seconds < 0) { seconds = 0; }
    if (seconds < 90) { return Math.round(seconds) + ' s ago'; }
    if (seconds < 5400) { return Math.round(seconds / 60) + ' min ago'; }
    if (seconds < 172800) { return Math.round(seconds / 3600) + ' h ago'; }
    return Math.round(seconds / 86400) + ' d ago';
  }
  function setText(id, text, value) {
    var el = $(id);
    if (!el) { return; }
    el.textContent = text;
    if (value !== undefined) { el.setAttribute('data-value', value === null ? '' : String(value)); }
  }
  function setClass(id, cls) {
    var el = $(id);
    el.classList.remove('good', 'bad', 'warn');
    if (cls) { el.classList.add(cls); }
  }

  /* ---------- states ---------- */
  var MESSAGES = {
    'no-token': 'No token: paste an operator token to start.',
    'loading': 'Loading…',
    'ok': 'Live: refreshing every 2 s.',
    'refused': 'Token refused: the API answered %s. Paste a valid operator token (a hospital admin, staff or patient token cannot read cache statistics).',
    'redis-down': 'Redis down: %s. Answers come from memory and the database; the figures below are this container\'s own, live.',
    'db-down': 'Database down: %s. Recent answers are served from the cache (stale where needed), others fail; figures below are live.',
    'unreachable': 'API unreachable: %s. Retrying every 2 s; figures below are from the last good refresh.',
    'error': 'The API answered %s. Retrying every 2 s; figures below are from the last good refresh.'
  };
  // every figure the page fills from a document
  var FIGURES = ['overall-hit-rate', 'overall-requests', 'c-overall-hit-rate', 'c-overall-requests',
    'stale-served', 'c-stale-served', 'l1-entries', 'l1-evictions', 'c-l1-entries', 'l1-bytes', 'c-l1-bytes',
    'redis-memory', 'errors', 'c-errors', 'db-loads-per-min', 'container-id', 'container-uptime', 'container-published'];
  ['l1', 'l2', 'db'].forEach(function (t) {
    ['-hit-rate', '-p50', '-p99'].forEach(function (f) { FIGURES.push(t + f, 'c-' + t + f); });
  });
  // status cards: they say what the banner says
  var STATUS = ['fleet-containers', 'l2-state', 'tracking-state', 'breaker-state', 'db-state'];

  function showState(state, detail) {
    var banner = $('state-banner');
    banner.setAttribute('data-state', state);
    banner.textContent = MESSAGES[state].replace('%s', detail || '');
    var needsToken = state === 'no-token' || state === 'refused';
    $('token-form').hidden = !needsToken;
    $('token-clear').hidden = needsToken;
    document.body.classList.toggle('locked', needsToken || state === 'unreachable' || state === 'error');
    document.body.classList.toggle('stale', state === 'unreachable' || state === 'error');
    document.body.setAttribute('data-state', state);
    if (needsToken) {
      // no data for this tab: nothing may look live
      FIGURES.forEach(function (id) { setText(id, '—', null); });
      setStatus('—', '');
      lastDoc = null;
    } else if (state === 'unreachable' || state === 'error') {
      // the numbers stay (greyed, "last good refresh"); nothing is known about the services now
      setStatus('unknown', 'the last poll failed');
    }
  }

  function setStatus(text, note) {
    STATUS.forEach(function (id) { setText(id, text, null); setClass(id, null); });
    setText('breaker-note', note || 'this container\'s');
    setText('fleet-note', note || 'containers that published in the last minute');
  }

  /* ---------- polling ---------- */
  function schedule(ms) {
    window.clearTimeout(timer);
    timer = window.setTimeout(poll, ms);
  }

  function poll() {
    var tok = token();
    if (!tok) { showState('no-token'); return; }
    var mine = generation;
    var controller = typeof AbortController === 'function' ? new AbortController() : null;
    var timeout = controller ? window.setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS) : null;
    fetch(STATS_URL, {
      headers: { 'Authorization': 'Bearer ' + tok, 'Accept': 'application/json' },
      cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
      signal: controller ? controller.signal : undefined
    }).then(function (response) {
      if (response.status === 401 || response.status === 403) {
        return { refused: response.status };
      }
      if (!response.ok) {
        return response.text().then(function (body) { return { failed: response.status, body: body }; });
      }
      return response.json().then(function (doc) { return { doc: doc }; });
    }).then(function (result) {
      if (mine !== generation) { return; }
      if (result.refused) {
        setToken('');
        showState('refused', 'HTTP ' + result.refused + (result.refused === 401 ? ' (not signed in or expired)' : ' (not an operator)'));
        return;                                      // no more polling until a new token is given
      }
      if (result.failed) {
        var message = 'HTTP ' + result.failed;
        try { message += ' (' + JSON.parse(result.body).message + ')'; } catch (e) { /* not JSON */ }
        showState('error', message);
      } else {
        render(result.doc);
      }
      schedule(POLL_MS);
    }).catch(function (err) {
      if (mine !== generation) { return; }
      var why = (err && err.name === 'AbortError') ? 'no answer within ' + (FETCH_TIMEOUT_MS / 1000) + ' s' : 'the request failed';
      showState('unreachable', why);
      setText('last-updated', lastDoc ? 'last good refresh ' + new Date(lastDoc.clientAt).toLocaleTimeString() : 'not loaded');
      schedule(POLL_MS);
    }).then(function () {
      if (timeout) { window.clearTimeout(timeout); }
    });
  }

  /* ---------- rendering ---------- */
  function tierFigures(prefix, part) {
    ['l1', 'l2', 'db'].forEach(function (name) {
      var tier = part[name] || {};
      setText(prefix + name + '-hit-rate', pct(tier.hitRate), tier.hitRate);
      setText(prefix + name + '-p50', micros(tier.p50Us), tier.p50Us);
      setText(prefix + name + '-p99', micros(tier.p99Us), tier.p99Us);
    });
  }

  function errorsText(part) {
    var errors = part.errors || {};
    return count(errors.l2) + ' / ' + count(errors.db);
  }

  /* One verdict from the document: the banner state and the status cards together. */
  function verdict(doc) {
    var c = doc.container || {}, l2 = c.l2 || {};
    var redisDown = l2.state === 'down' || c.tracking === 'down';
    var dbDown = (doc.database || {}).state === 'down';
    var why = [];
    if (l2.state === 'down') { why.push('this container cannot reach Redis (breaker ' + (l2.breaker || '?') + ')'); }
    if (c.tracking === 'down') { why.push('invalidation tracking down'); }
    if (redisDown && !doc.fleet) { why.push('no fleet figures'); }
    var state = dbDown ? 'db-down' : (redisDown ? 'redis-down' : 'ok');
    var detail = dbDown ? 'this container cannot read PostgreSQL' + (redisDown ? '; Redis down too: ' + why.join('; ') : '')
      : why.join('; ');
    return { state: state, detail: detail, redisDown: redisDown, dbDown: dbDown };
  }

  function render(doc) {
    var c = doc.container || {}, fleet = doc.fleet, l2 = c.l2 || {};
    var primary = fleet || c;                     // the fleet, or this container when there is none
    var now = Date.now() / 1000;
    doc.clientAt = Date.now();
    lastDoc = doc;

    var v = verdict(doc);
    showState(v.state, v.detail);
    document.body.setAttribute('data-scope', fleet ? 'fleet' : 'container');
    Array.prototype.forEach.call(document.querySelectorAll('[data-scope-tag]'), function (el) {
      el.textContent = fleet ? 'fleet' : 'this container';
    });

    // scope: how many containers, or why there is no fleet
    if (fleet) {
      setText('fleet-containers', count(fleet.containers) + (fleet.containers === 1 ? ' container' : ' containers'), fleet.containers);
      setClass('fleet-containers', 'good');
      setText('fleet-note', 'published in the last ' + ((c.publish || {}).expiryS || 60) + ' s; figures summed, percentiles from summed buckets');
    } else {
      setText('fleet-containers', 'unavailable', null);
      setClass('fleet-containers', 'warn');
      setText('fleet-note', doc.fleetError || 'no fleet figures');
    }
    setText('container-id', c.id || '—', c.id);
    setText('container-uptime', c.uptimeS === undefined ? '—' : ago(c.uptimeS).replace(' ago', ''), c.uptimeS);
    var published = (c.publish || {}).lastPublishedS;
    setText('container-published', published === null || published === undefined ? 'never' : ago(published), published);

    var overall = primary.overall || {}, mine = c.overall || {};
    setText('overall-hit-rate', pct(overall.hitRate), overall.hitRate);
    setText('overall-requests', count(overall.requests), overall.requests);
    setText('c-overall-hit-rate', pct(mine.hitRate), mine.hitRate);
    setText('c-overall-requests', count(mine.requests), mine.requests);
    tierFigures('', primary);
    tierFigures('c-', c);

    setText('stale-served', count(primary.staleServed), primary.staleServed);
    setClass('stale-served', primary.staleServed > 0 ? 'warn' : null);
    setText('c-stale-served', count(c.staleServed), c.staleServed);

    // Redis, as this container sees it: "ok" only when neither the tier nor tracking is down
    var redisText = l2.state === 'down' ? 'down' : (c.tracking === 'down' ? 'tracking down' : (l2.state || '—'));
    setText('l2-state', redisText, l2.state);
    setClass('l2-state', l2.state === 'down' ? 'bad' : (c.tracking === 'down' ? 'warn' : (l2.state === 'ok' ? 'good' : null)));
    setText('tracking-state', c.tracking || '—', c.tracking);
    setClass('tracking-state', c.tracking === 'down' ? 'bad' : null);
    setText('breaker-state', l2.breaker || '—', l2.breaker);
    var breakerClass = l2.breaker === 'open' ? 'bad' : (l2.breaker === 'half_open' ? 'warn'
      : (l2.breaker === 'closed' ? (v.redisDown ? 'warn' : 'good') : null));
    setClass('breaker-state', breakerClass);
    setText('breaker-note', l2.breaker === 'closed' && v.redisDown
      ? 'not open yet: it opens after repeated failures' : (l2.breaker === 'disabled' ? 'Redis is disabled' : 'this container\'s'));
    var dbState = (doc.database || {}).state;
    setText('db-state', dbState || '—', dbState);
    setClass('db-state', dbState === 'down' ? 'bad' : (dbState === 'ok' ? 'good' : null));

    var l1 = primary.l1 || {}, myL1 = c.l1 || {};
    setText('l1-entries', count(l1.entries), l1.entries);
    setText('l1-evictions', count(l1.evictions), l1.evictions);
    setText('c-l1-entries', count(myL1.entries), myL1.entries);
    setText('l1-bytes', bytes(l1.bytes), l1.bytes);
    setText('c-l1-bytes', bytes(myL1.bytes), myL1.bytes);
    setText('redis-memory', bytes(l2.memoryUsedBytes), l2.memoryUsedBytes);
    setText('errors', errorsText(primary));
    setClass('errors', ((primary.errors || {}).l2 || (primary.errors || {}).db) ? 'warn' : null);
    setText('c-errors', errorsText(c));

    addSample(now, primary, fleet ? 'fleet' : 'container:' + c.id);
    setText('db-loads-per-min', loadsPerMinute(now));
    drawChart();
    renderViews(doc.views || [], doc.now || now, v.dbDown);
    setText('last-updated', 'updated ' + new Date().toLocaleTimeString());
  }

  function addSample(now, part, scope) {
    var l1 = part.l1 || {}, l2 = part.l2 || {}, db = part.db || {}, overall = part.overall || {};
    var req = (l1.hits || 0) + (l1.misses || 0);
    var hit = (l1.hits || 0) + (l2.hits || 0);
    var sample = { t: now, overall: overall.hitRate, interval: null, dbHits: db.hits || 0, req: req, hit: hit,
      reset: false, scope: scope };
    var prev = samples[samples.length - 1];
    if (prev) {
      var dReq = req - prev.req, dHit = hit - prev.hit;
      if (prev.scope !== scope || dReq < 0 || dHit < 0 || sample.dbHits < prev.dbHits) {
        sample.reset = true;                     // counters restarted, a container left, or the scope changed
      } else if (dReq > 0) {
        sample.interval = Math.max(0, Math.min(1, dHit / dReq));
      }
    }
    samples.push(sample);
    while (samples.length && samples[0].t < now - WINDOW_S) { samples.shift(); }
  }

  function loadsPerMinute(now) {
    var last = samples[samples.length - 1];
    var first = null;
    for (var i = samples.length - 1; i >= 0; i--) {
      if (samples[i].t < now - LOADS_WINDOW_S) { break; }
      first = samples[i];
      if (samples[i].reset) { break; }
    }
    if (!first || !last || last.t - first.t < 1.5) { return '…'; }
    var perMin = (last.dbHits - first.dbHits) / (last.t - first.t) * 60;
    var el = $('db-loads-per-min');
    el.setAttribute('data-value', perMin.toFixed(2));
    return perMin < 10 ? perMin.toFixed(1) : Math.round(perMin).toLocaleString('en-US');
  }

  function svg(name, attrs, parent) {
    var el = document.createElementNS(SVG_NS, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(el); }
    return el;
  }

  function drawChart() {
    var chart = $('chart');
    var w = Math.max(200, Math.round(chart.clientWidth || 600));
    var h = Math.max(100, Math.round(chart.clientHeight || 160));
    chart.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    while (chart.firstChild) { chart.removeChild(chart.firstChild); }
    var left = 40, right = 8, top = 8, bottom = 20;
    var pw = w - left - right, ph = h - top - bottom;
    var now = samples.length ? samples[samples.length - 1].t : Date.now() / 1000;
    // the time axis grows with the history: 1 min at first, then whole minutes up to 5
    var span = samples.length ? now - samples[0].t : 0;
    var windowS = Math.min(WINDOW_S, Math.max(60, Math.ceil(span / 60) * 60));
    $('chart-window').textContent = (windowS / 60) + ' min';
    function x(t) { return left + pw - (now - t) / windowS * pw; }
    function y(rate) { return top + (1 - rate) * ph; }

    [0, 0.5, 1].forEach(function (r) {
      svg('line', { 'class': 'grid-line', x1: left, x2: left + pw, y1: y(r), y2: y(r) }, chart);
      svg('text', { 'class': 'axis-label', x: left - 6, y: y(r) + 4, 'text-anchor': 'end' }, chart).textContent = (r * 100) + '%';
    });
    [windowS, windowS / 2, 0].forEach(function (s, i) {
      var label = svg('text', { 'class': 'axis-label', x: x(now - s), y: h - 4,
        'text-anchor': i === 0 ? 'start' : (i === 2 ? 'end' : 'middle') }, chart);
      label.textContent = s === 0 ? 'now' : (s < 60 ? '−' + s + ' s' : '−' + (s / 60) + ' min');
    });

    function path(key) {
      var d = '', pen = false;
      samples.forEach(function (s) {
        var v = s[key];
        if (v === null || v === undefined || s.reset) { pen = false; return; }
        d += (pen ? ' L' : ' M') + x(s.t).toFixed(1) + ' ' + y(v).toFixed(1);
        pen = true;
      });
      return d.trim();
    }
    var overall = path('overall'), interval = path('interval');
    if (interval) { svg('path', { 'class': 'line-interval', d: interval, 'data-series': 'interval' }, chart); }
    if (overall) { svg('path', { 'class': 'line-overall', d: overall, 'data-series': 'overall' }, chart); }
    // a lone point shows as a dot
    samples.forEach(function (s) {
      if (s.overall !== null && s.overall !== undefined) {
        svg('circle', { cx: x(s.t).toFixed(1), cy: y(s.overall).toFixed(1), r: 1.6, 'class': 'dot', 'data-point': '' }, chart);
      }
    });
    if (!overall) {
      svg('text', { 'class': 'empty-label', x: left + pw / 2, y: top + ph / 2, 'text-anchor': 'middle' }, chart)
        .textContent = 'No cached requests yet';
    }
    chart.setAttribute('data-points', String(samples.length));
    chart.setAttribute('data-latest', samples.length && samples[samples.length - 1].overall !== null
      ? String(samples[samples.length - 1].overall) : '');
  }

  function renderViews(views, serverNow, dbDown) {
    var body = $('views-body');
    while (body.firstChild) { body.removeChild(body.firstChild); }
    if (!views.length) {
      var row = document.createElement('tr');
      var cell = document.createElement('td');
      cell.colSpan = 5; cell.className = 'empty';
      cell.textContent = dbDown ? 'Database down: view refreshes cannot be read.' : 'No refresh recorded yet.';
      row.appendChild(cell); body.appendChild(row);
      return;
    }
    views.forEach(function (v) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-view', v.view);
      var at = Date.parse(v.refreshedAt);
      var cells = [
        [v.view, ''],
        [isNaN(at) ? (v.refreshedAt || '—') : ago(serverNow - at / 1000), ''],
        [v.durationMs === null || v.durationMs === undefined ? '—' : v.durationMs + ' ms', 'num'],
        [count(v.keysPrewarmed), 'num'],
        [v.status || '—', v.status === 'ok' ? 'status-ok' : 'status-bad']
      ];
      cells.forEach(function (c, i) {
        var td = document.createElement('td');
        td.textContent = c[0];
        if (c[1]) { td.className = c[1]; }
        if (i === 1 && !isNaN(at)) { td.title = new Date(at).toISOString(); }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  /* ---------- wiring ---------- */
  function start(newToken) {
    generation++;
    samples = [];
    setToken(newToken);
    showState('loading');
    poll();
  }

  $('token-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var input = $('token-input');
    var value = input.value.trim().replace(/^Bearer\s+/i, '');
    input.value = '';
    if (!value) { showState('no-token'); return; }
    start(value);
  });
  $('token-clear').addEventListener('click', function () {
    generation++;
    window.clearTimeout(timer);
    setToken('');
    showState('no-token');
    $('token-input').focus();
  });
  var resizeTimer = null;
  window.addEventListener('resize', function () {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(drawChart, 150);
  });

  drawChart();
  if (token()) { start(token()); } else { showState('no-token'); }
}());
