/*
 * The Outpost web console: polls GET /api/status every 5 s and the study
 * list with it, and drives the operator actions of docs/API.md (pause,
 * retry, shaping, test link, firmware upload). Plain ES2020, no library.
 *
 * Every piece of data from the server goes into the page through
 * textContent or an attribute, never through innerHTML: a study's error
 * text or a patient ID is data, not markup.
 */
'use strict';

const POLL_MS = 5000;
const PER_PAGE = 50;
// A phone shows each study as a block of lines: fewer a page keeps the
// page a few screens tall (issue 16: 50 were 18 000 px).
const PER_PAGE_PHONE = 10;
const PHONE = '(max-width: 699px)';
const STATES = ['queued', 'sending', 'sent', 'quarantined'];

const $ = (id) => document.getElementById(id);
const byTest = (id) => document.querySelector(`[data-testid="${id}"]`);

const ui = {
  pollTimer: null,
  round: 0, // the newest refresh(): only its answer is shown
  renders: 0, // rounds shown so far (data-renders: tests wait on it)
  loggedOut: false, // a 401 seen: no polling until a login succeeds
  paused: null, // link.paused_by_operator as last known
  queue: { state: '', search: '', page: 1, total: 0 },
  queueSeq: 0, // the newest loadQueue(): only its answer is shown
  searchTimer: null,
  tz: null, // the box's time zone (status.timezone): every time is shown in it
};

function perPage() {
  return window.matchMedia(PHONE).matches ? PER_PAGE_PHONE : PER_PAGE;
}

/* --- the API ------------------------------------------------------------ */

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/*
 * One API call. The X-Outpost-Request header is the console's CSRF defence:
 * a page of another site cannot send it, so the server takes a request
 * that changes something only with it; the session is the cookie. A 401
 * on anything but the login itself shows the login form.
 */
async function api(method, path, body, timeoutMs = 15000) {
  const init = {
    method,
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { 'X-Outpost-Request': '1', Accept: 'application/json' },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const abort = new AbortController();
  init.signal = abort.signal;
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let res;
  let text;
  try {
    res = await fetch(path, init);
    text = await res.text();
  } catch (e) {
    const why = e.name === 'AbortError' ? `no answer in ${timeoutMs / 1000} s` : e.message;
    throw new ApiError(0, `cannot reach the appliance (${why})`);
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (res.ok) return data;
  const message = data && typeof data.error === 'string' ? data.error : `HTTP ${res.status}`;
  if (res.status === 401 && path !== '/api/login') showLogin();
  throw new ApiError(res.status, message);
}

/* --- formatting ---------------------------------------------------------- */

/* "1 study", "2 studies". */
function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function fmtInt(n) {
  return n === null || n === undefined ? '—' : String(n);
}

function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

function fmtRate(bits) {
  if (bits === null || bits === undefined) return 'unlimited';
  if (bits === 0) return '0 (uploads paused)';
  const units = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s'];
  let v = bits;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toFixed(2))} ${units[i]}`;
}

function fmtAge(s) {
  if (s === null || s === undefined) return '—';
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/* "+01:00" -> 60; null when it is not one. */
function parseOffset(text) {
  const m = /^([+-])(\d\d):(\d\d)$/.exec(text || '');
  return m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : null;
}

function fmtOffset(min) {
  const p = (x) => String(x).padStart(2, '0');
  const a = Math.abs(min);
  return `${min < 0 ? '-' : '+'}${p(Math.floor(a / 60))}:${p(a % 60)}`;
}

/* The box's offset from UTC at moment d, in minutes: from its zone's name
   when the browser knows it (DST included), else the offset it has now. */
function boxOffset(d) {
  const tz = ui.tz || {};
  if (tz.name) {
    try {
      const f = new Intl.DateTimeFormat('en-US', {
        timeZone: tz.name, hourCycle: 'h23', year: 'numeric', month: '2-digit',
        day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
      });
      const v = Object.fromEntries(f.formatToParts(d).map((x) => [x.type, x.value]));
      const wall = Date.UTC(Number(v.year), Number(v.month) - 1, Number(v.day),
        Number(v.hour) % 24, Number(v.minute), Number(v.second));
      return Math.round((wall - Math.floor(d.getTime() / 1000) * 1000) / 60000);
    } catch (e) {
      /* A zone this browser does not know: the offset below. */
    }
  }
  const now = parseOffset(tz.utc_offset);
  return now === null ? 0 : now;
}

/* A moment in the box's time zone, with the zone: "2026-11-30 14:41:07 CET". */
function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const tz = ui.tz || {};
  const off = boxOffset(d);
  const s = new Date(d.getTime() + off * 60000);
  const p = (x) => String(x).padStart(2, '0');
  const zone = tz.abbreviation && off === parseOffset(tz.utc_offset) ? tz.abbreviation
    : off === 0 ? 'UTC' : `UTC${fmtOffset(off)}`;
  return `${s.getUTCFullYear()}-${p(s.getUTCMonth() + 1)}-${p(s.getUTCDate())} ` +
    `${p(s.getUTCHours())}:${p(s.getUTCMinutes())}:${p(s.getUTCSeconds())} ${zone}`;
}

/* Sets an element's text, and its exact value (a number; '' when the
   server gave none) in data-value when the element carries one. */
function put(testid, text, value) {
  const e = byTest(testid);
  if (!e) return;
  e.textContent = text;
  if (value !== undefined || e.hasAttribute('data-value')) {
    e.dataset.value = value === null || value === undefined ? '' : String(value);
  }
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'title' || k === 'type') {
      e.setAttribute(k, v);
    }
    else e[k] = v;
  }
  for (const c of children) e.append(c === null || c === undefined ? '' : c);
  return e;
}

function showMessage(id, text) {
  const e = $(id);
  e.textContent = text || '';
  e.hidden = !text;
}

/* --- login --------------------------------------------------------------- */

function showLogin() {
  ui.loggedOut = true;
  stopPolling();
  $('app').hidden = true;
  $('meta').hidden = true;
  $('logout').hidden = true;
  showMessage('banner', '');
  $('login').hidden = false;
  $('password').focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  const form = $('login-form');
  const password = $('password').value;
  showMessage('login-error', '');
  form.querySelector('button').disabled = true;
  try {
    await api('POST', '/api/login', { password });
    $('password').value = '';
    $('login').hidden = true;
    ui.loggedOut = false;
    await refresh();
  } catch (e) {
    showMessage('login-error', e.status === 401 ? 'Wrong password.' : e.message);
  } finally {
    form.querySelector('button').disabled = false;
  }
}

async function onLogout() {
  try {
    await api('POST', '/api/logout', {});
  } catch (e) {
    /* The session is gone either way once the form shows. */
  }
  showLogin();
}

/* --- status -------------------------------------------------------------- */

/*
 * One link's headline: what moves and why, as the server words it
 * (console/headline.c), so the console and outpostctl say the same. One
 * link (the cloud) today; a box with several destinations calls this once
 * per link.
 */
function renderHeadline(e, link) {
  const h = link.headline || {};
  e.textContent = h.text || link.state || '—';
  e.dataset.state = h.state || '';
  e.dataset.pausedBy = h.paused_by || '';
}

/*
 * With destinations besides the cloud, one line each: its name, its
 * headline, and a Pause or Resume of that destination alone (the button
 * below the list pauses or resumes them all).
 */
function renderDestinations(list) {
  const ul = $('destinations');
  ul.hidden = list.length < 2;
  if (ul.hidden) {
    ul.replaceChildren();
    return;
  }
  ul.replaceChildren(...list.map((d) => {
    const link = d.link || {};
    const paused = !!link.paused_by_operator;
    const line = el('span', { class: 'headline', 'data-testid': `dest-headline-${d.name}` });
    renderHeadline(line, link);
    const b = el('button', { type: 'button', 'data-testid': `dest-pause-${d.name}`,
      'data-paused': String(paused) }, paused ? `Resume ${d.name}` : `Pause ${d.name}`);
    b.addEventListener('click', () => onPauseDestination(d.name, paused, b));
    return el('li', { 'data-destination': d.name, 'data-type': d.type || '' },
      el('span', { class: 'link-name' }, `${d.name}:`), line,
      el('span', { class: 'muted' }, `(${d.type === 'dicom' ? 'DICOM' : 'STOW-RS'} ${d.peer || ''})`), b);
  }));
}

async function onPauseDestination(name, paused, b) {
  holdPolling();
  b.disabled = true;
  showMessage('link-error', '');
  try {
    await api('POST', paused ? '/api/resume' : '/api/pause', { destination: name });
  } catch (e) {
    if (e.status !== 401) showMessage('link-error', e.message);
  }
  await refresh();
}

function renderStatus(s) {
  const tz = s.timezone || {};
  ui.tz = tz;
  put('version', s.version);
  put('uptime', fmtAge(s.uptime), s.uptime);
  put('updated', fmtTime(s.time));
  put('timezone', [tz.abbreviation, tz.utc_offset ? `UTC${tz.utc_offset}` : '', tz.name]
    .filter((x, i, a) => x && a.indexOf(x) === i).join(', ') || 'UTC');

  const link = s.link || {};
  renderHeadline(byTest('link-headline'), link);
  renderDestinations(s.destinations || []);
  const state = byTest('link-state');
  state.textContent = link.state || '—';
  state.dataset.state = link.state || '';
  put('link-since', fmtTime(link.since));
  put('link-reason', link.reason || '—');
  renderPause(!!link.paused_by_operator);

  const rate = s.rate || {};
  put('rate-current', fmtRate(rate.current), rate.current);
  put('rate-configured', fmtRate(rate.configured), rate.configured);
  put('rate-schedule', rate.schedule || '—');
  const source = (x) => (x === 'console' ? 'the console' : 'the configuration file');
  put('rate-source', rate.schedule_source && rate.schedule_source !== rate.source
    ? `rate: ${source(rate.source)}; schedule: ${source(rate.schedule_source)}` : source(rate.source));
  $('rate').placeholder = rate.source === 'console' && rate.configured !== null
    ? `now ${fmtRate(rate.configured)}` : '';
  $('schedule').placeholder = rate.schedule || '';

  const q = s.queue || {};
  for (const st of STATES) {
    const row = q[st] || {};
    put(`queue-${st}-instances`, fmtInt(row.instances), row.instances);
    put(`queue-${st}-bytes`, fmtBytes(row.bytes), row.bytes);
  }
  put('oldest-queued', fmtAge(q.oldest_queued_age), q.oldest_queued_age);
  put('studies-queued', fmtInt(q.studies_queued), q.studies_queued);
  put('last-upload', link.last_upload_age === null || link.last_upload_age === undefined
    ? 'none since the uplink started' : `${fmtAge(link.last_upload_age)} ago`, link.last_upload_age);
  const waiting = ((q.queued || {}).instances || 0) + ((q.sending || {}).instances || 0);
  let clears = 'nothing waiting';
  if (waiting && (q.clears_in === null || q.clears_in === undefined)) {
    clears = 'not at the current rate: nothing is being sent';
  } else if (waiting) {
    clears = `in about ${fmtAge(q.clears_in)} at the current rate`;
  }
  put('clears-in', clears, waiting ? q.clears_in : 0);
  // Storage commitment reports a modality still waits for.
  const cm = s.commitments || {};
  put('commitments-pending',
      cm.pending ? `${fmtInt(cm.pending)}, the oldest ${fmtAge(cm.oldest_age)} old` : 'none',
      cm.pending || 0);
  // Nothing quarantined: nothing to retry.
  $('retry-all').disabled = !((q.quarantined || {}).instances > 0);

  const d = s.disk || {};
  put('disk-free', fmtBytes(d.free), d.free);
  put('disk-total', fmtBytes(d.total), d.total);
  put('disk-spool', fmtBytes(d.spool_bytes), d.spool_bytes);
  put('disk-max', d.max_bytes ? fmtBytes(d.max_bytes) : 'no limit', d.max_bytes);
  put('disk-min-free', fmtBytes(d.min_free_bytes), d.min_free_bytes);
  const used = d.total ? Math.min(100, Math.max(0, 100 * (1 - d.free / d.total))) : 0;
  const bar = $('disk-bar');
  bar.style.width = `${used.toFixed(1)}%`;
  bar.className = d.free !== undefined && d.free <= (d.min_free_bytes || 0) * 2 ? 'low' : '';

  const c = s.counters || {};
  put('counter-received', fmtInt(c.received_instances), c.received_instances);
  put('counter-uploaded', fmtInt(c.uploaded_instances), c.uploaded_instances);
  put('counter-uploaded-bytes', fmtBytes(c.uploaded_bytes), c.uploaded_bytes);
  put('counter-retries', fmtInt(c.retries), c.retries);
  put('counter-quarantined', fmtInt(c.quarantined), c.quarantined);

  renderFirmware(s.firmware || {});
  renderAlarms(s.alarms || []);
  renderErrors(s.last_errors || []);
  renderChart((s.throughput && s.throughput.bytes) || [], (s.throughput && s.throughput.interval) || 60);

  $('meta').hidden = false;
  $('logout').hidden = false;
  $('app').hidden = false;
}

/* The health gate's records (docs/updates.md); none off the appliance. */
function renderFirmware(fw) {
  const booted = fw.booted || {};
  put('firmware-version', booted.version || '—');
  put('firmware-slot', booted.slot || '—');
  const last = fw.last_update;
  let text = 'none';
  if (last) {
    text = `${last.result || '?'}${last.version ? ` ${last.version}` : ''}`;
    if (last.progress) text += `: ${last.progress}`;
    if (last.reason) text += ` (${last.reason})`;
    if (last.time) text += `, ${fmtTime(last.time)}`;
  }
  put('firmware-last', text, last ? last.result : '');
  // The data partition (issue 15): none off the appliance.
  const enc = fw.encryption;
  let disk = '—';
  if (enc) {
    disk = enc.encrypted === 'yes' ? 'encrypted (LUKS2, key sealed to the TPM)'
      : `NOT encrypted${enc.reason ? `: ${enc.reason}` : ''}`;
    if (enc.receiving !== 'yes') {
      disk += '; not receiving until the site file allows it ([security] allow_unencrypted)';
    }
  }
  put('firmware-encryption', disk, enc ? enc.encrypted : '');
}

function renderPause(paused) {
  ui.paused = paused;
  const b = $('pause');
  b.textContent = paused ? 'Resume uploads' : 'Pause uploads';
  b.dataset.paused = String(paused);
  b.classList.toggle('resume', paused);
  b.disabled = false;
}

function renderAlarms(alarms) {
  const ul = $('alarms');
  ul.replaceChildren();
  ul.dataset.count = String(alarms.length);
  if (!alarms.length) {
    ul.append(el('li', { class: 'none' }, 'No alarms.'));
    return;
  }
  for (const a of alarms) {
    const sev = a.severity === 'error' ? 'error' : 'warning';
    const li = el('li', { class: `alarm ${sev}`, 'data-alarm': a.id || '', 'data-severity': sev },
      el('span', { class: 'sev' }, sev), ' ', a.message || a.id || '');
    // The quarantine alarm leads to the studies it is about.
    if (a.id === 'quarantine') {
      const link = el('a', { href: '#studies-card', 'data-testid': 'alarm-quarantine-link' },
        'Show the quarantined studies');
      link.addEventListener('click', (ev) => {
        ev.preventDefault();
        showStudies('quarantined');
      });
      li.append(' ', link);
    }
    ul.append(li);
  }
}

/* The last errors, newest first, each with the study and instance it is
   about (none for the link's own). */
function renderErrors(errors) {
  const ul = $('errors');
  ul.replaceChildren();
  ul.dataset.count = String(errors.length);
  if (!errors.length) {
    ul.append(el('li', { class: 'none' }, 'None.'));
    return;
  }
  for (const e of errors) {
    const li = el('li', { class: 'item', 'data-study': e.study_uid || '', 'data-sop': e.sop_uid || '' },
      el('span', { class: 'when' }, fmtTime(e.time)), ' ', el('b', {}, e.event || ''), ' ',
      e.message || '');
    if (e.study_uid) li.append(el('div', { class: 'uid' }, `Study ${e.study_uid}`));
    if (e.sop_uid) li.append(el('div', { class: 'uid' }, `Instance ${e.sop_uid}`));
    ul.append(li);
  }
}

function renderChart(bytes, interval) {
  const svg = $('chart');
  const NS = 'http://www.w3.org/2000/svg';
  const W = 600;
  const H = 120;
  svg.replaceChildren();
  const n = Math.max(bytes.length, 1);
  const max = Math.max(1, ...bytes);
  const step = W / n;
  bytes.forEach((b, i) => {
    const h = b > 0 ? Math.max(1, (b / max) * (H - 4)) : 0;
    const r = document.createElementNS(NS, 'rect');
    r.setAttribute('x', (i * step + step * 0.1).toFixed(2));
    r.setAttribute('y', (H - h).toFixed(2));
    r.setAttribute('width', (step * 0.8).toFixed(2));
    r.setAttribute('height', h.toFixed(2));
    r.setAttribute('data-value', String(b));
    const t = document.createElementNS(NS, 'title');
    t.textContent = `${n - i} min ago: ${fmtBytes(b)}`;
    r.append(t);
    svg.append(r);
  });
  const base = document.createElementNS(NS, 'line');
  base.setAttribute('x1', '0');
  base.setAttribute('x2', String(W));
  base.setAttribute('y1', String(H - 0.5));
  base.setAttribute('y2', String(H - 0.5));
  base.setAttribute('class', 'base');
  svg.append(base);
  const total = bytes.reduce((a, b) => a + b, 0);
  const peak = Math.max(0, ...bytes);
  put('throughput-total', total
    ? `${fmtBytes(total)} in all; busiest minute ${fmtRate(Math.round((peak * 8) / interval))}`
    : 'nothing sent', total);
}

/* --- studies ------------------------------------------------------------- */

/* The study list filtered to a state (the search cleared), in view. */
function showStudies(state) {
  ui.queue.state = state;
  ui.queue.search = '';
  ui.queue.page = 1;
  $('queue-state').value = state;
  $('queue-search').value = '';
  $('studies-card').scrollIntoView({ block: 'start' });
  loadQueue();
}

/* A person name as DICOM holds it ("DOE^JOHN^^DR", alphabetic group
   first) as people write it: "DOE, JOHN DR". */
function fmtName(pn) {
  const parts = String(pn || '').split('=')[0].split('^').map((x) => x.trim());
  const given = parts.slice(1).filter((x) => x).join(' ');
  return parts[0] && given ? `${parts[0]}, ${given}` : parts[0] || given;
}

/* "20261127" -> "2026-11-27"; anything else as it is. */
function fmtDate(d) {
  const m = /^(\d{4})(\d\d)(\d\d)$/.exec(d || '');
  return m ? `${m[1]}-${m[2]}-${m[3]}` : d || '';
}

/* A UID short enough for a table ("1.2.826.…5.6.7.8"), the whole in the title. */
function shortUid(uid) {
  const u = uid || '';
  return u.length > 20 ? `${u.slice(0, 8)}…${u.slice(-8)}` : u;
}

/* Copies text; the clipboard API needs a secure context (HTTPS or
   localhost), else the selection of a hidden text area is copied. */
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = el('textarea', { class: 'offscreen', readOnly: true });
  area.value = text;
  document.body.append(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  if (!ok) throw new Error('the browser refused to copy');
}

function copyButton(uid) {
  const b = el('button', { type: 'button', class: 'small copy', 'data-testid': 'copy-uid',
    'data-uid': uid, title: 'Copy the whole UID', 'aria-label': 'Copy the study UID' }, 'Copy');
  b.addEventListener('click', async () => {
    try {
      await copyText(uid);
      b.textContent = 'Copied';
      b.dataset.copied = 'true';
    } catch (e) {
      b.textContent = 'Copy failed';
      b.dataset.copied = 'false';
    }
    setTimeout(() => { b.textContent = 'Copy'; }, 2000);
  });
  return b;
}

function renderQueue(r) {
  ui.queue.total = r.total || 0;
  // What the rows shown are of (tests wait on these).
  $('studies').dataset.state = ui.queue.state;
  $('studies').dataset.search = ui.queue.search;
  const pages = Math.max(1, Math.ceil(ui.queue.total / (r.per_page || perPage())));
  put('queue-page', `page ${r.page || ui.queue.page} of ${pages} (${plural(ui.queue.total, 'study', 'studies')})`,
    ui.queue.total);
  $('prev').disabled = ui.queue.page <= 1;
  $('next').disabled = ui.queue.page >= pages;
  const tbody = $('studies');
  tbody.replaceChildren();
  if (!r.studies || !r.studies.length) {
    const none = ui.queue.search ? 'No studies match the search.' : 'No studies.';
    tbody.append(el('tr', {}, el('td', { colSpan: 15, class: 'none' }, none)));
    return;
  }
  for (const st of r.studies) {
    const states = st.states || {};
    const summary = STATES.filter((k) => states[k]).map((k) => `${k} ${states[k]}`).join(' · ');
    let action = '';
    if (states.quarantined) {
      const b = el('button', { type: 'button', class: 'small', 'data-testid': 'retry-study' }, 'Retry');
      b.addEventListener('click', () => retry({ study: st.study_uid }, b));
      action = b;
    }
    const mods = (st.modalities || st.modality || '').split('\\').filter((x) => x).join(', ');
    tbody.append(el('tr', { 'data-testid': 'study-row', 'data-study': st.study_uid || '' },
      el('td', { 'data-label': 'Patient', 'data-testid': 'study-patient', title: st.patient_name || '' },
        fmtName(st.patient_name)),
      el('td', { 'data-label': 'Patient ID' }, st.patient_id),
      el('td', { 'data-label': 'Accession', 'data-testid': 'study-accession' }, st.accession_number),
      el('td', { class: 'nowrap', 'data-label': 'Study date' }, fmtDate(st.study_date)),
      el('td', { 'data-label': 'Description' }, st.study_description),
      el('td', { 'data-label': 'Modalities', 'data-testid': 'study-modalities' }, mods),
      el('td', { 'data-label': 'From (AE)', 'data-testid': 'study-calling-aet' }, st.calling_aet),
      // The UID shortened, the whole in the title and on the clipboard.
      el('td', { class: 'uid', 'data-label': 'Study UID', title: st.study_uid || '' },
        el('span', { 'data-testid': 'study-uid' }, shortUid(st.study_uid)), ' ',
        copyButton(st.study_uid || '')),
      el('td', { class: 'num', 'data-label': 'Instances' }, fmtInt(st.instances)),
      el('td', { 'data-label': 'States' }, summary || '—'),
      el('td', { class: 'num', 'data-label': 'Attempts' }, fmtInt(st.attempts)),
      el('td', { class: 'err', 'data-label': 'Last error' }, st.last_error || ''),
      el('td', { 'data-label': 'Urgent' }, st.urgent ? el('span', { class: 'badge' }, 'urgent') : ''),
      el('td', { class: 'nowrap', 'data-label': 'Received' }, fmtTime(st.received_at)),
      el('td', {}, action)));
  }
}

/* The study list; `current` says whether its answer is still wanted. */
async function loadQueue(current = () => true) {
  const seq = ++ui.queueSeq;
  const q = new URLSearchParams({ page: String(ui.queue.page), per_page: String(perPage()) });
  if (ui.queue.state) q.set('state', ui.queue.state);
  if (ui.queue.search) q.set('search', ui.queue.search);
  try {
    const r = await api('GET', `/api/queue?${q}`);
    if (!current() || seq !== ui.queueSeq) return;
    renderQueue(r);
    showMessage('queue-error', '');
  } catch (e) {
    if (e.status !== 401 && current() && seq === ui.queueSeq) showMessage('queue-error', e.message);
  }
}

async function retry(body, button) {
  holdPolling();
  if (button) button.disabled = true;
  try {
    const r = await api('POST', '/api/retry', body);
    showMessage('queue-error', '');
    flash(`${plural(r.requeued, 'instance', 'instances')} back in the queue.`);
  } catch (e) {
    if (e.status !== 401) showMessage('queue-error', e.message);
  } finally {
    if (button) button.disabled = false;
  }
  await refresh();
}

/* --- actions --------------------------------------------------------------- */

function flash(text) {
  const b = $('banner');
  b.className = 'banner info';
  showMessage('banner', text);
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => showMessage('banner', ''), 4000);
}

async function onPause() {
  const b = $('pause');
  const path = ui.paused ? '/api/resume' : '/api/pause';
  holdPolling();
  b.disabled = true;
  showMessage('link-error', '');
  try {
    const r = await api('POST', path, {});
    renderPause(!!r.paused);
  } catch (e) {
    if (e.status !== 401) showMessage('link-error', e.message);
    b.disabled = false;
  }
  await refresh();
}

async function onTestLink() {
  const b = $('test-link');
  const ol = $('test-steps');
  b.disabled = true;
  b.textContent = 'Testing…';
  showMessage('link-error', '');
  ol.replaceChildren();
  ol.hidden = true;
  try {
    const r = await api('POST', '/api/test-link', {}, 180000);
    const reports = r.destinations || [r];
    for (const [dest, s] of reports.flatMap((x) => (x.steps || []).map((s) => [x.destination, s]))) {
      ol.append(el('li', { class: s.ok ? 'ok' : 'failed', 'data-step': s.step || '', 'data-ok': String(!!s.ok) },
        el('b', {}, (reports.length > 1 ? `${dest}: ` : '') + (s.step || '')), ' ',
        el('span', { class: 'verdict' }, s.ok ? 'ok' : 'failed'), ' ',
        el('span', { class: 'ms' }, `${fmtInt(s.ms)} ms`), ' ',
        el('span', { class: 'detail' }, s.detail || '')));
    }
    ol.dataset.ok = String(!!r.ok);
    ol.hidden = false;
  } catch (e) {
    if (e.status !== 401) showMessage('link-error', e.message);
  } finally {
    b.disabled = false;
    b.textContent = 'Test link';
  }
}

/* The shaping form's outcome: only the latest shows, success or error. */
function shapingOutcome(ok, text) {
  showMessage('shaping-ok', ok ? text : '');
  showMessage('shaping-error', ok ? '' : text);
}

async function putShaping(body) {
  holdPolling();
  shapingOutcome(true, '');
  try {
    const r = await api('PUT', '/api/shaping', body);
    shapingOutcome(true, `Applied: now ${fmtRate(r && r.current)}` +
      (r && r.schedule ? `, schedule ${r.schedule}` : ''));
    $('rate').value = '';
    $('schedule').value = '';
  } catch (e) {
    if (e.status !== 401) shapingOutcome(false, e.message);
  }
  await refresh();
}

function onShaping(ev) {
  ev.preventDefault();
  const body = {};
  const rate = $('rate').value.trim();
  const schedule = $('schedule').value.trim();
  if (rate) body.rate = rate;
  if (schedule) body.schedule = schedule;
  if (!Object.keys(body).length) {
    shapingOutcome(false, 'Enter a rate, a schedule or both.');
    return;
  }
  putShaping(body);
}

/*
 * PUT /api/firmware with the chosen file as the body. XMLHttpRequest, not
 * fetch: it reports the upload's progress. The installation's own
 * progress then shows in the status (Last update).
 */
function onFirmware(ev) {
  ev.preventDefault();
  const file = $('bundle').files[0];
  showMessage('firmware-error', '');
  showMessage('firmware-ok', '');
  if (!file) {
    showMessage('firmware-error', 'Choose a bundle file (.raucb) first.');
    return;
  }
  const bar = $('firmware-progress');
  const button = $('firmware-upload');
  const xhr = new XMLHttpRequest();
  xhr.open('PUT', '/api/firmware');
  xhr.setRequestHeader('X-Outpost-Request', '1');
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total;
  };
  const done = (ok, text) => {
    bar.hidden = true;
    button.disabled = false;
    showMessage(ok ? 'firmware-ok' : 'firmware-error', text);
    refresh();
  };
  xhr.onload = () => {
    let data = null;
    try {
      data = JSON.parse(xhr.responseText);
    } catch (e) {
      data = null;
    }
    if (xhr.status === 202 && data) {
      $('bundle').value = '';
      done(true, `Uploaded ${fmtBytes(data.bytes)} (SHA-256 ${data.sha256}). ` +
        'Installing: the appliance restarts into the new firmware when it is written.');
    } else {
      if (xhr.status === 401) showLogin();
      done(false, data && typeof data.error === 'string' ? data.error : `HTTP ${xhr.status}`);
    }
  };
  xhr.onerror = () => done(false, 'the upload did not reach the appliance');
  bar.value = 0;
  bar.hidden = false;
  button.disabled = true;
  xhr.send(file);
}

/* --- polling --------------------------------------------------------------- */

function stopPolling() {
  clearTimeout(ui.pollTimer);
  ui.pollTimer = null;
}

/*
 * Before an action (pause, retry, shaping): no poll starts while it runs,
 * and the answer of one already in flight is dropped, since it may predate
 * the action. The action ends with a refresh() of its own.
 */
function holdPolling() {
  stopPolling();
  ui.round++;
}

/* One round: the status, then the studies; the next round in POLL_MS. */
async function refresh() {
  if (ui.loggedOut) return;
  const round = ++ui.round;
  const current = () => round === ui.round && !ui.loggedOut;
  stopPolling();
  try {
    const s = await api('GET', '/api/status');
    if (!current()) return;
    if ($('banner').classList.contains('error')) showMessage('banner', '');
    renderStatus(s);
    await loadQueue(current);
    if (!current()) return;
    // A round is shown whole (status and studies): tests wait on these.
    $('app').dataset.updated = s.time || String(Date.now());
    $('app').dataset.renders = String(++ui.renders);
  } catch (e) {
    if (e.status === 401 || !current()) return; // the login form is up, or a newer round runs
    const b = $('banner');
    b.className = 'banner error';
    showMessage('banner', e.message);
    if (e.status === 403) {
      // No console password is set: there is nothing to log in to.
      $('app').hidden = true;
      $('login').hidden = true;
    }
  }
  if (current() && document.visibilityState !== 'hidden') {
    ui.pollTimer = setTimeout(refresh, POLL_MS);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', onLogout);
  $('pause').addEventListener('click', onPause);
  $('test-link').addEventListener('click', onTestLink);
  $('shaping').addEventListener('submit', onShaping);
  $('firmware').addEventListener('submit', onFirmware);
  $('shaping-reset').addEventListener('click', () => putShaping({ rate: null, schedule: null }));
  $('retry-all').addEventListener('click', (ev) => retry({ all: true }, ev.currentTarget));
  $('queue-state').addEventListener('change', (ev) => {
    ui.queue.state = ev.target.value;
    ui.queue.page = 1;
    loadQueue();
  });
  // Searching as one types, once typing pauses; Enter searches at once.
  const search = () => {
    clearTimeout(ui.searchTimer);
    const text = $('queue-search').value.trim();
    if (text === ui.queue.search) return;
    ui.queue.search = text;
    ui.queue.page = 1;
    loadQueue();
  };
  $('queue-search').addEventListener('input', () => {
    clearTimeout(ui.searchTimer);
    ui.searchTimer = setTimeout(search, 300);
  });
  $('queue-search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    search();
  });
  $('prev').addEventListener('click', () => {
    ui.queue.page = Math.max(1, ui.queue.page - 1);
    loadQueue();
  });
  $('next').addEventListener('click', () => {
    ui.queue.page += 1;
    loadQueue();
  });
  // A phone's hidden tab need not poll; catch up when it shows again.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && !ui.loggedOut) refresh();
    else stopPolling();
  });
  refresh();
});
