// scripts/inspect-ui/test.mjs: drives the agent's inspection page in headless Chromium.
// scripts/inspect-ui/test.sh starts the relay, the upstream and the agent and runs this with:
//
//	API_URL      the agent's local API, e.g. http://127.0.0.1:7040
//	PUBLIC_URL   the tunnel's https URL, e.g. https://inspect-ui.localhost:7443
//	CA_FILE      the dev relay's CA (PEM), for curl
//	CONTROL_URL  the upstream's control address (GET /stats)
//	UP_ADDR      the upstream's address (as the tunnel header shows it)
//	CHROMIUM     the browser (default /usr/bin/chromium)
//	PROFILE_DIR  a fresh Chromium user data dir
//	OUT_DIR      where screenshots go
//	TMP_DIR      a scratch directory
//	LOG_DIR      logs whose tails are printed when a check fails
//
// Output: "PASS name" or "FAIL name: why" per check, then "N passed, M failed" alone on the
// last line; the exit status is 1 if any check failed.
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const execFileP = promisify(execFile);
const env = process.env;
const need = (k) => {
  if (!env[k]) {
    console.log(`FAIL setup: ${k} is not set (run scripts/inspect-ui/test.sh)`);
    console.log('0 passed, 1 failed');
    process.exit(2);
  }
  return env[k];
};
const API = need('API_URL');
const PUBLIC = need('PUBLIC_URL');
const CA = need('CA_FILE');
const CONTROL = need('CONTROL_URL');
const UP_ADDR = need('UP_ADDR');
const PROFILE = need('PROFILE_DIR');
const OUT = need('OUT_DIR');
const TMP = need('TMP_DIR');
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const LOGS = env.LOG_DIR || '';
const WAIT = 5000; // ms: how long the page may take to show something

let passed = 0;
let failed = 0;
const oneLine = (s) => {
  s = String(s).replace(/\s+/g, ' ').trim();
  return s.length > 400 ? `${s.slice(0, 400)}...` : s;
};
function pass(name) {
  passed++;
  console.log(`PASS ${name}`);
}
function fail(name, why) {
  failed++;
  console.log(`FAIL ${name}: ${oneLine(why)}`);
}
// check runs one named check; a thrown error fails it. critical: stop everything after.
class Abort extends Error {}
async function check(name, fn, { critical = false } = {}) {
  try {
    await fn();
    pass(name);
    return true;
  } catch (err) {
    fail(name, err && err.message ? err.message : err);
    if (critical) throw new Abort(name);
    return false;
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
const show = (v) => JSON.stringify(v);

async function until(what, fn, timeout = WAIT) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = `error: ${err.message}`;
    }
    if (Date.now() > end) throw new Error(`${what}: not within ${timeout} ms (last: ${oneLine(show(last))})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// curl sends one request through the tunnel, trusting the dev CA; every name connects
// to 127.0.0.1 (as scripts/e2e.sh does).
async function curl(pathq, ...args) {
  const { stdout } = await execFileP('curl', ['-sS', '--max-time', '15', '--noproxy', '*', '--cacert', CA,
    '--connect-to', '::127.0.0.1:', '-o', '/dev/null', '-w', '%{http_code}', ...args, PUBLIC + pathq]);
  return stdout.trim();
}

async function stats() {
  const r = await fetch(`${CONTROL}/stats`);
  return r.json();
}
async function apiList() {
  const r = await fetch(`${API}/api/requests/http?limit=100`);
  return (await r.json()).requests;
}

async function main() {
  await mkdir(OUT, { recursive: true });
  const context = await chromium.launchPersistentContext(PROFILE, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-proxy-server'],
    viewport: { width: 1280, height: 800 },
    colorScheme: 'light',
    acceptDownloads: false,
  });
  const page = context.pages()[0] || (await context.newPage());
  const problems = []; // console errors, page errors, requests elsewhere
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(`${API}/`) && !u.startsWith('blob:') && !u.startsWith('data:')) problems.push(`request to ${u}`);
  });

  // Row helpers: what the list shows, read from the page.
  const rows = () => page.$$eval('#list .row', (els) => els.map((e) => ({
    id: e.dataset.id,
    method: e.querySelector('.method').textContent,
    path: e.querySelector('.path').textContent.replace(/^REPLAY/, ''),
    replay: !!e.querySelector('.badge-replay'),
    status: e.querySelector('.status').textContent,
    statusClass: e.querySelector('.status-pill').className,
    selected: e.classList.contains('selected'),
  })));
  const rowWhere = (what, pred) => until(what, async () => (await rows()).find(pred));
  const shownId = () => page.$eval('#detail', (d) => d.dataset.id || '');
  const selectRow = async (id) => {
    await page.click(`#list .row[data-id="${id}"]`);
    await until(`detail of ${id}`, async () => (await shownId()) === id);
  };
  const text = (sel) => page.$eval(sel, (e) => e.textContent);

  try {
    await check('page-loads', async () => {
      const resp = await page.goto(`${API}/`, { waitUntil: 'load' });
      assert(resp && resp.status() === 200, `status ${resp && resp.status()}`);
      const ct = resp.headers()['content-type'] || '';
      assert(ct.startsWith('text/html'), `content-type ${show(ct)}`);
      assert((await page.title()) === 'ferry inspect', `title ${show(await page.title())}`);
    }, { critical: true });

    await check('header-tunnels', async () => {
      const t = await until('tunnel chip', async () => {
        const s = await text('#tunnels');
        return s.includes(PUBLIC) ? s : '';
      });
      assert(t.includes('→') && t.includes(UP_ADDR), `header ${show(t)} should show ${PUBLIC} → ${UP_ADDR}`);
    });

    await check('live-connection', async () => {
      await until('connection "live"', async () => (await page.$eval('#conn', (e) => e.className)).includes('live'));
    });

    await check('empty-state', async () => {
      assert(await page.isVisible('#empty'), 'empty state hidden with no requests');
      assert((await rows()).length === 0, 'rows with no requests');
    });

    // ---- a JSON request appears live -------------------------------------------
    // Written by hand so the big number keeps its digits (the page must not round it).
    const sentText = '{"hello":"world","n":[1,2,3],"nested":{"ok":true,"big":12345678901234567890}}';
    await check('tunnel-request', async () => {
      const code = await curl('/hello?x=1', '-H', 'Content-Type: application/json', '--data-binary', sentText);
      assert(code === '200', `curl status ${code}`);
    }, { critical: true });

    let orig;
    await check('list-shows-request', async () => {
      orig = await rowWhere('row POST /hello?x=1 200', (r) => r.path === '/hello?x=1');
      assert(orig.method === 'POST', `method ${show(orig.method)}`);
      assert(orig.status === '200', `status ${show(orig.status)}`);
      assert(orig.statusClass.includes('s2'), `status class ${show(orig.statusClass)}`);
      const api = (await apiList()).find((e) => e.id === orig.id);
      assert(api && api.request.method === 'POST' && api.request.uri === '/hello?x=1', `API entry ${show(api && api.request)}`);
    }, { critical: true });

    await check('detail-json-pretty', async () => {
      await selectRow(orig.id);
      const want = [
        '{', '  "hello": "world",', '  "n": [', '    1,', '    2,', '    3', '  ],',
        '  "nested": {', '    "ok": true,', '    "big": 12345678901234567890', '  }', '}'].join('\n');
      const got = await until('pretty JSON request body', async () => {
        const s = await text('#req-body pre.content').catch(() => '');
        return s === want ? s : '';
      }).catch(async (e) => {
        throw new Error(`${e.message}; got ${show(await text('#req-body pre.content').catch(() => ''))} want ${show(want)}`);
      });
      assert(got.includes('\n  "hello": "world",\n'), 'not indented');
      const bar = await text('#req-body .body-bar');
      assert(bar.includes('application/json'), `body bar ${show(bar)}`);
      const headers = await text('#request table.headers');
      assert(headers.includes('Content-Type') && headers.includes('application/json'), `request headers ${show(headers)}`);
      const summary = await text('#detail .summary');
      assert(summary.includes('POST') && summary.includes('/hello?x=1') && summary.includes('200'), `summary ${show(summary)}`);
      const resp = await text('#resp-body pre.content');
      assert(resp.includes('"server": "ferry-inspect-ui-upstream"'), `response body ${show(resp)}`);
      const respHeaders = await text('#response table.headers');
      assert(respHeaders.includes('Content-Type'), `response headers ${show(respHeaders)}`);
    });

    // ---- replay ----------------------------------------------------------------
    await check('replay-reaches-upstream', async () => {
      const before = (await stats()).count;
      await page.click('#replay');
      const after = await until('upstream count +1', async () => {
        const s = await stats();
        return s.count >= before + 1 ? s : null;
      });
      assert(after.count === before + 1, `upstream count ${before} -> ${after.count}, want +1`);
      const last = after.requests[after.requests.length - 1];
      assert(last.method === 'POST' && last.uri === '/hello?x=1', `upstream saw ${last.method} ${last.uri}`);
      assert(last.body === sentText, `upstream body ${show(last.body)}`);
    });

    await check('replay-entry-appears', async () => {
      const r = await rowWhere('replay row', (x) => x.replay && x.path === '/hello?x=1' && x.id !== orig.id);
      assert(r.status === '200', `replay status ${r.status}`);
      // The page selects the replay once it shows up.
      await until('replay selected', async () => (await shownId()) === r.id);
      const of = await text('#detail .replay-of');
      assert(of.includes(`replay of ${orig.id}`), `detail says ${show(of)}`);
      const api = (await apiList()).find((e) => e.id === r.id);
      assert(api && api.replay_of === orig.id, `API replay_of ${show(api && api.replay_of)}`);
    });

    await check('replay-with-changes', async () => {
      await selectRow(orig.id);
      await page.click('#replay-edit');
      await page.waitForSelector('#editor[open]', { timeout: WAIT });
      assert((await page.inputValue('#ed-method')) === 'POST', 'method not prefilled');
      assert((await page.inputValue('#ed-uri')) === '/hello?x=1', `URI prefilled ${show(await page.inputValue('#ed-uri'))}`);
      assert((await page.inputValue('#ed-body')) === sentText, 'body not prefilled');
      const hdrs = await page.inputValue('#ed-headers');
      assert(/^Content-Type: application\/json$/m.test(hdrs), `headers prefilled ${show(hdrs)}`);
      await page.screenshot({ path: path.join(OUT, 'inspect-editor.png') });

      await page.fill('#ed-uri', '/edited');
      await page.fill('#ed-headers', `${hdrs}\nx-edited: yes`);
      await page.fill('#ed-body', '{"edited":true}');
      const before = (await stats()).count;
      await page.click('#ed-send');
      await page.waitForSelector('#editor:not([open])', { state: 'attached', timeout: WAIT });
      const s = await until('upstream count +1', async () => {
        const x = await stats();
        return x.count >= before + 1 ? x : null;
      });
      assert(s.count === before + 1, `upstream count ${before} -> ${s.count}, want +1`);
      const last = s.requests[s.requests.length - 1];
      assert(last.uri === '/edited', `upstream saw ${show(last.uri)}, want /edited`);
      assert(last.method === 'POST', `method ${last.method}`);
      assert((last.headers['X-Edited'] || [])[0] === 'yes', `X-Edited ${show(last.headers['X-Edited'])}`);
      assert(last.body === '{"edited":true}', `body ${show(last.body)}`);
      const r = await rowWhere('edited replay row', (x) => x.path === '/edited');
      assert(r.replay, 'the /edited row is not marked as a replay');
      await until('edited replay selected', async () => (await shownId()) === r.id);
      assert((await text('#detail .replay-of')).includes(orig.id), 'detail does not name the original');
    });

    await check('replay-editor-rejects-bad-headers', async () => {
      await selectRow(orig.id);
      await page.click('#replay-edit');
      await page.waitForSelector('#editor[open]', { timeout: WAIT });
      const before = (await stats()).count;
      await page.fill('#ed-headers', 'no colon here');
      await page.click('#ed-send');
      await page.waitForSelector('#ed-error:not([hidden])', { timeout: WAIT });
      assert((await text('#ed-error')).includes('line 1'), `error ${show(await text('#ed-error'))}`);
      await page.click('#ed-cancel');
      await page.waitForSelector('#editor:not([open])', { state: 'attached', timeout: WAIT });
      await new Promise((r) => setTimeout(r, 300));
      assert((await stats()).count === before, 'a rejected edit was sent');
    });

    // ---- keyboard ----------------------------------------------------------------
    await check('keyboard-navigation', async () => {
      const list = await rows();
      assert(list.length >= 3, `${list.length} rows`);
      await selectRow(list[0].id);
      const sel = async () => (await rows()).findIndex((r) => r.selected);
      const press = async (key, want) => {
        await page.keyboard.press(key);
        await until(`${key} selects row ${want}`, async () => (await sel()) === want, 2000);
        await until(`${key} shows row ${want}`, async () => (await shownId()) === list[want].id, 2000);
      };
      await press('j', 1);
      await press('ArrowDown', 2);
      await press('k', 1);
      await press('ArrowUp', 0);
      await press('k', 0); // stays at the top
    });

    // ---- bodies: binary, cut, compressed; escaping; status colours ---------------
    await check('hex-dump', async () => {
      assert((await curl('/bin')) === '200', 'curl /bin');
      const r = await rowWhere('row /bin', (x) => x.path === '/bin');
      await selectRow(r.id);
      const pre = await until('hex view', () => page.$('#resp-body pre.hex'));
      const dump = await pre.textContent();
      const lines = dump.trimEnd().split('\n');
      assert(lines[0] === '00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|', `first line ${show(lines[0])}`);
      assert(lines[2] === '00000020  20 21 22 23 24 25 26 27  28 29 2a 2b 2c 2d 2e 2f  | !"#$%&\'()*+,-./|', `third line ${show(lines[2])}`);
      assert(lines.length === 256, `${lines.length} lines, want 256 (4 KiB)`);
      const bar = await text('#resp-body .body-bar');
      assert(bar.includes('showing 4 KiB of 10240 bytes'), `bar ${show(bar)}`);
    });

    await check('truncated-body', async () => {
      const big = path.join(TMP, 'big-body.txt');
      const n = 1572864; // 1.5 MiB
      await writeFile(big, 'ferry '.repeat(n / 6));
      try {
        assert((await curl('/upload', '-H', 'Content-Type: text/plain', '--data-binary', `@${big}`)) === '200', 'curl /upload');
      } finally {
        await rm(big, { force: true });
      }
      const r = await rowWhere('row /upload', (x) => x.path === '/upload');
      await selectRow(r.id);
      const bar = await until('cut note', async () => {
        const s = await text('#req-body .body-bar').catch(() => '');
        return s.includes('captured the first 1 MiB') ? s : '';
      });
      assert(bar.includes(`captured the first 1 MiB of ${n} bytes`), `bar ${show(bar)}`);
      const body = await text('#req-body pre.content');
      assert(body.length === 1 << 20 && body.startsWith('ferry ferry'), `text view ${body.length} chars`);
    });

    await check('gzip-decoded', async () => {
      assert((await curl('/gzip')) === '200', 'curl /gzip');
      const r = await rowWhere('row /gzip', (x) => x.path === '/gzip');
      await selectRow(r.id);
      const body = await until('decoded JSON', async () => {
        const s = await text('#resp-body pre.content').catch(() => '');
        return s.includes('"compressed": true') ? s : '';
      });
      assert(body.startsWith('{\n  "compressed": true,'), `body ${show(body.slice(0, 80))}`);
      assert((await text('#resp-body .body-bar')).includes('gzip'), 'no gzip note');
    });

    await check('untrusted-data-escaped', async () => {
      const evil = '<img src=x onerror="window.__pwned=1"><b id="injected">b</b>';
      const code = await curl('/evil?q=%3Cscript%3E', '-H', `X-Evil: ${evil}`, '-H', 'Content-Type: text/html',
        '--data-binary', `</pre>${evil}<script>window.__pwned=2</script>`);
      assert(code === '200', `curl ${code}`);
      const r = await rowWhere('row /evil', (x) => x.path.startsWith('/evil'));
      await selectRow(r.id);
      const headers = await until('evil header shown', async () => {
        const s = await text('#request table.headers').catch(() => '');
        return s.includes(evil) ? s : '';
      });
      assert(headers.includes(evil), 'header value not shown as text');
      assert((await text('#req-body pre.content')).includes('<script>window.__pwned=2</script>'), 'body not shown as text');
      await new Promise((res) => setTimeout(res, 300));
      const pwned = await page.evaluate(() => [window.__pwned, !!document.getElementById('injected'), document.querySelectorAll('img[src="x"]').length]);
      assert(pwned[0] === undefined && !pwned[1] && pwned[2] === 0, `injected: ${show(pwned)}`);
    });

    await check('status-colours', async () => {
      assert((await curl('/status/404')) === '404', 'curl 404');
      assert((await curl('/status/503')) === '503', 'curl 503');
      const r4 = await rowWhere('row 404', (x) => x.path === '/status/404');
      const r5 = await rowWhere('row 503', (x) => x.path === '/status/503');
      assert(r4.statusClass.includes('s4') && r5.statusClass.includes('s5'), `classes ${r4.statusClass} / ${r5.statusClass}`);
      const colours = await page.$$eval('#list .status-pill', (els) => [...new Set(els.map((e) => getComputedStyle(e).color))]);
      assert(colours.length >= 3, `status colours ${show(colours)}: want 2xx, 4xx and 5xx to differ`);
    });

    await check('newest-first', async () => {
      const list = await rows();
      const api = await apiList();
      assert(list.map((r) => r.id).join() === api.map((e) => e.id).join(), 'list order differs from the API (newest first)');
    });

    await check('filter', async () => {
      await page.fill('#filter', 'status/');
      await until('filtered list', async () => {
        const l = await rows();
        return l.length === 2 && l.every((r) => r.path.startsWith('/status/'));
      });
      await page.fill('#filter', '');
      await until('unfiltered list', async () => (await rows()).length > 2);
      await page.focus('#list');
    });

    await check('screenshot', async () => {
      await selectRow(orig.id);
      await page.evaluate(() => document.activeElement && document.activeElement.blur());
      await page.waitForTimeout(1700); // let the new-row highlight fade
      await page.screenshot({ path: path.join(OUT, 'inspect.png') });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: path.join(OUT, 'inspect-dark.png') });
      await page.emulateMedia({ colorScheme: 'light' });
      await selectRow((await rowWhere('row /bin', (x) => x.path === '/bin')).id);
      await page.screenshot({ path: path.join(OUT, 'inspect-hex.png') });
    });

    await check('clear', async () => {
      await page.click('#clear');
      await until('empty list', async () => (await rows()).length === 0 && (await page.isVisible('#empty')));
      assert((await apiList()).length === 0, 'the API still lists requests');
      assert(await page.isVisible('#placeholder'), 'detail not reset');
      // A request after clearing shows up again.
      assert((await curl('/after-clear')) === '200', 'curl');
      await rowWhere('row /after-clear', (x) => x.path === '/after-clear');
    });

    await check('no-page-errors-or-outside-requests', async () => {
      assert(problems.length === 0, problems.join('; '));
    });
  } catch (err) {
    if (!(err instanceof Abort)) fail('test', err && err.stack ? err.stack : err);
  } finally {
    await context.close().catch(() => {});
  }
}

async function tails() {
  if (!LOGS) return;
  let files = [];
  try {
    files = (await readdir(LOGS)).filter((f) => f.endsWith('.log')).sort();
  } catch (_) {
    return;
  }
  for (const f of files) {
    const lines = (await readFile(path.join(LOGS, f), 'utf8')).trimEnd().split('\n');
    console.log(`---- ${f} (last 20 lines) ----`);
    console.log(lines.slice(-20).join('\n'));
  }
  console.log('----');
}

const stop = () => {
  console.log('FAIL test: interrupted');
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(130);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

try {
  await main();
} catch (err) {
  fail('test', err && err.stack ? err.stack : err);
}
if (failed > 0) await tails();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
