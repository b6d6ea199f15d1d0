#!/usr/bin/env node
/*
 * Drives the Outpost web console (services/console/web/) in headless Chromium
 * for tests/integration/test_console_browser.py: opens the page, logs in
 * through its form, waits for the status to render, and writes what the
 * page shows (every data-testid element's text and data-value) as JSON.
 *
 *   node console_check.mjs --url http://127.0.0.1:PORT --out result.json
 *        [--action read|pause-click|pause-toggle|firmware]
 *        [--file bundle.raucb] [--search TEXT] [--screenshot page.png]
 *        [--viewport 1280x900] [--timeout 30000]
 *
 * The password comes from OUTPOST_CONSOLE_PASSWORD (not an argument, so
 * that it is not in the process list); OUTPOST_CONSOLE_URL may stand for
 * --url. Without a password the login form is left alone.
 *
 * Actions, after the login:
 *   read          nothing more (the default)
 *   pause-click   click the pause button once and wait for its text to
 *                 change ("Pause uploads" <-> "Resume uploads")
 *   pause-toggle  the same twice, back to where it started
 *   dest-pause:NAME  click destination NAME's own Pause/Resume button once
 *                 and wait for the page to show its other label
 *   shaping       submit the shaping form three times - a rate, nothing
 *                 (the page's own error), a rate again - and record after
 *                 each which of its two messages show ("shaping")
 *   studies       type --search TEXT into the study list's search box and
 *                 record the rows shown ("searched"); click the first
 *                 row's copy button and record what it copied ("copy");
 *                 follow the quarantine alarm's link and record the list
 *                 it leads to ("alarm_link")
 *
 * The result (--out) is written whatever happened to the login:
 *   {"logged_in": bool, "login_error": text|null, "banner": text|null,
 *    "status_visible": bool, "values": {testid: {"text", "value"}},
 *    "alarms": [...], "studies": [...], "errors": [...], "pause": [{before, after}...],
 *    "shaping": [{ok, error}: the messages' texts, null when hidden],
 *    "layout": {scroll_width, scroll_height, window_width, uid_cells: [{chars,
 *               clipped, text}]},
 *    "requests": [urls], "external_requests": [urls], "console_errors": [...],
 *    "page_errors": [uncaught exceptions in the page], "error": text|null}
 * Exit status: 0 when the run went through (the caller judges the result),
 * 1 on an error (message on stderr, result written as far as it got),
 * 2 on bad arguments.
 *
 * Chromium is /usr/bin/chromium (Debian's), started by playwright-core
 * with FLAGS below and a fresh profile directory (launchPersistentContext
 * passes it as --user-data-dir) that is removed at the end; playwright
 * adds what it needs to drive the browser (--remote-debugging-pipe and
 * its usual defaults). The browser is closed in a finally block, and on
 * SIGTERM/SIGINT by playwright's own handlers, so no browser process
 * outlives this script. (SIGKILL would: the browser leads its own process
 * group. The pytest sends SIGTERM first.)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const PAUSE_TEXTS = ['Pause uploads', 'Resume uploads'];

function usage(message) {
  process.stderr.write(`console_check: ${message}\n` +
    'usage: node console_check.mjs --url URL --out FILE [--action read|pause-click|pause-toggle|firmware]\n' +
    '       [--file BUNDLE] (for --action firmware)\n' +
    '       [--screenshot FILE] [--viewport WxH] [--timeout MS]   (password: $OUTPOST_CONSOLE_PASSWORD)\n');
  process.exit(2);
}

function options() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        url: { type: 'string', default: process.env.OUTPOST_CONSOLE_URL || '' },
        out: { type: 'string', default: '' },
        action: { type: 'string', default: 'read' },
        screenshot: { type: 'string', default: '' },
        file: { type: 'string', default: '' },
        search: { type: 'string', default: '' },
        viewport: { type: 'string', default: '1280x900' },
        timeout: { type: 'string', default: '30000' },
      },
    }).values;
  } catch (e) {
    usage(e.message);
  }
  if (!parsed.url) usage('--url (or OUTPOST_CONSOLE_URL) is required');
  if (!parsed.out) usage('--out is required');
  if (!['read', 'pause-click', 'pause-toggle', 'firmware', 'shaping', 'studies'].includes(parsed.action) &&
      !/^dest-pause:[A-Za-z0-9_-]+$/.test(parsed.action)) {
    usage(`unknown --action ${parsed.action}`);
  }
  if (parsed.action === 'firmware' && !parsed.file) usage('--action firmware needs --file');
  const m = /^(\d+)x(\d+)$/.exec(parsed.viewport);
  if (!m) usage(`--viewport ${parsed.viewport}: expected WIDTHxHEIGHT`);
  const timeout = Number(parsed.timeout);
  if (!Number.isInteger(timeout) || timeout <= 0) usage(`--timeout ${parsed.timeout}: expected ms`);
  return {
    ...parsed,
    url: parsed.url.replace(/\/+$/, ''),
    password: process.env.OUTPOST_CONSOLE_PASSWORD ?? null,
    viewport: { width: Number(m[1]), height: Number(m[2]) },
    timeout,
  };
}

/* What the page shows: text and data-value of every data-testid element. */
async function readPage(page) {
  return page.evaluate(() => {
    const shown = (e) => !!e && !e.closest('[hidden]');
    const text = (e) => (e ? e.textContent.replace(/\s+/g, ' ').trim() : null);
    const values = {};
    for (const e of document.querySelectorAll('[data-testid]')) {
      const id = e.getAttribute('data-testid');
      // Leaves only: not the sections around them, not the study rows.
      if (id in values || e.closest('tbody#studies') || e.querySelector('[data-testid]')) continue;
      values[id] = { text: text(e), value: e.hasAttribute('data-value') ? e.getAttribute('data-value') : null };
    }
    // The study list's UID cells: how many characters wide (in their own
    // font) and whether any of the UID is cut off.
    const uidCells = [...document.querySelectorAll('tbody#studies td.uid span')].map((s) => {
      const probe = document.createElement('span');
      probe.textContent = '0'.repeat(40);
      probe.style.visibility = 'hidden';
      probe.style.position = 'absolute';
      probe.style.whiteSpace = 'nowrap';
      s.parentElement.append(probe);
      const charWidth = probe.getBoundingClientRect().width / 40;
      probe.remove();
      return {
        chars: Math.floor(s.getBoundingClientRect().width / charWidth),
        clipped: s.scrollWidth > s.clientWidth + 1 || s.getBoundingClientRect().right > window.innerWidth,
        text: s.textContent,
      };
    });
    const status = document.querySelector('[data-testid="status"]');
    const loginError = document.querySelector('[data-testid="login-error"]');
    const banner = document.querySelector('[data-testid="banner"]');
    return {
      // A page wider than the window scrolls sideways: unusable on a phone.
      layout: {
        scroll_width: document.documentElement.scrollWidth,
        scroll_height: document.documentElement.scrollHeight,
        window_width: window.innerWidth,
        uid_cells: uidCells,
      },
      errors: [...document.querySelectorAll('[data-testid="last-errors"] li.item')].map((li) => ({
        study: li.getAttribute('data-study'),
        sop: li.getAttribute('data-sop'),
        text: text(li),
      })),
      retry_all_disabled: !!document.querySelector('[data-testid="retry-all-button"]')?.disabled,
      headline_state: document.querySelector('[data-testid="link-headline"]')?.getAttribute('data-state') ?? null,
      status_visible: shown(status),
      status_updated: status ? status.getAttribute('data-updated') : null,
      login_visible: shown(document.querySelector('[data-testid="login-form"]')),
      login_error: shown(loginError) ? text(loginError) : null,
      banner: shown(banner) ? text(banner) : null,
      values,
      alarms: [...document.querySelectorAll('[data-testid="alarms"] li.alarm')].map((li) => ({
        id: li.getAttribute('data-alarm'),
        severity: li.getAttribute('data-severity'),
        text: text(li),
      })),
      studies: [...document.querySelectorAll('[data-testid="study-row"]')].map((tr) => ({
        study_uid: tr.getAttribute('data-study'),
        cells: [...tr.children].map(text),
        retry_button: !!tr.querySelector('[data-testid="retry-study"]'),
      })),
      pause_button: text(document.querySelector('[data-testid="pause-button"]')),
    };
  });
}

const STATUS_SHOWN = '[data-testid="status"]:not([hidden])[data-updated]';
const LOGIN_SHOWN = '#login:not([hidden]) [data-testid="login-form"]';
const LOGIN_ERROR_SHOWN = '#login:not([hidden]) [data-testid="login-error"]:not([hidden])';
const BANNER_SHOWN = '[data-testid="banner"]:not([hidden])';

/* Waits for the first of several selectors; returns its index. */
async function firstOf(page, selectors, timeout) {
  const handle = await page.waitForFunction(
    (sels) => {
      const i = sels.findIndex((s) => document.querySelector(s));
      return i >= 0 ? i + 1 : 0;
    },
    selectors, { timeout, polling: 50 });
  return (await handle.jsonValue()) - 1;
}

/* Uploads a bundle through the firmware form; returns what the page says. */
async function uploadFirmware(page, file, timeout) {
  await page.setInputFiles('[data-testid="firmware-file"]', file);
  await page.click('[data-testid="firmware-upload"]');
  const shown = await firstOf(page, ['[data-testid="firmware-ok"]:not([hidden])',
    '[data-testid="firmware-error"]:not([hidden])'], timeout);
  const which = shown === 0 ? 'firmware-ok' : 'firmware-error';
  return { ok: shown === 0, text: (await page.textContent(`[data-testid="${which}"]`)).trim() };
}

/*
 * Submits the shaping form with rate (the schedule left empty) and waits
 * for the page's answer: one of its two messages shown, the form's
 * button free again. Returns the texts of both (null when hidden).
 */
async function submitShaping(page, rate, timeout) {
  const renders = await page.getAttribute('[data-testid="status"]', 'data-renders');
  await page.fill('[data-testid="shaping-rate"]', rate);
  await page.fill('[data-testid="shaping-schedule"]', '');
  await page.click('[data-testid="shaping-save"]');
  // A rate goes to the server (a new render follows); an empty form is
  // refused by the page at once.
  await page.waitForFunction(
    ([was, sent]) => {
      const s = document.querySelector('[data-testid="status"]');
      const shown = ['shaping-ok', 'shaping-error'].some((id) => !document.querySelector(`[data-testid="${id}"]`).hidden);
      return shown && (!sent || Number(s.getAttribute('data-renders')) > Number(was));
    },
    [renders, rate !== ''], { timeout, polling: 50 });
  return page.evaluate(() => {
    const get = (id) => {
      const e = document.querySelector(`[data-testid="${id}"]`);
      return e.hidden ? null : e.textContent.trim();
    };
    return { ok: get('shaping-ok'), error: get('shaping-error') };
  });
}

/* The study rows as shown, once the list shows state and search. */
async function studiesShown(page, state, search, timeout) {
  await page.waitForSelector(`tbody#studies[data-state="${state}"][data-search="${search}"]`,
    { timeout, state: 'attached' });
  return page.evaluate(() => ({
    state_filter: document.querySelector('[data-testid="queue-filter"]').value,
    search_box: document.querySelector('[data-testid="queue-search"]').value,
    in_view: (() => {
      const r = document.querySelector('[data-testid="studies-card"]').getBoundingClientRect();
      return r.top < window.innerHeight && r.bottom > 0;
    })(),
    studies: [...document.querySelectorAll('[data-testid="study-row"]')].map((tr) => ({
      study_uid: tr.getAttribute('data-study'),
      patient: tr.querySelector('[data-testid="study-patient"]')?.textContent ?? null,
      accession: tr.querySelector('[data-testid="study-accession"]')?.textContent ?? null,
      modalities: tr.querySelector('[data-testid="study-modalities"]')?.textContent ?? null,
      calling_aet: tr.querySelector('[data-testid="study-calling-aet"]')?.textContent ?? null,
      uid_shown: tr.querySelector('[data-testid="study-uid"]')?.textContent ?? null,
      copy_uid: tr.querySelector('[data-testid="copy-uid"]')?.getAttribute('data-uid') ?? null,
    })),
  }));
}

/* The studies action: the search box, a copy button, the alarm's link. */
async function studiesAction(page, origin, search, timeout) {
  const out = {};
  await page.fill('[data-testid="queue-search"]', search);
  await page.press('[data-testid="queue-search"]', 'Enter');
  out.searched = await studiesShown(page, '', search, timeout);
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  const copy = page.locator('[data-testid="copy-uid"]').first();
  await copy.click();
  await page.waitForSelector('[data-testid="copy-uid"][data-copied]', { timeout });
  out.copy = {
    uid: await copy.getAttribute('data-uid'),
    copied: await copy.getAttribute('data-copied'),
    clipboard: await page.evaluate(() => navigator.clipboard.readText()).catch((e) => `error: ${e.message}`),
  };
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.click('[data-testid="alarm-quarantine-link"]');
  out.alarm_link = await studiesShown(page, 'quarantined', '', timeout);
  return out;
}

/*
 * Clicks the pause button and waits for its text to flip, then for the
 * status rendered after the click (data-renders counts renders; the page
 * drops answers of polls that started before an action).
 */
async function clickPause(page, timeout) {
  const button = page.locator('[data-testid="pause-button"]');
  await page.waitForFunction(() => !document.querySelector('[data-testid="pause-button"]').disabled,
    null, { timeout });
  const before = (await button.textContent()).trim();
  if (!PAUSE_TEXTS.includes(before)) throw new Error(`pause button says "${before}"`);
  const expected = PAUSE_TEXTS[1 - PAUSE_TEXTS.indexOf(before)];
  const renders = await page.getAttribute('[data-testid="status"]', 'data-renders');
  await button.click();
  await page.waitForFunction(
    ([want, was]) => {
      const b = document.querySelector('[data-testid="pause-button"]');
      const s = document.querySelector('[data-testid="status"]');
      return b.textContent.trim() === want && !b.disabled &&
        Number(s.getAttribute('data-renders')) > Number(was);
    },
    [expected, renders], { timeout, polling: 50 });
  return { before, after: (await button.textContent()).trim() };
}

/* A destination's own button (data-testid dest-pause-NAME): click once,
 * wait until the re-rendered page shows the other label. */
async function clickDestinationPause(page, name, timeout) {
  const sel = `[data-testid="dest-pause-${name}"]`;
  await page.waitForSelector(sel, { timeout });
  const before = (await page.locator(sel).textContent()).trim();
  const renders = await page.getAttribute('[data-testid="status"]', 'data-renders');
  await page.click(sel);
  await page.waitForFunction(
    ([s, was, old]) => {
      const b = document.querySelector(s);
      const st = document.querySelector('[data-testid="status"]');
      return b && b.textContent.trim() !== old &&
        Number(st.getAttribute('data-renders')) > Number(was);
    },
    [sel, renders, before], { timeout, polling: 50 });
  return { before, after: (await page.locator(sel).textContent()).trim() };
}

async function main() {
  const opt = options();
  const origin = new URL(opt.url).origin;
  const result = {
    url: opt.url, action: opt.action, logged_in: false, login_error: null, banner: null,
    status_visible: false, values: {}, alarms: [], studies: [], errors: [], pause: [],
    shaping: [], firmware: null,
    requests: [], external_requests: [], console_errors: [], page_errors: [], error: null,
  };
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'outpost-console-chromium-'));
  let context = null;
  let closing = null; // the watchdog's close, awaited in the finally block
  // A watchdog: the run ends in time whatever hangs (closing the browser
  // makes every pending call fail).
  const watchdog = setTimeout(() => {
    result.error = `gave up after ${opt.timeout} ms`;
    if (context) closing = context.close().catch(() => {});
  }, opt.timeout);
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport: opt.viewport,
      timeout: opt.timeout,
    });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(opt.timeout);
    page.on('request', (r) => {
      const u = r.url();
      result.requests.push(`${r.method()} ${u}`);
      if (!u.startsWith(`${origin}/`) && u !== origin && !u.startsWith('data:') && u !== 'about:blank') {
        result.external_requests.push(u);
      }
    });
    page.on('console', (m) => {
      if (m.type() === 'error') result.console_errors.push(m.text());
    });
    page.on('pageerror', (e) => result.page_errors.push(e.message));

    await page.goto(`${opt.url}/`, { waitUntil: 'domcontentloaded' });
    // The page shows the status (a session), the login form (401) or a
    // banner (403: no password set).
    const shown = await firstOf(page, [STATUS_SHOWN, LOGIN_SHOWN, BANNER_SHOWN], opt.timeout);
    if (shown === 1 && opt.password !== null) {
      await page.fill('[data-testid="login-password"]', opt.password);
      await page.click('[data-testid="login-submit"]');
      await firstOf(page, [STATUS_SHOWN, LOGIN_ERROR_SHOWN], opt.timeout);
    }
    Object.assign(result, await readPage(page));
    result.logged_in = result.status_visible;

    if (result.logged_in && opt.action === 'firmware') {
      result.firmware = await uploadFirmware(page, opt.file, opt.timeout);
    } else if (result.logged_in && opt.action === 'shaping') {
      for (const rate of ['2Mbit', '', '3Mbit']) {
        result.shaping.push(await submitShaping(page, rate, opt.timeout));
      }
    } else if (result.logged_in && opt.action === 'studies') {
      Object.assign(result, await studiesAction(page, origin, opt.search, opt.timeout));
    } else if (result.logged_in && opt.action.startsWith('dest-pause:')) {
      result.pause.push(await clickDestinationPause(page, opt.action.slice(11), opt.timeout));
      await page.waitForSelector(STATUS_SHOWN);
      Object.assign(result, await readPage(page), { logged_in: true });
    } else if (result.logged_in && opt.action !== 'read') {
      result.pause.push(await clickPause(page, opt.timeout));
      if (opt.action === 'pause-toggle') result.pause.push(await clickPause(page, opt.timeout));
      // The status as it shows after the clicks.
      await page.waitForSelector(STATUS_SHOWN);
      Object.assign(result, await readPage(page), { logged_in: true });
    }
    if (opt.screenshot) {
      await page.screenshot({ path: opt.screenshot, fullPage: true });
      result.screenshot = opt.screenshot;
    }
  } catch (e) {
    result.error = result.error || String((e && e.stack) || e);
  } finally {
    clearTimeout(watchdog);
    if (closing) await closing;
    if (context) await context.close().catch(() => {});
    fs.writeFileSync(opt.out, `${JSON.stringify(result, null, 2)}\n`);
    // Chromium may still be flushing the profile as it exits: retry.
    try {
      fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    } catch (e) {
      process.stderr.write(`console_check: cannot remove ${profile}: ${e.message}\n`);
      process.exitCode = 1;
    }
  }
  if (result.error) {
    process.stderr.write(`console_check: ${result.error}\n`);
    process.exitCode = 1;
  }
}

await main();
