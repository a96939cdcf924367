// cors.test.mjs - a page on another origin calls lossd from Debian's
// chromium (playwright-core, no browser download), as a team's dashboard
// would: lossd runs with --cors-origin naming the page's exact origin and a
// tokens file; the page (served by a small node http server on another
// port, hence another origin) creates a stream with its bearer token,
// posts a batch and reads the AUC with fetch(), which makes chromium send
// real preflights. The AUC must be the one computed here. A page served
// from an origin lossd does not list must not get any reply (fetch fails)
// and must leave no stream behind. Run by scripts/ci-browser.sh, or:
//   LOSSD_BIN=build/server/lossd node --test tests/browser/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const BIN = process.env.LOSSD_BIN || join(root, 'build', 'server', 'lossd');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const TOKEN = 'team-a-dashboard-token-0123456789';

// A static page server on a free port: one origin per server.
function pageServer() {
	const srv = createServer((req, res) => {
		res.writeHead(200, { 'Content-Type': 'text/html' });
		res.end('<!doctype html><title>dashboard</title><p>team dashboard</p>');
	});
	return new Promise((ok) => srv.listen(0, '127.0.0.1', () => ok({
		origin: `http://127.0.0.1:${srv.address().port}`,
		close: () => new Promise((done) => srv.close(done)),
	})));
}

function startLossd(args) {
	const dir = mkdtempSync(join(tmpdir(), 'lossd-cors-'));
	const tokens = join(dir, 'tokens');
	writeFileSync(tokens, `${TOKEN} team-a\n`);
	const proc = spawn(BIN, ['--port', '0', '--bind', '127.0.0.1', '--data-dir', join(dir, 'data'),
		'--tokens-file', tokens, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
	const lines = [];
	return new Promise((ok, fail) => {
		let buf = '';
		const timer = setTimeout(() => fail(new Error(`lossd did not start:\n${buf}`)), 10000);
		const onData = (chunk) => {
			buf += chunk.toString();
			const parts = buf.split('\n');
			buf = parts.pop();
			for (const line of parts) {
				let j;
				try {
					j = JSON.parse(line);
				} catch {
					continue;
				}
				lines.push(j);
				if (j.msg === 'listening' && j.port) {
					clearTimeout(timer);
					ok({
						url: `http://127.0.0.1:${j.port}`,
						lines,
						async stop() {
							const done = new Promise((r) => proc.once('exit', r));
							proc.kill('SIGTERM');
							await done;
							rmSync(dir, { recursive: true, force: true });
						},
					});
				}
			}
		};
		proc.stdout.on('data', onData);
		proc.stderr.on('data', onData);
	});
}

// What the dashboard page runs: create, update, read, with a bearer token.
async function dashboardCalls({ api, token }) {
	const h = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
	const out = {};
	try {
		let r = await fetch(`${api}/v1/streams`, { method: 'POST', headers: h,
			body: JSON.stringify({ name: 'browser', method: 'exact' }) });
		out.create = r.status;
		const id = (await r.json()).id;
		r = await fetch(`${api}/v1/streams/${id}/update`, { method: 'POST', headers: h,
			body: JSON.stringify({ y_true: [0, 1, 1, 0, 1], y_score: [0.1, 0.8, 0.35, 0.4, 0.9] }) });
		out.update = r.status;
		r = await fetch(`${api}/v1/streams/${id}`, { headers: { Authorization: h.Authorization } });
		out.read = r.status;
		out.requestId = r.headers.get('X-Request-Id');
		out.result = await r.json();
		r = await fetch(`${api}/v1/streams/${id}`, { method: 'DELETE', headers: h });
		out.delete = r.status;
	} catch (e) {
		out.error = String(e);
	}
	return out;
}

let browser;
let profile;
let allowed;
let other;
let lossd;

before(async () => {
	assert.ok(existsSync(BIN), `no lossd binary at ${BIN} (set LOSSD_BIN)`);
	allowed = await pageServer();
	other = await pageServer();
	lossd = await startLossd(['--cors-origin', allowed.origin]);
	profile = mkdtempSync(join(tmpdir(), 'lossd-chromium-'));
	browser = await chromium.launchPersistentContext(profile, {
		executablePath: CHROMIUM,
		headless: true,
		args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
			'--disable-background-networking', '--disable-component-update', '--disable-sync'],
	});
});

after(async () => {
	if (browser) await browser.close();
	if (profile) rmSync(profile, { recursive: true, force: true });
	if (lossd) await lossd.stop();
	if (allowed) await allowed.close();
	if (other) await other.close();
});

test('a page on a listed origin creates, feeds and reads a stream', async () => {
	const page = await browser.newPage();
	const methods = [];
	page.on('request', (r) => {
		if (r.url().startsWith(lossd.url)) methods.push(r.method());
	});
	await page.goto(`${allowed.origin}/`);
	const out = await page.evaluate(dashboardCalls, { api: lossd.url, token: TOKEN });
	assert.equal(out.error, undefined, JSON.stringify(out));
	assert.deepEqual([out.create, out.update, out.read, out.delete], [201, 200, 200, 204]);
	assert.equal(out.result.count, 5);
	assert.ok(Math.abs(out.result.auc - 5 / 6) < 1e-12, `auc ${out.result.auc}`);
	assert.match(out.requestId, /^[0-9a-f]{32}$/, 'an exposed header is readable');
	// chromium asked first: the bearer token and JSON body need a preflight
	const preflights = lossd.lines.filter((l) => l.method === 'OPTIONS' && l.status === 204);
	assert.ok(preflights.length >= 1, `no OPTIONS 204 in lossd's log: ${methods.join(',')}`);
	await page.close();
});

test('a page on another origin gets nothing', async () => {
	const page = await browser.newPage();
	await page.goto(`${other.origin}/`);
	const before = lossd.lines.filter((l) => l.route === '/v1/streams' && l.method === 'POST').length;
	const out = await page.evaluate(dashboardCalls, { api: lossd.url, token: TOKEN });
	assert.match(out.error || '', /TypeError|Failed to fetch/, JSON.stringify(out));
	assert.equal(out.create, undefined);
	const after = lossd.lines.filter((l) => l.route === '/v1/streams' && l.method === 'POST').length;
	assert.equal(after, before, 'the preflight failed, so the POST was never sent');
	await page.close();
});
