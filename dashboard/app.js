// The ists dashboard: vanilla JavaScript, no dependencies. Everything that comes from a search
// (LLM replies, prompts, reasons, ids) is put on the page with textContent or SVG text nodes,
// never an HTML-parsing sink: a reply is untrusted text and must never run as HTML or script.
'use strict';

const $ = (sel) => document.querySelector(sel);
const SVG = 'http://www.w3.org/2000/svg';

// The token lives in memory and sessionStorage (gone with the tab), never in a URL.
let token = sessionStorage.getItem('ists-token') || '';
let current = null; // the search shown: {id, ...state}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h.Authorization = 'Bearer ' + token;
  return h;
}

class HttpError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

async function api(path, opts) {
  const o = Object.assign({}, opts || {});
  o.headers = headers(o.headers);
  const r = await fetch(path, o);
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!r.ok) {
    if (r.status === 401) $('#auth-state').textContent = 'sign-in needed';
    throw new HttpError(r.status, (body && body.error) || ('HTTP ' + r.status));
  }
  return body;
}

const fmtScore = (s) => (s === null || s === undefined ? '-' : Number(s).toFixed(4));
const fmtTime = (ms) => new Date(ms).toLocaleString();

// ---- sign-in -----------------------------------------------------------------------------

$('#signin').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('#token').value.trim();
  $('#token').value = '';
  if (token) sessionStorage.setItem('ists-token', token);
  else sessionStorage.removeItem('ists-token');
  $('#auth-state').textContent = token ? 'signed in' : 'no token';
  refreshList();
  if (current) openSearch(current.id);
});

$('#signout').addEventListener('click', () => {
  token = '';
  sessionStorage.removeItem('ists-token');
  $('#auth-state').textContent = 'signed out';
});

// ---- the list of searches ----------------------------------------------------------------

async function refreshList() {
  let rows;
  try {
    rows = await api('/searches');
    $('#list-msg').textContent = '';
  } catch (e) {
    $('#list-msg').textContent = 'Cannot list searches: ' + e.message;
    return;
  }
  const tb = $('#searches tbody');
  tb.replaceChildren();
  for (const s of rows) {
    const tr = el('tr', { class: 'clickable', 'data-id': s.id });
    if (current && current.id === s.id) tr.classList.add('selected');
    tr.append(el('td', {}, s.id), el('td', { class: 'status-' + s.status }, s.status),
      el('td', {}, s.stage || '-'), el('td', {}, s.evaluated + ' / ' + s.budget),
      el('td', {}, s.best ? fmtScore(s.best.score) + ' (#' + s.best.candidate + ')' : '-'),
      el('td', {}, fmtTime(s.created_ms)), el('td', {}, s.llm));
    const act = el('td');
    if (s.status === 'queued' || s.status === 'running') {
      const b = el('button', { type: 'button', class: 'cancel' }, 'Cancel');
      b.addEventListener('click', async (ev) => {
        ev.stopPropagation();
        try {
          await api('/searches/' + encodeURIComponent(s.id) + '/cancel', { method: 'POST' });
        } catch (e) {
          $('#list-msg').textContent = 'Cancel failed: ' + e.message;
        }
        refreshList();
      });
      act.append(b);
    }
    tr.append(act);
    tr.addEventListener('click', () => openSearch(s.id));
    tb.append(tr);
  }
}

$('#config-file').addEventListener('change', async (ev) => {
  const f = ev.target.files[0];
  if (f) $('#config').value = await f.text();
});

$('#submit-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const msg = $('#submit-msg');
  let body;
  try {
    body = JSON.stringify(JSON.parse($('#config').value));
  } catch (e) {
    msg.textContent = 'Not valid JSON: ' + e.message;
    return;
  }
  try {
    const r = await api('/searches', {
      method: 'POST', body, headers: { 'Content-Type': 'application/json' },
    });
    msg.textContent = '';
    await refreshList();
    openSearch(r.id);
  } catch (e) {
    msg.textContent = 'Refused: ' + e.message;
  }
});

// ---- one search --------------------------------------------------------------------------

function newState(id) {
  return {
    id,
    abort: new AbortController(),
    lastEventId: 0,
    session: 0, // counts `started` events: prompt files are tagged with the session
    stage: 'exploration',
    switchAfter: null,
    candidates: new Map(), // candidate -> row
    rejected: [], // proposal rows
    hashToProposal: new Map(),
    usage: { prompt: 0, completion: 0 },
    best: null,
    bestArch: null,
    terminal: false,
    finished: false,
    sort: { key: 'candidate', dir: 1 },
    pending: false,
  };
}

async function openSearch(id) {
  if (current) current.abort.abort();
  current = newState(id);
  $('#detail').hidden = false;
  $('#detail-id').textContent = id;
  $('#detail-error').textContent = '';
  for (const tr of document.querySelectorAll('#searches tbody tr')) {
    tr.classList.toggle('selected', tr.dataset.id === id);
  }
  render();
  await refreshDetail(current);
  follow(current);
}

async function refreshDetail(st) {
  try {
    const s = await api('/searches/' + encodeURIComponent(st.id));
    if (st !== current) return;
    st.row = s;
    st.terminal = ['completed', 'cancelled', 'failed'].includes(s.status);
    $('#detail-status').textContent = s.status;
    $('#detail-status').className = 'badge status-' + s.status;
    $('#detail-error').textContent = s.error || '';
    renderMetrics(s.summary);
  } catch (e) {
    $('#detail-error').textContent = e.message;
  }
}

// Reads `text/event-stream` with fetch (EventSource cannot send the Authorization header)
// and resumes after the last event seen with `Last-Event-ID` whenever the stream drops.
async function follow(st) {
  let delay = 500;
  while (st === current && !st.abort.signal.aborted) {
    try {
      const h = { Accept: 'text/event-stream' };
      if (st.lastEventId > 0) h['Last-Event-ID'] = String(st.lastEventId);
      const r = await fetch('/searches/' + encodeURIComponent(st.id) + '/events', {
        headers: headers(h), signal: st.abort.signal, cache: 'no-store',
      });
      if (!r.ok) throw new HttpError(r.status, 'event stream: HTTP ' + r.status);
      delay = 500;
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          dispatch(st, buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
      }
      // The daemon ends the stream once the search is finished and everything was sent.
      await refreshDetail(st);
      if (st.terminal) return;
    } catch (e) {
      if (st.abort.signal.aborted) return;
      $('#detail-error').textContent = e.message + ' (reconnecting)';
      if (e.status === 401 || e.status === 404) return;
    }
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

function dispatch(st, block) {
  let id = null;
  let kind = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue; // keep-alive comment
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'id') id = value;
    else if (field === 'event') kind = value;
    else if (field === 'data') data.push(value);
  }
  if (id !== null && /^\d+$/.test(id)) st.lastEventId = Number(id);
  if (!data.length) return;
  let ev;
  try { ev = JSON.parse(data.join('\n')); } catch (_) { return; }
  apply(st, kind, ev);
  schedule();
}

function apply(st, kind, ev) {
  switch (kind) {
    case 'started':
      st.session += 1;
      break;
    case 'parsed':
      st.hashToProposal.set(ev.hash, { session: st.session, proposal: ev.proposal, reasoning: ev.reasoning || '' });
      break;
    case 'rejected':
      st.rejected.push({
        kind: 'rejected', candidate: null, session: st.session, proposal: ev.proposal,
        stage: st.stage, score: null, seconds: null, reason: ev.kind + ': ' + ev.reason,
      });
      break;
    case 'evaluated': {
      const p = st.hashToProposal.get(ev.hash) || {};
      const status = ev.status && ev.status.status;
      st.candidates.set(ev.candidate, {
        kind: 'evaluated', candidate: ev.candidate, hash: ev.hash, session: p.session,
        proposal: p.proposal, stage: st.stage, score: ev.score, seconds: ev.seconds,
        reason: status && status !== 'ok' ? status.replace(/_/g, ' ') : '',
        reasoning: p.reasoning || '',
      });
      break;
    }
    case 'failed':
      if (ev.candidate !== null && ev.candidate !== undefined) {
        st.candidates.set(ev.candidate, {
          kind: 'failed', candidate: ev.candidate, session: st.session, proposal: null,
          stage: st.stage, score: null, seconds: null, reason: ev.kind + ': ' + ev.reason,
        });
      } else {
        st.rejected.push({
          kind: 'failed', candidate: null, session: st.session, proposal: ev.proposal,
          stage: st.stage, score: null, seconds: null, reason: 'abandoned (' + ev.kind + '): ' + ev.reason,
        });
      }
      break;
    case 'stage_switched':
      st.stage = String(ev.to);
      st.switchAfter = ev.after;
      break;
    case 'new_best':
      st.best = { candidate: ev.candidate, score: ev.score };
      loadBestArch(st, ev.candidate);
      break;
    case 'tokens':
      st.usage.prompt += ev.usage.prompt_tokens || 0;
      st.usage.completion += ev.usage.completion_tokens || 0;
      break;
    case 'finished':
      st.finished = true;
      break;
    default:
      break;
  }
}

// Candidates are stored in id order; the page at offset `candidate` is the usual hit.
async function loadBestArch(st, candidate) {
  try {
    const base = '/searches/' + encodeURIComponent(st.id) + '/candidates';
    let page = await api(base + '?offset=' + candidate + '&limit=1');
    let row = page.items.find((c) => c.candidate === candidate);
    for (let off = 0; !row && off < page.total; off += 500) {
      page = await api(base + '?offset=' + off + '&limit=500');
      row = page.items.find((c) => c.candidate === candidate);
    }
    if (row && st === current && st.best && st.best.candidate === candidate) {
      st.bestArch = row.arch;
      schedule();
    }
  } catch (e) {
    $('#detail-error').textContent = 'best architecture: ' + e.message;
  }
}

// Rendering is batched to one frame however many events arrive.
function schedule() {
  if (!current || current.pending) return;
  current.pending = true;
  requestAnimationFrame(() => { if (current) { current.pending = false; render(); } });
}

function render() {
  const st = current;
  if (!st) return;
  const evaluated = [...st.candidates.values()];
  $('#c-evaluated').textContent = evaluated.length + (st.row ? ' / ' + st.row.budget : '');
  $('#c-best').textContent = st.best ? fmtScore(st.best.score) + ' (#' + st.best.candidate + ')' : '-';
  $('#c-stage').textContent = st.stage;
  $('#c-prompt').textContent = st.usage.prompt.toLocaleString();
  $('#c-completion').textContent = st.usage.completion.toLocaleString();
  renderCost();
  renderCurve(st, evaluated);
  renderDag(st);
  renderTable(st, evaluated);
}

function renderCost() {
  if (!current) return;
  const pin = Number($('#price-in').value) || 0;
  const pout = Number($('#price-out').value) || 0;
  const cost = (current.usage.prompt * pin + current.usage.completion * pout) / 1e6;
  $('#c-cost').textContent = pin || pout ? '$' + cost.toFixed(4) : 'set prices';
}

for (const [id, key] of [['#price-in', 'ists-price-in'], ['#price-out', 'ists-price-out']]) {
  const saved = sessionStorage.getItem(key);
  if (saved !== null) $(id).value = saved;
  $(id).addEventListener('input', () => { sessionStorage.setItem(key, $(id).value); renderCost(); });
}

// Score of every evaluated candidate and the best so far, against the candidate index; the
// exploration and optimization stages shaded.
function renderCurve(st, rows) {
  const svg = $('#curve');
  svg.replaceChildren();
  const W = 640, H = 300, L = 56, R = 12, T = 12, B = 34;
  const pts = rows.filter((r) => r.score !== null && r.score !== undefined && isFinite(r.score))
    .sort((a, b) => a.candidate - b.candidate);
  const n = Math.max(st.row ? st.row.budget : 0, ...rows.map((r) => r.candidate + 1), 1);
  const x = (i) => L + (W - L - R) * (n <= 1 ? 0.5 : i / (n - 1));
  let lo = Math.min(...pts.map((p) => p.score));
  let hi = Math.max(...pts.map((p) => p.score));
  if (!pts.length) { lo = 0; hi = 1; }
  if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.05;
  lo -= pad; hi += pad;
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  const sw = st.switchAfter;
  const split = sw === null ? W - R : Math.min(W - R, Math.max(L, x(sw - 0.5)));
  svg.append(svgEl('rect', { class: 'stage-exploration', x: L, y: T, width: split - L, height: H - T - B }));
  if (sw !== null) {
    svg.append(svgEl('rect', { class: 'stage-optimization', x: split, y: T, width: W - R - split, height: H - T - B }));
    svg.append(svgEl('text', { x: split + 4, y: T + 12 }, 'optimization'));
  }
  svg.append(svgEl('text', { x: L + 4, y: T + 12 }, 'exploration'));
  for (let k = 0; k <= 4; k++) {
    const v = lo + (hi - lo) * k / 4;
    svg.append(svgEl('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(svgEl('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end' }, v.toFixed(3)));
  }
  svg.append(svgEl('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.append(svgEl('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }));
  const ticks = Math.min(n, 10);
  for (let k = 0; k < ticks; k++) {
    const i = Math.round((n - 1) * (ticks <= 1 ? 0 : k / (ticks - 1)));
    svg.append(svgEl('text', { x: x(i), y: H - B + 14, 'text-anchor': 'middle' }, i));
  }
  svg.append(svgEl('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, 'candidate'));
  let best = Infinity;
  const line = [];
  for (const p of pts) {
    best = Math.min(best, p.score);
    line.push((line.length ? 'L' : 'M') + x(p.candidate).toFixed(1) + ' ' + y(best).toFixed(1));
  }
  if (line.length) svg.append(svgEl('path', { class: 'bestline', d: line.join(' ') }));
  for (const p of pts) {
    const c = svgEl('circle', {
      class: 'pt' + (st.best && st.best.candidate === p.candidate ? ' best' : ''),
      cx: x(p.candidate), cy: y(p.score), r: 4, 'data-candidate': p.candidate,
    });
    c.append(svgEl('title', {}, '#' + p.candidate + ': ' + fmtScore(p.score)));
    c.addEventListener('click', () => openExchange(st.candidates.get(p.candidate)));
    svg.append(c);
  }
}

// The best architecture: nodes left to right (edges always go from a lower to a higher node),
// each edge an arc labelled with its cell type and operators.
function renderDag(st) {
  const svg = $('#dag');
  svg.replaceChildren();
  const a = st.bestArch;
  $('#dag-caption').textContent = st.best && a ? '#' + st.best.candidate : '';
  if (!a || !Array.isArray(a.edges)) {
    svg.append(svgEl('text', { x: 320, y: 150, 'text-anchor': 'middle' }, 'no evaluated candidate yet'));
    return;
  }
  const n = Math.max(a.nodes || 0, ...a.edges.map((e) => Math.max(e.from, e.to) + 1));
  const W = 640, H = 300, mid = H / 2;
  const x = (i) => 40 + (W - 80) * (n <= 1 ? 0.5 : i / (n - 1));
  const defs = svgEl('defs');
  const marker = svgEl('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' });
  marker.append(svgEl('path', { d: 'M0 0 L10 5 L0 10 z', fill: '#555' }));
  defs.append(marker);
  svg.append(defs);
  a.edges.forEach((e, k) => {
    const span = e.to - e.from;
    const up = k % 2 === 0 ? -1 : 1; // alternate sides so labels do not pile up
    const h = span === 1 && k % 2 === 0 ? 0 : up * Math.min(120, 30 + 30 * span);
    const x1 = x(e.from) + 16, x2 = x(e.to) - 16, cx = (x1 + x2) / 2;
    const d = 'M' + x1 + ' ' + mid + ' Q' + cx + ' ' + (mid + 2 * h) + ' ' + x2 + ' ' + mid;
    svg.append(svgEl('path', { class: 'edge' + (e.op === 'identity' ? ' identity' : ''), d, 'marker-end': 'url(#arrow)' }));
    const ops = [e.spatial, e.temporal].filter(Boolean).join(' / ');
    const ly = mid + h + (h <= 0 ? -4 : 12);
    svg.append(svgEl('text', { class: 'elabel', x: cx, y: ly, 'text-anchor': 'middle' }, e.op));
    if (ops) svg.append(svgEl('text', { class: 'elabel', x: cx, y: ly + (h <= 0 ? -11 : 11), 'text-anchor': 'middle' }, ops));
  });
  for (let i = 0; i < n; i++) {
    svg.append(svgEl('circle', { class: 'node', cx: x(i), cy: mid, r: 15 }));
    svg.append(svgEl('text', { x: x(i), y: mid + 4, 'text-anchor': 'middle' }, i));
  }
}

function renderTable(st, evaluated) {
  const filter = $('#filter').value;
  let rows = evaluated.concat(st.rejected);
  if (filter !== 'all') rows = rows.filter((r) => r.kind === filter);
  const { key, dir } = st.sort;
  rows.sort((a, b) => {
    const va = a[key], vb = b[key];
    if (va === vb) return 0;
    if (va === null || va === undefined) return 1; // blanks last either way
    if (vb === null || vb === undefined) return -1;
    return (va < vb ? -1 : 1) * dir;
  });
  for (const th of document.querySelectorAll('#candidates th')) {
    th.classList.toggle('asc', th.dataset.key === key && dir > 0);
    th.classList.toggle('desc', th.dataset.key === key && dir < 0);
  }
  const tb = $('#candidates tbody');
  tb.replaceChildren();
  for (const r of rows) {
    const tr = el('tr', { class: 'clickable kind-' + r.kind });
    if (r.candidate !== null) tr.dataset.candidate = r.candidate;
    if (r.reasoning) tr.title = r.reasoning; // the instructor's reasoning, on hover
    tr.append(el('td', {}, r.candidate === null ? '-' : '#' + r.candidate),
      el('td', {}, r.proposal === null || r.proposal === undefined ? '-' : r.proposal),
      el('td', {}, r.stage), el('td', {}, r.kind), el('td', {}, fmtScore(r.score)),
      el('td', {}, r.seconds === null ? '-' : Number(r.seconds).toFixed(2)),
      el('td', { class: 'reason' }, r.reason || ''));
    tr.addEventListener('click', () => openExchange(r));
    tb.append(tr);
  }
  $('#rows-count').textContent = rows.length + ' rows';
}

for (const th of document.querySelectorAll('#candidates th')) {
  th.addEventListener('click', () => {
    if (!current) return;
    const s = current.sort;
    s.dir = s.key === th.dataset.key ? -s.dir : 1;
    s.key = th.dataset.key;
    render();
  });
}
$('#filter').addEventListener('change', render);

function renderMetrics(summary) {
  const box = $('#metrics-box');
  const results = (summary && summary.final_results) || [];
  const tb = $('#metrics tbody');
  tb.replaceChildren();
  // Each final candidate's chosen seed, then (final.ensemble) the ensemble of its seeds.
  const tables = [];
  for (const fr of results) {
    const t = fr.report && fr.report.test;
    if (t) tables.push(['#' + fr.candidate, t]);
    const ens = fr.ensemble;
    if (ens && ens.test) {
      tables.push(['#' + fr.candidate + ' ensemble of ' + (ens.members || []).length, ens.test]);
    }
  }
  for (const [label, t] of tables) {
    const rows = (t.horizons || []).map(([h, s]) => ['@' + h, s]).concat([['avg', t.average]]);
    for (const [h, s] of rows) {
      const tr = el('tr');
      tr.append(el('td', {}, label), el('td', {}, h),
        el('td', {}, s.mae.toFixed(3)), el('td', {}, s.rmse.toFixed(3)), el('td', {}, s.mape.toFixed(2)));
      tb.append(tr);
    }
  }
  box.hidden = tb.children.length === 0;
}

// ---- a candidate's prompt and reply ------------------------------------------------------

async function openExchange(r) {
  if (!r || !current) return;
  const st = current;
  const dlg = $('#exchange');
  const body = $('#exchange-body');
  body.replaceChildren();
  $('#exchange-title').textContent = (r.candidate === null ? 'Proposal ' + r.proposal : 'Candidate #' + r.candidate);
  if (!dlg.open) dlg.showModal();
  if (r.reasoning) {
    body.append(el('div', { class: 'muted' }, 'Reasoning'), el('pre', { class: 'reasoning' }, r.reasoning));
  }
  let where = r.proposal === null || r.proposal === undefined ? null : { session: r.session, proposal: r.proposal };
  try {
    if (!where && r.candidate !== null) {
      // A failed candidate's event has no hash: look it up to find its proposal.
      const page = await api('/searches/' + encodeURIComponent(st.id) + '/candidates?offset=' + r.candidate + '&limit=1');
      const c = page.items.find((x) => x.candidate === r.candidate);
      where = c ? st.hashToProposal.get(c.hash) : null;
    }
    if (!where || !where.session) {
      body.append(el('p', { class: 'muted' }, 'No prompt is known for this candidate (e.g. resumed from an earlier run).'));
      return;
    }
    const ex = await api('/searches/' + encodeURIComponent(st.id) + '/exchanges/' + where.session + '/' + where.proposal);
    $('#exchange-title').textContent += ' - proposal ' + where.proposal + ' (session ' + where.session + ')';
    if (!ex.items.length) body.append(el('p', { class: 'muted' }, 'No prompt or reply was logged.'));
    for (const it of ex.items) {
      body.append(el('h4', {}, it.tag));
      body.append(el('div', { class: 'muted' }, 'Prompt'), el('pre', { class: 'prompt' }, it.prompt === null ? '(none)' : it.prompt));
      body.append(el('div', { class: 'muted' }, 'Reply'), el('pre', { class: 'reply' }, it.reply === null ? '(none)' : it.reply));
    }
  } catch (e) {
    body.append(el('p', { class: 'msg' }, e.message));
  }
}

$('#exchange-close').addEventListener('click', () => $('#exchange').close());

// ---- start -------------------------------------------------------------------------------

$('#auth-state').textContent = token ? 'signed in' : '';
refreshList();
setInterval(refreshList, 3000);
