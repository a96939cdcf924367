// dashboard.test.mjs - lossd's dashboard (/) and API reference (/docs) in a
// real browser: Debian's chromium driven by playwright-core (no browser
// download). Run by scripts/ci-browser.sh, or:
//   LOSSD_BIN=build/server/lossd node --test tests/browser/
// Each test starts its own lossd on a free port (--port 0; the port comes
// from the JSON "listening" log line) with a fresh data dir, feeds it
// through the public API, and checks what the page shows against what the
// API answers. Screenshots land under the build folder, in
// build/browser-screenshots/ (or $LOSSD_SCREENSHOT_DIR), at 1400 px and
// 700 px; with LOSSD_DOCS_SCREENSHOT=1 the realistic-run test also writes
// docs/img/dashboard.png (the README's picture; commit it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync, readFileSync, copyFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const BIN = process.env.LOSSD_BIN || join(root, 'build', 'server', 'lossd');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const OUT = process.env.LOSSD_SCREENSHOT_DIR || join(root, 'build', 'browser-screenshots');

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
		assert.equal(await page.locator('#steps-chart canvas').count(), 1);
		assert.equal(await page.locator('#ckpt-chart canvas').count(), 1);
		assert.match(await page.textContent('#steps-note'), /no step points yet/);

		// Live: a new batch shows up without a reload.
		const u = await call(srv, 'POST', `/v1/streams/${id}/update`, batch(77, 400));
		assert.equal(u.status, 200);
		const now = (await call(srv, 'GET', `/v1/streams/${id}`)).json;
		assert.notEqual(fmtAuc(now.auc), fmtAuc(want.auc), 'the new batch should move the AUC');
		await page.waitForFunction((t) => document.getElementById('d-auc')?.textContent === t, fmtAuc(now.auc), { timeout: 10000 });
		assert.equal(await page.textContent('#d-count'), now.count.toLocaleString('en-US'));

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

test('a stream with calibration shows its reliability diagram, ECE and Brier', async () => {
	const srv = await startLossd();
	const page = await browser.newPage();
	try {
		const made = await call(srv, 'POST', '/v1/streams', { name: 'calib', loss: { loss: 'binary_crossentropy', calibration: { bins: 5 } } });
		assert.equal(made.status, 201, made.text);
		const id = made.json.id;
		const plain = await call(srv, 'POST', '/v1/streams', { name: 'plain' });
		assert.equal(plain.status, 201, plain.text);
		assert.equal((await call(srv, 'POST', `/v1/streams/${id}/update`, batch(5, 300))).status, 200);
		assert.equal((await call(srv, 'POST', `/v1/streams/${plain.json.id}/update`, batch(6, 300))).status, 200);
		const want = (await call(srv, 'GET', `/v1/streams/${id}`)).json;
		assert.equal(typeof want.calibration.ece, 'number');
		const w = watch(page);
		await page.goto(`${srv.url}/#stream=${id}`);
		await page.locator('#calib-fig').waitFor({ state: 'visible', timeout: 10000 });
		const text = `${want.calibration.ece.toFixed(4)} / ${want.calibration.brier.toFixed(4)}`;
		await page.waitForFunction((t) => document.getElementById('d-ece')?.textContent === t, text, { timeout: 10000 });
		assert.equal(await page.locator('#calib-chart canvas').count(), 1);
		assert.equal(await page.isHidden('#d-ppl-box'), true, 'binary cross-entropy has no perplexity');
		await page.screenshot({ path: join(OUT, 'dashboard-calibration.png'), fullPage: true });
		await page.click(`#streams tbody tr[data-id="${plain.json.id}"]`);
		await page.waitForFunction(() => document.getElementById('calib-fig')?.hidden === true, null, { timeout: 10000 });
		assert.equal(await page.isHidden('#d-ece-row'), true);
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

// Every page of a stream's history through the API (a smaller page than
// the dashboard's, so both walk the cursor their own way).
async function allHistory(srv, id, series) {
	const out = [];
	let after = null;
	for (let i = 0; i < 100; i++) {
		const r = await call(srv, 'GET', `/v1/streams/${id}/history?series=${series}&limit=300${after ? `&after=${after}` : ''}`);
		assert.equal(r.status, 200, r.text);
		out.push(...r.json[series]);
		if (!r.json.next) return out;
		after = encodeURIComponent(r.json.next);
	}
	throw new Error('history did not end in 100 pages');
}

// Nothing wider than the window, no table cell past its panel's edge.
async function assertNoCutOff(page, width) {
	await page.setViewportSize({ width, height: 900 });
	await page.waitForTimeout(300); // the resize handler resizes the charts
	const r = await page.evaluate(() => {
		const cut = [];
		for (const sel of ['#streams', '#last-point', '#last-ckpt', '#per-class', '#steps-chart canvas', '#ckpt-chart canvas', '#curve-chart canvas']) {
			for (const node of document.querySelectorAll(sel)) {
				const panel = node.closest('.panel').getBoundingClientRect();
				const cells = node.tagName === 'TABLE' ? node.querySelectorAll('th, td') : [node];
				for (const c of cells) {
					const b = c.getBoundingClientRect();
					if (b.width > 0 && (b.right > panel.right + 0.5 || b.left < panel.left - 0.5)) cut.push(`${sel}: ${c.textContent.slice(0, 30)}`);
				}
			}
		}
		return { over: document.documentElement.scrollWidth - window.innerWidth, cut };
	});
	assert.ok(r.over <= 0, `page ${r.over} px wider than ${width}`);
	assert.deepEqual(r.cut, [], `cut off at ${width} px`);
}

test('history: loss and accuracy over steps and AUC over checkpoints come from the server, page by page', async () => {
	const srv = await startLossd();
	const page = await browser.newPage();
	try {
		const old = await call(srv, 'POST', '/v1/streams', { name: 'zz-old', tags: { run: 'r6', split: 'val' } });
		assert.equal(old.status, 201, old.text);
		const made = await call(srv, 'POST', '/v1/streams', { name: 'run7-train', loss: 'binary_crossentropy', tags: { run: 'r7', split: 'train' } });
		assert.equal(made.status, 201, made.text);
		const id = made.json.id;
		// 1,100 steps: more than one page (1,000) of the dashboard's history reads.
		const N = 1100;
		for (let step = 1; step <= N; step++) {
			const u = await call(srv, 'POST', `/v1/streams/${id}/update`, { ...batch(step, 6), step });
			assert.equal(u.status, 200, u.text);
			if (step === 550 || step === N) {
				const c = await call(srv, 'POST', `/v1/streams/${id}/checkpoint`, { step, label: `epoch-${step / 550}` });
				assert.equal(c.status, 201, c.text);
			}
		}
		const steps = await allHistory(srv, id, 'steps');
		const ckpts = await allHistory(srv, id, 'checkpoints');
		assert.equal(steps.length, N);
		assert.equal(ckpts.length, 2);

		const w = watch(page);
		await page.setViewportSize({ width: 1400, height: 1000 });
		await page.goto(`${srv.url}/#stream=${id}`);
		await page.waitForSelector(`#steps-chart[data-points="${N}"]`, { timeout: 15000 });
		await page.waitForSelector('#ckpt-chart[data-points="2"]', { timeout: 15000 });

		// The list: latest update first, created/updated and tags shown.
		const ids = await page.$$eval('#streams tbody tr', (rows) => rows.map((r) => r.dataset.id));
		assert.deepEqual(ids, [id, old.json.id]);
		const row = page.locator(`#streams tbody tr[data-id="${id}"]`);
		const info = (await call(srv, 'GET', `/v1/streams/${id}`)).json;
		assert.equal(await row.locator('td.time .updated').textContent(), info.updated_at.replace('T', ' ').replace(/\.\d+Z$/, ''));
		assert.match(await row.locator('td.time .created').textContent(), /^created (\d\d:\d\d:\d\d|\d{4}-\d\d-\d\d)$/);
		assert.deepEqual(await row.locator('.tag').allTextContents(), ['run=r7', 'split=train']);

		// What the charts hold is the API's history, point by point.
		const data = await page.evaluate(() => window.lossdDashboard.chartData());
		assert.deepEqual(data.steps[0], steps.map((p) => p.step));
		assert.deepEqual(data.steps[1], steps.map((p) => p.loss));
		assert.deepEqual(data.steps[2], steps.map((p) => p.accuracy));
		assert.deepEqual(data.checkpoints, [ckpts.map((p) => p.step), ckpts.map((p) => p.auc)]);
		const last = steps[N - 1];
		assert.equal(await page.textContent('#lp-step'), N.toLocaleString('en-US'));
		assert.equal(await page.textContent('#lp-count'), String(last.count));
		assert.equal(await page.textContent('#lp-loss'), last.loss.toFixed(6));
		assert.equal(await page.textContent('#lp-acc'), last.accuracy.toFixed(4));
		assert.equal(await page.textContent('#lc-step'), N.toLocaleString('en-US'));
		assert.equal(await page.textContent('#lc-label'), 'epoch-2');
		assert.equal(await page.textContent('#lc-auc'), fmtAuc(ckpts[1].auc));
		assert.equal(await page.textContent('#lc-loss'), ckpts[1].loss.toFixed(6));

		// Drag to zoom (uPlot's default) narrows the step axis.
		const over = await page.locator('#steps-chart .u-over').boundingBox();
		await page.mouse.move(over.x + over.width * 0.3, over.y + over.height / 2);
		await page.mouse.down();
		await page.mouse.move(over.x + over.width * 0.6, over.y + over.height / 2, { steps: 5 });
		await page.mouse.up();
		const zoomed = (await page.evaluate(() => window.lossdDashboard.chartData())).stepsX;
		assert.ok(zoomed[0] > 200 && zoomed[1] < 900, `zoomed x ${zoomed}`);

		await page.screenshot({ path: join(OUT, 'history-1400.png'), fullPage: true });
		await assertNoCutOff(page, 1400);
		await assertNoCutOff(page, 1920);
		await assertNoCutOff(page, 700);
		await page.screenshot({ path: join(OUT, 'history-700.png'), fullPage: true });
		await page.setViewportSize({ width: 1400, height: 1000 });

		// Export: every CSV page of the step series in one file.
		const csv = (await call(srv, 'GET', `/v1/streams/${id}/history?series=steps&format=csv&limit=10000`)).text;
		assert.equal(csv.trim().split('\n').length, N + 1);
		const [down] = await Promise.all([page.waitForEvent('download'), page.click('#export-steps')]);
		assert.equal(down.suggestedFilename(), `${id}-steps.csv`);
		assert.equal(readFileSync(await down.path(), 'utf8'), csv);
		const ckcsv = (await call(srv, 'GET', `/v1/streams/${id}/history?series=checkpoints&format=csv`)).text;
		const [down2] = await Promise.all([page.waitForEvent('download'), page.click('#export-ckpts')]);
		assert.equal(readFileSync(await down2.path(), 'utf8'), ckcsv);

		// Survives a reload: the series is the server's, not the tab's.
		await page.reload();
		await page.waitForSelector(`#steps-chart[data-points="${N}"]`, { timeout: 15000 });
		assert.equal(await page.textContent('#lc-auc'), fmtAuc(ckpts[1].auc));

		// Search: a tag filter and a name prefix, both answered by the server.
		await page.fill('#search', 'tag:split:val');
		await page.waitForFunction((want) => [...document.querySelectorAll('#streams tbody tr')].map((r) => r.dataset.id).join() === want, old.json.id, { timeout: 10000 });
		await page.fill('#search', 'run7');
		await page.waitForFunction((want) => [...document.querySelectorAll('#streams tbody tr')].map((r) => r.dataset.id).join() === want, id, { timeout: 10000 });
		await page.fill('#search', 'nothing-like-this');
		await page.waitForSelector('#empty:not([hidden])', { timeout: 10000 });
		assert.match(await page.textContent('#empty'), /No stream matches/);
		// Clicking a tag filters by it.
		await page.fill('#search', '');
		await page.locator(`#streams tbody tr[data-id="${old.json.id}"] .tag`, { hasText: 'run=r6' }).waitFor({ timeout: 10000 });
		await page.locator(`#streams tbody tr[data-id="${old.json.id}"] .tag`, { hasText: 'run=r6' }).click();
		assert.equal(await page.inputValue('#search'), 'tag:run:r6');
		await page.waitForFunction((want) => [...document.querySelectorAll('#streams tbody tr')].map((r) => r.dataset.id).join() === want, old.json.id, { timeout: 10000 });
		// An update moves a stream to the top of the unfiltered list.
		await page.fill('#search', '');
		assert.equal((await call(srv, 'POST', `/v1/streams/${old.json.id}/update`, batch(5, 20))).status, 200);
		await page.waitForFunction((want) => document.querySelector('#streams tbody tr')?.dataset.id === want, old.json.id, { timeout: 10000 });

		assertLocalOnly(w, srv);
		assert.deepEqual(w.bad, [], 'replies >= 400');
		assert.deepEqual(w.errors, [], 'console errors (CSP violations included)');
	} finally {
		await page.close();
		await srv.stop();
	}
});

// A training run as a user would see it: a train stream posting a few
// hundred steps of falling loss, a validation stream checkpointed with
// reset at each epoch's end, and the train stream checkpointed too.
test('a realistic run: screenshot at 1400 px (docs/img/dashboard.png with LOSSD_DOCS_SCREENSHOT=1)', async () => {
	const srv = await startLossd();
	const page = await browser.newPage();
	try {
		const tags = (split) => ({ run: 'resnet18-0412', split });
		const train = (await call(srv, 'POST', '/v1/streams', { name: 'resnet18-0412/train', loss: 'binary_crossentropy', tags: tags('train') })).json;
		const val = (await call(srv, 'POST', '/v1/streams', { name: 'resnet18-0412/val', loss: 'binary_crossentropy', tags: tags('val') })).json;
		let s = 20260412;
		const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
		const gauss = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
		// The model's margin grows with training: loss falls, AUC rises.
		const make = (n, skill) => {
			const y_true = [];
			const y_pred = [];
			for (let i = 0; i < n; i++) {
				const y = rnd() < 0.45 ? 1 : 0;
				const z = (y ? 1 : -1) * skill + 1.1 * gauss();
				y_true.push(y);
				y_pred.push(1 / (1 + Math.exp(-z)));
			}
			return { y_true, y_pred };
		};
		const STEPS = 300;
		for (let step = 1; step <= STEPS; step++) {
			const skill = 0.2 + 2.2 * (1 - Math.exp(-step / 90));
			assert.equal((await call(srv, 'POST', `/v1/streams/${train.id}/update`, { ...make(64, skill), step })).status, 200);
			if (step % 60 === 0) {
				const label = `epoch-${step / 60}`;
				for (let b = 0; b < 4; b++) assert.equal((await call(srv, 'POST', `/v1/streams/${val.id}/update`, { ...make(128, skill * 0.85), step })).status, 200);
				assert.equal((await call(srv, 'POST', `/v1/streams/${val.id}/checkpoint`, { step, label, reset: step < STEPS })).status, 201);
				assert.equal((await call(srv, 'POST', `/v1/streams/${train.id}/checkpoint`, { step, label })).status, 201);
			}
		}
		const w = watch(page);
		await page.setViewportSize({ width: 1400, height: 1050 });
		await page.goto(`${srv.url}/#stream=${train.id}`);
		await page.waitForSelector(`#steps-chart[data-points="${STEPS}"]`, { timeout: 15000 });
		await page.waitForSelector('#ckpt-chart[data-points="5"]', { timeout: 15000 });
		const ck = await allHistory(srv, train.id, 'checkpoints');
		assert.ok(ck[4].auc > ck[0].auc, 'AUC rises over the run');
		const st = await allHistory(srv, train.id, 'steps');
		assert.ok(st[STEPS - 1].loss < st[0].loss, 'loss falls over the run');
		// Overlay: the val stream's checkpoint AUCs, chosen by the run's tag.
		await page.selectOption('#overlay', 'run:resnet18-0412');
		await page.waitForFunction((v) => window.lossdDashboard.chartData().overlay.join() === v, val.id, { timeout: 10000 });
		const vck = await allHistory(srv, val.id, 'checkpoints');
		assert.equal(vck.length, 5);
		const od = await page.evaluate(() => window.lossdDashboard.chartData().checkpoints);
		assert.deepEqual(od, [ck.map((p) => p.step), ck.map((p) => p.auc), vck.map((p) => p.auc)]);
		// ... and its epoch-end validation loss on the train stream's step chart
		const vst = await allHistory(srv, val.id, 'steps');
		assert.deepEqual(vst.map((p) => [p.step, p.count]), [60, 120, 180, 240, 300].map((x) => [x, 512]));
		const sd = await page.evaluate(() => window.lossdDashboard.chartData().steps);
		assert.deepEqual(sd[0], st.map((p) => p.step));
		assert.deepEqual(sd[3], st.map((p) => vst.find((v) => v.step === p.step)?.loss ?? null));
		await page.waitForTimeout(300);
		const shot = join(OUT, 'dashboard-run.png');
		await page.screenshot({ path: shot });
		if (process.env.LOSSD_DOCS_SCREENSHOT === '1') {
			const dst = join(root, 'docs', 'img', 'dashboard.png');
			mkdirSync(dirname(dst), { recursive: true });
			copyFileSync(shot, dst);
			assert.ok(statSync(dst).size < 400 * 1024, `docs screenshot ${statSync(dst).size} bytes`);
		}
		assertLocalOnly(w, srv);
		assert.deepEqual(w.bad, [], 'replies >= 400');
		assert.deepEqual(w.errors, [], 'console errors (CSP violations included)');
	} finally {
		await page.close();
		await srv.stop();
	}
});


// The same [x, y] order the dashboard plots a curve in (web/app.js curveData).
function sortedCurve(c) {
	const idx = c.x.map((_, i) => i).sort((a, b) => c.x[a] - c.x[b] || a - b);
	return [idx.map((i) => c.x[i]), idx.map((i) => c.y[i])];
}

// Values on the union of steps, null where a stream has no point (web/app.js renderSeries).
function onSteps(xs, pts, key) {
	const m = new Map(pts.map((p) => [p.step, p[key] ?? null]));
	return xs.map((x) => (m.has(x) ? m.get(x) : null));
}

test('multi-class: the per-class table and the class picker show the API\'s per-class values; train and val step series overlay by tag', async () => {
	const srv = await startLossd();
	const page = await browser.newPage();
	try {
		const C = 5;
		const cfg = (split) => ({
			name: `cls-run/${split}`, method: 'exact', num_classes: C, from_logits: true,
			loss: { loss: 'sparse_categorical_crossentropy', from_logits: true }, tags: { run: 'cls-run', split },
		});
		const train = (await call(srv, 'POST', '/v1/streams', cfg('train'))).json;
		const val = (await call(srv, 'POST', '/v1/streams', cfg('val'))).json;
		let s = 4242;
		const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
		// Logits that favour the true class more as training goes on.
		const make = (n, skill) => {
			const y_true = [];
			const y_score = [];
			for (let i = 0; i < n; i++) {
				const y = Math.floor(rnd() * C);
				y_true.push(y);
				y_score.push(Array.from({ length: C }, (_, c) => 3 * (rnd() - 0.5) + (c === y ? skill * (1 + c / C) : 0)));
			}
			return { y_true, y_score };
		};
		const STEPS = 60;
		for (let step = 1; step <= STEPS; step++) {
			const skill = 2.5 * (1 - Math.exp(-step / 25));
			assert.equal((await call(srv, 'POST', `/v1/streams/${train.id}/update`, { ...make(24, skill), step })).status, 200);
			if (step % 10 === 0) {
				const u = await call(srv, 'POST', `/v1/streams/${val.id}/update`, { ...make(40, skill * 0.8), step });
				assert.equal(u.status, 200, u.text);
			}
		}
		const w = watch(page);
		await page.setViewportSize({ width: 1400, height: 1000 });
		await page.goto(`${srv.url}/#stream=${train.id}`);
		await page.waitForSelector(`#steps-chart[data-points="${STEPS}"]`, { timeout: 15000 });
		await page.locator('#pc-fig').waitFor({ state: 'visible', timeout: 10000 });

		// The per-class table: every class, its AUC and counts from the
		// reading, its loss and precision/recall/F1 from loss_detail.
		const want = (await call(srv, 'GET', `/v1/streams/${train.id}`)).json;
		assert.equal(want.per_class.length, C);
		const rows = await page.$$eval('#per-class tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
		const lossRows = new Map(want.loss_detail.per_class.map((c) => [c.class, c]));
		const f4 = (x) => (x === null || x === undefined ? '—' : x.toFixed(4));
		assert.deepEqual(rows, want.per_class.map((c) => {
			const l = lossRows.get(c.class);
			return [String(c.class), fmtAuc(c.auc), c.positives.toLocaleString('en-US'), c.negatives.toLocaleString('en-US'),
				f4(l.loss_mean), f4(l.precision), f4(l.recall), f4(l.f1)];
		}));
		assert.ok(new Set(want.per_class.map((c) => fmtAuc(c.auc))).size > 1, 'classes differ in AUC');

		// The pooled curve first, then class 3 from the picker: the plotted
		// points are the API's curve of that class.
		const pooled = (await call(srv, 'GET', `/v1/streams/${train.id}?curve=true&max_points=512`)).json;
		await page.waitForFunction((n) => window.lossdDashboard.chartData().curve[0].length === n, pooled.curve.x.length, { timeout: 10000 });
		assert.deepEqual((await page.evaluate(() => window.lossdDashboard.chartData().curve)).slice(0, 2), sortedCurve(pooled.curve));
		await page.selectOption('#class-pick', '3');
		const c3 = (await call(srv, 'GET', `/v1/streams/${train.id}?curve=true&max_points=512&class=3`)).json;
		await page.waitForFunction((t) => document.getElementById('curve-class-auc').textContent === t, `· class 3, AUC ${fmtAuc(c3.per_class[3].auc)}`, { timeout: 10000 });
		await page.waitForFunction((x) => JSON.stringify(window.lossdDashboard.chartData().curve[0]) === x, JSON.stringify(sortedCurve(c3.curve)[0]), { timeout: 10000 });
		assert.deepEqual((await page.evaluate(() => window.lossdDashboard.chartData().curve)).slice(0, 2), sortedCurve(c3.curve));
		assert.notDeepEqual(sortedCurve(c3.curve), sortedCurve(pooled.curve));
		assert.equal(await page.getAttribute('#per-class tbody tr.selected', 'data-class'), '3');
		// A row click picks that class too.
		await page.click('#per-class tbody tr[data-class="1"]');
		const c1 = (await call(srv, 'GET', `/v1/streams/${train.id}?curve=true&max_points=512&class=1`)).json;
		await page.waitForFunction((t) => document.getElementById('curve-class-auc').textContent === t, `· class 1, AUC ${fmtAuc(c1.per_class[1].auc)}`, { timeout: 10000 });
		assert.equal(await page.inputValue('#class-pick'), '1');
		assert.deepEqual((await page.evaluate(() => window.lossdDashboard.chartData().curve)).slice(0, 2), sortedCurve(c1.curve));

		// Overlay by the run's tag: val's loss and accuracy over steps on the
		// train chart, on the union of both streams' steps.
		await page.selectOption('#overlay', 'run:cls-run');
		await page.waitForFunction((v) => window.lossdDashboard.chartData().overlay.join() === v, val.id, { timeout: 10000 });
		await page.waitForFunction(() => window.lossdDashboard.chartData().steps.length === 5, null, { timeout: 10000 });
		const tst = await allHistory(srv, train.id, 'steps');
		const vst = await allHistory(srv, val.id, 'steps');
		assert.equal(vst.length, STEPS / 10);
		const xs = [...new Set([...tst, ...vst].map((p) => p.step))].sort((a, b) => a - b);
		const data = await page.evaluate(() => window.lossdDashboard.chartData().steps);
		assert.deepEqual(data, [xs, onSteps(xs, tst, 'loss'), onSteps(xs, tst, 'accuracy'), onSteps(xs, vst, 'loss'), onSteps(xs, vst, 'accuracy')]);
		assert.ok(vst.every((p) => typeof p.loss === 'number' && typeof p.accuracy === 'number'));
		assert.match(await page.textContent('#overlay-note'), /cls-run\/val \(dashed\)/);

		await page.waitForTimeout(300);
		await page.screenshot({ path: join(OUT, 'multiclass-1400.png'), fullPage: true });
		await assertNoCutOff(page, 1400);
		await assertNoCutOff(page, 1920);
		await assertNoCutOff(page, 700);
		await page.screenshot({ path: join(OUT, 'multiclass-700.png'), fullPage: true });
		assertLocalOnly(w, srv);
		assert.deepEqual(w.bad, [], 'replies >= 400');
		assert.deepEqual(w.errors, [], 'console errors (CSP violations included)');
	} finally {
		await page.close();
		await srv.stop();
	}
});
