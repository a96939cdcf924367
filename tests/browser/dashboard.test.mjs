// dashboard.test.mjs - lossd's dashboard (/) and API reference (/docs) in a
// real browser: Debian's chromium driven by playwright-core (no browser
// download). Run by scripts/ci-browser.sh, or:
//   LOSSD_BIN=build/server/lossd node --test tests/browser/
// Each test starts its own lossd on a free port (--port 0; the port comes
// from the JSON "listening" log line) with a fresh data dir, feeds it
// through the public API, and checks what the page shows against what the
// API answers. The screenshot lands in tests/browser/out/dashboard.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const BIN = process.env.LOSSD_BIN || join(root, 'build', 'server', 'lossd');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const OUT = join(here, 'out');

// The dashboard's AUC format (web/app.js fmtAuc).
const fmtAuc = (x) => (x === null || x === undefined ? '—' : Number(x).toFixed(4));

function startLossd(extra = []) {
	const dir = mkdtempSync(join(tmpdir(), 'lossd-browser-'));
	const proc = spawn(BIN, ['--port', '0', '--bind', '127.0.0.1', '--data-dir', join(dir, 'data'), ...extra], {
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	return new Promise((resolveStart, reject) => {
		let buf = '';
		const timer = setTimeout(() => reject(new Error(`lossd did not log "listening" in 10 s:\n${buf}`)), 10000);
		const onData = (chunk) => {
			buf += chunk.toString();
			for (const line of buf.split('\n')) {
				let j;
				try {
					j = JSON.parse(line);
				} catch {
					continue;
				}
				if (j.msg === 'listening' && j.port) {
					clearTimeout(timer);
					proc.stdout.off('data', onData);
					proc.stderr.off('data', onData);
					proc.stdout.resume();
					proc.stderr.resume();
					const url = `http://127.0.0.1:${j.port}`;
					resolveStart({
						url,
						dir,
						proc,
						async stop() {
							if (proc.exitCode === null) {
								const done = new Promise((r) => proc.once('exit', r));
								proc.kill('SIGTERM');
								await done;
							}
							rmSync(dir, { recursive: true, force: true });
						},
					});
					return;
				}
			}
		};
		proc.stdout.on('data', onData);
		proc.stderr.on('data', onData);
		proc.once('exit', (code) => {
			clearTimeout(timer);
			reject(new Error(`lossd exited with ${code}:\n${buf}`));
		});
	});
}

async function call(srv, method, path, body, token) {
	const headers = {};
	if (body !== undefined) headers['Content-Type'] = 'application/json';
	if (token) headers.Authorization = `Bearer ${token}`;
	const r = await fetch(srv.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
	const text = await r.text();
	const json = /json/.test(r.headers.get('content-type') || '') && text ? JSON.parse(text) : null;
	return { status: r.status, headers: r.headers, json, text };
}

// A fixed pseudo-random batch, so the AUC is neither 0, 1 nor a round number.
function batch(seed, n) {
	let s = seed;
	const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
	const y_true = [];
	const y_pred = [];
	for (let i = 0; i < n; i++) {
		const y = rnd() < 0.4 ? 1 : 0;
		y_true.push(y);
		y_pred.push(Math.min(0.99, Math.max(0.01, 0.35 + 0.3 * y + 0.4 * (rnd() - 0.5))));
	}
	return { y_true, y_pred };
}

let browser;
let profile;

before(async () => {
	assert.ok(existsSync(BIN), `no lossd binary at ${BIN} (set LOSSD_BIN)`);
	profile = mkdtempSync(join(tmpdir(), 'lossd-chromium-'));
	browser = await chromium.launchPersistentContext(profile, {
		executablePath: CHROMIUM,
		headless: true,
		viewport: { width: 1440, height: 900 },
		args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
			'--disable-background-networking', '--disable-component-update', '--disable-sync'],
	});
	mkdirSync(OUT, { recursive: true });
});

after(async () => {
	if (browser) await browser.close();
	if (profile) rmSync(profile, { recursive: true, force: true });
});

// Collects every request a page makes, the failed ones, bad statuses and
// console errors (a CSP violation is a console error).
function watch(page) {
	const w = { requests: [], failed: [], bad: [], errors: [] };
	page.on('request', (r) => w.requests.push(r.url()));
	page.on('requestfailed', (r) => w.failed.push(`${r.url()} ${r.failure()?.errorText}`));
	page.on('response', (r) => {
		if (r.status() >= 400) w.bad.push(`${r.status()} ${r.url()}`);
	});
	page.on('console', (m) => {
		if (m.type() === 'error') w.errors.push(m.text());
	});
	page.on('pageerror', (e) => w.errors.push(String(e)));
	return w;
}

function assertLocalOnly(w, srv) {
	const origin = new URL(srv.url).origin;
	const foreign = w.requests.filter((u) => !u.startsWith('data:') && new URL(u).origin !== origin);
	assert.deepEqual(foreign, [], 'requests to another host');
	assert.deepEqual(w.failed, [], 'failed requests');
}

test('dashboard shows the API\'s AUC, the curve and live updates', async () => {
	const srv = await startLossd();
	const page = await browser.newPage();
	try {
		const made = await call(srv, 'POST', '/v1/streams', { name: 'val-auc', loss: 'binary_crossentropy' });
		assert.equal(made.status, 201, made.text);
		const id = made.json.id;
		const other = await call(srv, 'POST', '/v1/streams', { name: 'train-pr', curve: 'pr', method: 'exact' });
		assert.equal(other.status, 201, other.text);
		for (let i = 0; i < 3; i++) {
			const u = await call(srv, 'POST', `/v1/streams/${id}/update`, batch(11 + i, 400));
			assert.equal(u.status, 200, u.text);
		}
		assert.equal((await call(srv, 'POST', `/v1/streams/${other.json.id}/update`, batch(99, 300))).status, 200);

		const w = watch(page);
		const resp = await page.goto(srv.url + '/');
		assert.equal(resp.status(), 200);
		const csp = resp.headers()['content-security-policy'] || '';
		assert.match(csp, /default-src 'self'/);
		assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);

		const row = page.locator(`#streams tbody tr[data-id="${id}"]`);
		await row.waitFor({ timeout: 10000 });
		const want = (await call(srv, 'GET', `/v1/streams/${id}`)).json;
		assert.equal(typeof want.auc, 'number');
		assert.ok(want.auc > 0.5 && want.auc < 1, `auc ${want.auc}`);
		await assert.doesNotReject(page.waitForFunction(
			([sel, text]) => document.querySelector(sel)?.textContent === text,
			[`#streams tbody tr[data-id="${id}"] td.auc`, fmtAuc(want.auc)], { timeout: 10000 }));

		await row.click();
		await page.locator('#detail').waitFor({ state: 'visible', timeout: 10000 });
		await page.waitForFunction((t) => document.getElementById('d-auc')?.textContent === t, fmtAuc(want.auc), { timeout: 10000 });
		assert.equal(await page.textContent('#d-auc'), fmtAuc(want.auc));
		assert.equal(await page.textContent('#d-count'), want.count.toLocaleString('en-US'));
		assert.equal(await page.textContent('#d-loss'), want.loss.toFixed(4));
		assert.equal(await page.textContent('#curve-caption'), 'ROC curve');
		const canvas = page.locator('#curve-chart canvas');
		await canvas.waitFor({ timeout: 10000 });
		const box = await canvas.boundingBox();
		assert.ok(box && box.width > 200 && box.height > 100, `ROC canvas ${JSON.stringify(box)}`);
		assert.equal(await page.locator('#history-chart canvas').count(), 1);
		assert.match(await page.textContent('#detail'), /kept in this tab's memory/);

		// Live: a new batch shows up without a reload.
		const u = await call(srv, 'POST', `/v1/streams/${id}/update`, batch(77, 400));
		assert.equal(u.status, 200);
		const now = (await call(srv, 'GET', `/v1/streams/${id}`)).json;
		assert.notEqual(fmtAuc(now.auc), fmtAuc(want.auc), 'the new batch should move the AUC');
		await page.waitForFunction((t) => document.getElementById('d-auc')?.textContent === t, fmtAuc(now.auc), { timeout: 10000 });
		assert.equal(await page.textContent('#d-count'), now.count.toLocaleString('en-US'));
		await page.waitForTimeout(3500); // one more poll: a visible AUC-over-time series

		await page.screenshot({ path: join(OUT, 'dashboard.png'), fullPage: true });

		// A PR stream shows its precision-recall curve.
		const pr = (await call(srv, 'GET', `/v1/streams/${other.json.id}`)).json;
		await page.click(`#streams tbody tr[data-id="${other.json.id}"]`);
		await page.waitForFunction((t) => document.getElementById('d-auc')?.textContent === t, fmtAuc(pr.auc), { timeout: 10000 });
		assert.equal(await page.textContent('#curve-caption'), 'Precision-recall curve');
		assert.equal(new URL(page.url()).hash, `#stream=${other.json.id}`);
		await page.screenshot({ path: join(OUT, 'dashboard-pr.png') });
		assertLocalOnly(w, srv);
		assert.deepEqual(w.bad, [], 'replies >= 400');
		assert.deepEqual(w.errors, [], 'console errors (CSP violations included)');
	} finally {
		await page.close();
		await srv.stop();
	}
});

test('with --tokens-file the page asks for a token and sends it as Bearer', async () => {
	const dir = mkdtempSync(join(tmpdir(), 'lossd-tokens-'));
	const file = join(dir, 'tokens');
	writeFileSync(file, 'sekrit-rw-token-123456 alice rw\n', { mode: 0o600 });
	const srv = await startLossd(['--tokens-file', file]);
	const page = await browser.newPage();
	try {
		const tok = 'sekrit-rw-token-123456';
		assert.equal((await call(srv, 'GET', '/v1/streams')).status, 401);
		assert.equal((await call(srv, 'GET', '/')).status, 200, 'the page itself needs no token');
		assert.equal((await call(srv, 'GET', '/ui/app.js')).status, 200);
		const made = await call(srv, 'POST', '/v1/streams', { name: 'guarded' }, tok);
		assert.equal(made.status, 201, made.text);

		await page.goto(srv.url + '/');
		await page.waitForFunction(() => /needs a bearer token/.test(document.getElementById('status').textContent), null, { timeout: 10000 });
		assert.equal(await page.locator('#streams tbody tr').count(), 0);
		await page.fill('#token', tok);
		await page.click('#token-form button[type=submit]');
		await page.locator(`#streams tbody tr[data-id="${made.json.id}"]`).waitFor({ timeout: 10000 });
		assert.equal(await page.evaluate(() => sessionStorage.getItem('lossd.token')), tok);
		assert.match(await page.textContent('#status'), /Live/);
	} finally {
		await page.close();
		await srv.stop();
		rmSync(dir, { recursive: true, force: true });
	}
});

test('/docs loads offline: no failed requests, nothing from another host', async () => {
	const srv = await startLossd();
	const page = await browser.newPage();
	try {
		const w = watch(page);
		const resp = await page.goto(srv.url + '/docs', { waitUntil: 'networkidle' });
		assert.equal(resp.status(), 200);
		assert.match(resp.headers()['content-type'], /^text\/html/);
		assert.match(resp.headers()['content-security-policy'] || '', /default-src 'self'/);
		assert.match(await page.textContent('h1'), /API reference/);
		// Every operation of the spec is on the page.
		const spec = (await call(srv, 'GET', '/openapi.yaml')).text;
		const ids = [...spec.matchAll(/operationId: (\w+)/g)].map((m) => m[1]);
		assert.ok(ids.length > 10, 'operationIds in openapi.yaml');
		for (const id of ids) assert.equal(await page.locator(`#op-${id}`).count(), 1, `operation ${id}`);
		assert.ok(w.requests.some((u) => u.endsWith('/ui/docs.css')), 'the stylesheet was loaded');
		await page.screenshot({ path: join(OUT, 'docs.png') });
		assertLocalOnly(w, srv);
		assert.deepEqual(w.bad, [], 'replies >= 400');
		assert.deepEqual(w.errors, [], 'console errors');
	} finally {
		await page.close();
		await srv.stop();
	}
});

test('pages are GET/HEAD only', async () => {
	const srv = await startLossd();
	try {
		for (const path of ['/', '/docs', '/ui/app.js', '/ui/uPlot.iife.min.js']) {
			const r = await call(srv, 'POST', path, {});
			assert.equal(r.status, 405, path);
			assert.equal(r.headers.get('allow'), 'GET, HEAD');
			const h = await fetch(srv.url + path, { method: 'HEAD' });
			assert.equal(h.status, 200, `HEAD ${path}`);
		}
		const js = await fetch(srv.url + '/ui/app.js');
		assert.match(js.headers.get('content-type'), /^text\/javascript/);
		assert.equal(js.headers.get('x-content-type-options'), 'nosniff');
	} finally {
		await srv.stop();
	}
});
