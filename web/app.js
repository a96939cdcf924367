// app.js - lossd's dashboard: the streams, their AUC, count and loss, and
// for the chosen stream its curve and its AUC over time, polled live.
//
// It reads only the public JSON API (GET /v1/streams, GET /v1/streams/{id}),
// the same calls any client makes, with the bearer token the user pasted
// (kept in sessionStorage, so it dies with the tab). "AUC over time" is a
// client-side series: the values polled since the page was opened, kept in
// memory; the server keeps no history. No inline script, no eval, no
// innerHTML of server data: the page runs under a strict
// Content-Security-Policy and shows stream names as text only.
'use strict';

(function () {
	const POLL_MS = 3000;
	const MAX_STREAMS = 200; // details fetched per poll
	const MAX_HISTORY = 2400; // points kept per stream (2 hours at 3 s)
	const TOKEN_KEY = 'lossd.token';

	const $ = (id) => document.getElementById(id);
	const history = new Map(); // id -> {t: [], auc: []}
	let selected = null;
	let charts = { id: null, curve: null, hist: null, kind: null };
	let busy = false;
	let lastList = [];

	// The one format used for every AUC on the page (tests compare with it).
	function fmtAuc(x) {
		return x === null || x === undefined ? '—' : Number(x).toFixed(4);
	}
	function fmtNum(x, digits) {
		if (x === null || x === undefined) return '—';
		return Number(x).toFixed(digits);
	}
	function fmtInt(x) {
		return x === null || x === undefined ? '—' : Number(x).toLocaleString('en-US');
	}

	function token() {
		return sessionStorage.getItem(TOKEN_KEY) || '';
	}

	class HttpError extends Error {
		constructor(status, body) {
			super(`${status} ${body && body.code ? body.code : ''}`.trim());
			this.status = status;
			this.body = body;
		}
	}

	async function api(path) {
		const headers = { Accept: 'application/json' };
		const t = token();
		if (t) headers.Authorization = `Bearer ${t}`;
		const r = await fetch(path, { headers, cache: 'no-store' });
		let body = null;
		try {
			body = await r.json();
		} catch (e) {
			body = null;
		}
		if (!r.ok) throw new HttpError(r.status, body);
		return body;
	}

	function setStatus(text, kind) {
		const s = $('status');
		s.textContent = text;
		s.className = `status ${kind || ''}`;
	}

	function el(tag, attrs, text) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
		if (text !== undefined) e.textContent = text;
		return e;
	}

	function record(id, auc) {
		if (auc === null || auc === undefined) return;
		let h = history.get(id);
		if (!h) {
			h = { t: [], auc: [] };
			history.set(id, h);
		}
		h.t.push(Date.now() / 1000);
		h.auc.push(auc);
		if (h.t.length > MAX_HISTORY) {
			h.t.shift();
			h.auc.shift();
		}
	}

	function renderList(list, results) {
		const tbody = $('streams').tBodies[0];
		tbody.replaceChildren();
		for (const s of list) {
			const r = results.get(s.id) || {};
			const tr = el('tr', { 'data-id': s.id, tabindex: '0' });
			if (s.id === selected) tr.className = 'selected';
			const name = el('td', { class: 'name' });
			name.append(el('span', { class: 'label' }, s.name || '(unnamed)'), el('span', { class: 'id', title: s.id }, s.id));
			tr.append(name, el('td', { class: 'method' }, `${s.method || ''}${s.curve === 'pr' ? ' · PR' : ''}`),
				el('td', { class: 'num auc' }, fmtAuc(r.auc)), el('td', { class: 'num' }, fmtInt(r.count ?? s.count)),
				el('td', { class: 'num' }, fmtNum(r.loss, 4)));
			tr.addEventListener('click', () => select(s.id));
			tr.addEventListener('keydown', (e) => {
				if (e.key === 'Enter' || e.key === ' ') select(s.id);
			});
			tbody.append(tr);
		}
		$('stream-count').textContent = list.length ? `(${list.length})` : '';
		$('empty').hidden = list.length > 0;
	}

	function chartWidth(node) {
		return Math.max(280, Math.floor(node.clientWidth || 400));
	}

	function makeCharts(kind) {
		for (const c of [charts.curve, charts.hist]) if (c) c.destroy();
		const cnode = $('curve-chart');
		const hnode = $('history-chart');
		const roc = kind !== 'pr';
		const curveOpts = {
			width: chartWidth(cnode),
			height: 300,
			scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1.02] } },
			axes: [{ label: roc ? 'false positive rate' : 'recall' }, { label: roc ? 'true positive rate' : 'precision' }],
			series: [
				{ label: roc ? 'FPR' : 'recall', value: (u, v) => (v === null ? '—' : v.toFixed(3)) },
				{ label: roc ? 'ROC' : 'PR', stroke: '#1f6feb', width: 2, fill: 'rgba(31,111,235,0.08)', value: (u, v) => (v === null ? '—' : v.toFixed(3)) },
				{ label: roc ? 'chance' : 'base rate', stroke: '#9aa4b2', dash: [6, 4], width: 1, points: { show: false } },
			],
			cursor: { drag: { x: false, y: false } },
			legend: { live: false },
		};
		const histOpts = {
			width: chartWidth(hnode),
			height: 300,
			scales: {
				x: { time: true },
				// Around the values, within [0, 1]: a flat series stays readable.
				y: {
					range: (u, min, max) => {
						if (min === null || max === null) return [0, 1];
						const pad = Math.max((max - min) * 0.1, 0.005);
						return [Math.max(0, min - pad), Math.min(1, max + pad)];
					},
				},
			},
			axes: [{}, {
				label: 'AUC',
				size: 70,
				// Enough decimals to tell the ticks apart when the AUC barely moves.
				values: (u, splits, ax, space, incr) => {
					const dec = Math.min(8, Math.max(2, Math.ceil(-Math.log10(incr || 1))));
					return splits.map((v) => v.toFixed(dec));
				},
			}],
			legend: { live: false },
			series: [{}, { label: 'AUC', stroke: '#0a7d45', width: 2, value: (u, v) => fmtAuc(v), points: { show: true, size: 4 } }],
		};
		charts = {
			id: selected,
			kind,
			curve: new uPlot(curveOpts, [[], [], []], cnode),
			hist: new uPlot(histOpts, [[], []], hnode),
		};
	}

	function curveData(curve, kind, pos, neg) {
		const xs = (curve && curve.x) || [];
		const ys = (curve && curve.y) || [];
		const idx = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b] || a - b);
		const x = idx.map((i) => xs[i]);
		const y = idx.map((i) => ys[i]);
		const base = kind === 'pr' && pos + neg > 0 ? pos / (pos + neg) : null;
		const ref = x.map((v) => (kind === 'pr' ? base : v));
		return [x, y, ref];
	}

	function renderDetail(info, r) {
		$('pick').hidden = true;
		$('detail').hidden = false;
		const kind = info && info.curve === 'pr' ? 'pr' : 'roc';
		$('detail-title').textContent = `${(info && info.name) || r.name || '(unnamed)'} · ${r.id}`;
		$('d-auc').textContent = fmtAuc(r.auc);
		$('d-err').textContent = r.error_bound === null || r.error_bound === undefined ? '—' : r.error_bound === 0 ? '0' : Number(r.error_bound).toExponential(2);
		$('d-count').textContent = fmtInt(r.count);
		$('d-posneg').textContent = `${fmtInt(r.positives)} / ${fmtInt(r.negatives)}`;
		$('d-loss').textContent = fmtNum(r.loss, 4);
		$('d-updates').textContent = fmtInt(r.updates);
		$('curve-caption').textContent = kind === 'pr' ? 'Precision-recall curve' : 'ROC curve';
		if (charts.id !== r.id || charts.kind !== kind || !charts.curve) makeCharts(kind);
		charts.curve.setData(curveData(r.curve, kind, r.positives || 0, r.negatives || 0));
		const h = history.get(r.id) || { t: [], auc: [] };
		charts.hist.setData([h.t.slice(), h.auc.slice()]);
	}

	async function poll() {
		if (busy) return;
		busy = true;
		try {
			const list = (await api('/v1/streams?limit=1000')).streams || [];
			lastList = list;
			const results = new Map();
			await Promise.all(list.slice(0, MAX_STREAMS).map(async (s) => {
				const q = s.id === selected ? '?curve=true&max_points=512' : '';
				try {
					const r = await api(`/v1/streams/${encodeURIComponent(s.id)}${q}`);
					results.set(s.id, r);
					record(s.id, r.auc);
				} catch (e) {
					if (!(e instanceof HttpError) || e.status !== 404) throw e;
				}
			}));
			renderList(list, results);
			if (selected && results.has(selected)) {
				renderDetail(list.find((s) => s.id === selected), results.get(selected));
			} else if (selected && !list.some((s) => s.id === selected)) {
				$('detail').hidden = true;
				$('pick').hidden = false;
			}
			setStatus(`Live: polling every ${POLL_MS / 1000} s.`, 'ok');
			$('updated').textContent = `Last update ${new Date().toLocaleTimeString('en-GB')}`;
		} catch (e) {
			if (e instanceof HttpError && e.status === 401) {
				setStatus(token() ? 'The token was refused (401). Paste a valid one above.' : 'This server needs a bearer token: paste one above.', 'warn');
				$('token').focus();
			} else {
				setStatus(`Cannot reach the API: ${e.message}. Retrying.`, 'err');
			}
		} finally {
			busy = false;
		}
	}

	function select(id) {
		selected = id;
		if (location.hash !== `#stream=${id}`) history_replace(id);
		for (const tr of $('streams').tBodies[0].rows) tr.className = tr.dataset.id === id ? 'selected' : '';
		poll();
	}
	function history_replace(id) {
		window.history.replaceState(null, '', `#stream=${encodeURIComponent(id)}`);
	}

	function init() {
		const m = /^#stream=([A-Za-z0-9_-]{1,128})$/.exec(location.hash);
		if (m) selected = m[1];
		$('token').value = token();
		$('token-form').addEventListener('submit', (e) => {
			e.preventDefault();
			const v = $('token').value.trim();
			if (v) sessionStorage.setItem(TOKEN_KEY, v);
			else sessionStorage.removeItem(TOKEN_KEY);
			poll();
		});
		$('token-clear').addEventListener('click', () => {
			sessionStorage.removeItem(TOKEN_KEY);
			$('token').value = '';
			poll();
		});
		window.addEventListener('resize', () => {
			if (charts.curve) charts.curve.setSize({ width: chartWidth($('curve-chart')), height: 300 });
			if (charts.hist) charts.hist.setSize({ width: chartWidth($('history-chart')), height: 300 });
		});
		poll();
		setInterval(poll, POLL_MS);
	}

	window.lossdDashboard = { fmtAuc, streams: () => lastList };
	if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
	else init();
})();
