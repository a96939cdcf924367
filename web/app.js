// app.js - lossd's dashboard: the streams (latest update first, filtered
// by name prefix or tag), and for the chosen stream its loss and accuracy
// over training steps, its AUC over checkpoints and its curve, polled live.
// A multi-class stream also gets its per-class table (AUC, counts, loss,
// precision, recall, F1) and a class picker for the curve (the reading's
// ?class=K). "Overlay the streams with tag" draws the other streams of
// that tag (train and val of one run) dashed on both series charts.
//
// It reads only the public JSON API, the same calls any client makes, with
// the bearer token the user pasted (kept in sessionStorage, so it dies with
// the tab):
//   GET /v1/streams?sort=updated&order=desc&name_prefix=&tag=K:V  the list
//   GET /v1/streams/{id}?curve=true&class=K                        a reading
//   GET /v1/streams/{id}/history?series=steps|checkpoints          the series
// The series are the server's (they survive a reload): the page walks the
// history's `next` cursor, at most HISTORY_PAGES pages, and refetches only
// when the stream's updated_at moves. "Export as CSV" downloads the same
// route with format=csv (every page, following the Link rel="next"
// header), fetched with the token and saved through a Blob.
// No inline script, no eval, no innerHTML of server data: the page runs
// under a strict Content-Security-Policy and shows stream names as text.
'use strict';

(function () {
	const POLL_MS = 3000;
	const MAX_STREAMS = 200; // details fetched per poll
	const HISTORY_LIMIT = 1000; // points per history page
	const HISTORY_PAGES = 50; // pages read per series (50,000 points)
	const TOKEN_KEY = 'lossd.token';
	const OVERLAY_MAX = 8; // streams overlaid
	const OVERLAY_COLORS = ['#7c3aed', '#c2410c', '#0891b2', '#be185d'];

	const $ = (id) => document.getElementById(id);
	let selected = null;
	let charts = { id: null, curve: null, steps: null, ckpt: null, calib: null, kind: null };
	let series = { id: null, stamp: null, steps: [], ckpts: [], complete: true };
	let busy = false;
	let again = false;
	let lastList = [];
	let overlay = { key: '', streams: [] }; // other streams' series, by tag
	const overlayCache = new Map(); // id -> { stamp, steps, ckpts }
	let pick = { id: null, col: -1 }; // the class whose curve is shown (-1: pooled)
	const PER_CLASS_ROWS = 1000; // rows of the per-class table

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
	// RFC 3339 from the server -> "2026-12-06 15:52:03" (UTC, as sent).
	function fmtTime(iso) {
		if (!iso) return '—';
		return String(iso).replace('T', ' ').replace(/\.\d+Z$|Z$/, '');
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

	async function request(path, accept) {
		const headers = { Accept: accept };
		const t = token();
		if (t) headers.Authorization = `Bearer ${t}`;
		return fetch(path, { headers, cache: 'no-store' });
	}

	async function api(path) {
		const r = await request(path, 'application/json');
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

	// A value, or "—" with the server's null_reasons entry beside it.
	function setValue(node, text, reason) {
		node.replaceChildren(text);
		node.removeAttribute('title');
		if (text === '—' && reason) {
			node.append(el('span', { class: 'reason' }, reason));
			node.title = reason;
		}
	}

	// The search box: "tag:KEY:VALUE" words become tag filters (all must
	// match), the rest is the name prefix.
	function listQuery() {
		const q = new URLSearchParams({ limit: '1000', sort: 'updated', order: 'desc' });
		const words = $('search').value.trim().split(/\s+/).filter(Boolean);
		const name = [];
		for (const w of words) {
			if (/^tag:[^:]+:/.test(w)) q.append('tag', w.slice(4));
			else name.push(w);
		}
		if (name.length) q.set('name_prefix', name.join(' '));
		return q;
	}

	function tagChips(tags) {
		const box = el('span', { class: 'tags' });
		for (const [k, v] of Object.entries(tags || {})) {
			const chip = el('button', { type: 'button', class: 'tag', title: `show only tag:${k}:${v}` }, `${k}=${v}`);
			chip.addEventListener('click', (e) => {
				e.stopPropagation();
				$('search').value = `tag:${k}:${v}`;
				poll();
			});
			box.append(chip);
		}
		return box;
	}

	function renderList(list, results) {
		const tbody = $('streams').tBodies[0];
		tbody.replaceChildren();
		for (const s of list) {
			const r = results.get(s.id) || {};
			const tr = el('tr', { 'data-id': s.id, tabindex: '0' });
			if (s.id === selected) tr.className = 'selected';
			const name = el('td', { class: 'name' });
			const method = `${s.method || ''}${s.curve === 'pr' ? ' · PR' : ''}`;
			name.append(el('span', { class: 'label' }, s.name || '(unnamed)'),
				el('span', { class: 'id', title: s.id }, `${method} · ${s.id}`), tagChips(s.tags));
			const when = el('td', { class: 'time', title: `created ${s.created_at || '?'}\nupdated ${s.updated_at || '?'}` });
			const [ud, ut] = fmtTime(s.updated_at).split(' ');
			const [cd, ct] = fmtTime(s.created_at).split(' ');
			const upd = el('span', { class: 'updated' });
			upd.append(el('span', {}, ud), ' ', el('span', {}, ut || ''));
			// The creation day, or its time when that is the update's day too.
			when.append(upd, el('span', { class: 'created' }, `created ${cd === ud && ct ? ct : cd}`));
			tr.append(name, el('td', { class: 'num auc' }, fmtAuc(r.auc)), el('td', { class: 'num' }, fmtInt(r.count ?? s.count)),
				el('td', { class: 'num' }, fmtNum(r.loss, 4)), when);
			tr.addEventListener('click', () => select(s.id));
			tr.addEventListener('keydown', (e) => {
				if (e.key === 'Enter' || e.key === ' ') select(s.id);
			});
			tbody.append(tr);
		}
		$('stream-count').textContent = list.length ? `(${list.length})` : '';
		$('empty').hidden = list.length > 0;
		$('empty').textContent = $('search').value.trim() ? 'No stream matches the filter.' : 'No streams yet. Create one with POST /v1/streams.';
	}

	function chartWidth(node) {
		return Math.max(260, Math.floor(node.clientWidth || 400));
	}

	// Ticks with enough decimals to tell them apart when a value barely moves.
	function fineTicks(u, splits, ax, space, incr) {
		const dec = Math.min(8, Math.max(2, Math.ceil(-Math.log10(incr || 1))));
		return splits.map((v) => v.toFixed(dec));
	}
	// Around the values, within [0, 1]: a flat series stays readable.
	function unitRange(u, min, max) {
		if (min === null || max === null) return [0, 1];
		const pad = Math.max((max - min) * 0.1, 0.005);
		return [Math.max(0, min - pad), Math.min(1, max + pad)];
	}

	function makeCharts(kind) {
		for (const c of [charts.curve, charts.steps, charts.ckpt, charts.calib]) if (c) c.destroy();
		const cnode = $('curve-chart');
		const snode = $('steps-chart');
		const knode = $('ckpt-chart');
		const roc = kind !== 'pr';
		const curveOpts = {
			width: chartWidth(cnode),
			height: 280,
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
		const stepsOpts = {
			width: chartWidth(snode),
			height: 300,
			scales: { x: { time: false }, loss: {}, acc: { range: unitRange } },
			axes: [
				{ label: 'step' },
				{ scale: 'loss', label: 'loss', size: 70, values: fineTicks, stroke: '#c2410c' },
				{ scale: 'acc', label: 'accuracy', side: 1, size: 70, values: fineTicks, stroke: '#1f6feb', grid: { show: false } },
			],
			series: [
				{ label: 'step', value: (u, v) => (v === null ? '—' : fmtInt(v)) },
				{ label: 'loss', scale: 'loss', stroke: '#c2410c', width: 2, value: (u, v) => fmtNum(v, 4) },
				{ label: 'accuracy', scale: 'acc', stroke: '#1f6feb', width: 2, value: (u, v) => fmtNum(v, 4) },
			].concat(...overlay.streams.map((o, i) => [
				{ label: `${o.name} loss`, scale: 'loss', stroke: OVERLAY_COLORS[i % OVERLAY_COLORS.length], width: 2, dash: [6, 3], spanGaps: true, value: (u, v) => fmtNum(v, 4) },
				{ label: `${o.name} accuracy`, scale: 'acc', stroke: OVERLAY_COLORS[i % OVERLAY_COLORS.length], width: 1, dash: [2, 3], spanGaps: true, value: (u, v) => fmtNum(v, 4) },
			])),
		};
		const ckptOpts = {
			width: chartWidth(knode),
			height: 280,
			scales: { x: { time: false }, y: { range: unitRange } },
			axes: [{ label: 'step' }, { label: 'AUC', size: 70, values: fineTicks }],
			series: [
				{ label: 'step', value: (u, v) => (v === null ? '—' : fmtInt(v)) },
				{ label: 'AUC', stroke: '#0a7d45', width: 2, value: (u, v) => fmtAuc(v), points: { show: true, size: 6 } },
			].concat(overlay.streams.map((o, i) => ({
				label: o.name, stroke: OVERLAY_COLORS[i % OVERLAY_COLORS.length], width: 2, dash: [6, 3], spanGaps: true,
				value: (u, v) => fmtAuc(v), points: { show: true, size: 6 },
			}))),
		};
		charts = {
			id: selected,
			kind,
			curve: new uPlot(curveOpts, [[], [], []], cnode),
			steps: new uPlot(stepsOpts, [[], [], [], ...overlay.streams.flatMap(() => [[], []])], snode),
			ckpt: new uPlot(ckptOpts, [[], [], ...overlay.streams.map(() => [])], knode),
			overlayKey: overlay.key,
			calib: null,
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

	// New data for a chart, keeping the user's zoom: uPlot resets the
	// scales on setData unless told not to, so a zoomed-in chart (its x
	// scale narrower than the old data) keeps its window.
	function feed(chart, data) {
		const xs = chart.data && chart.data[0];
		const sc = chart.scales.x;
		const zoomed = xs && xs.length > 1 && sc.min !== null && (sc.min > xs[0] || sc.max < xs[xs.length - 1]);
		chart.setData(data, !zoomed);
	}

	// Every page of one series, at most HISTORY_PAGES.
	async function fetchSeries(id, name) {
		const out = [];
		let after = null;
		for (let page = 0; page < HISTORY_PAGES; page++) {
			const q = new URLSearchParams({ series: name, limit: String(HISTORY_LIMIT) });
			if (after) q.set('after', after);
			const r = await api(`/v1/streams/${encodeURIComponent(id)}/history?${q}`);
			for (const p of r[name] || []) out.push(p);
			if (!r.next) return { points: out, complete: true };
			after = r.next;
		}
		return { points: out, complete: false };
	}

	async function loadSeries(info) {
		const stamp = info.updated_at || '';
		if (series.id === info.id && series.stamp === stamp) return;
		const [steps, ckpts] = await Promise.all([fetchSeries(info.id, 'steps'), fetchSeries(info.id, 'checkpoints')]);
		series = { id: info.id, stamp, steps: steps.points, ckpts: ckpts.points, complete: steps.complete && ckpts.complete };
	}

	function renderSeries() {
		const st = series.steps;
		const ck = series.ckpts;
		// Each chart on the union of the steps of its streams; a stream
		// without a value at a step has null there (a gap, bridged).
		const union = (lists) => {
			if (lists.length === 1) return lists[0].map((p) => p.step);
			return [...new Set([].concat(...lists.map((l) => l.map((p) => p.step))))].sort((a, b) => a - b);
		};
		const at = (xs, pts, key) => {
			if (pts.length === xs.length && pts.every((p, i) => p.step === xs[i])) return pts.map((p) => p[key] ?? null);
			const m = new Map(pts.map((p) => [p.step, p[key] ?? null]));
			return xs.map((x) => (m.has(x) ? m.get(x) : null));
		};
		const sx = union([st, ...overlay.streams.map((o) => o.steps)]);
		feed(charts.steps, [sx, at(sx, st, 'loss'), at(sx, st, 'accuracy'),
			...overlay.streams.flatMap((o) => [at(sx, o.steps, 'loss'), at(sx, o.steps, 'accuracy')])]);
		const xs = union([ck, ...overlay.streams.map((o) => o.points)]);
		feed(charts.ckpt, [xs, at(xs, ck, 'auc'), ...overlay.streams.map((o) => at(xs, o.points, 'auc'))]);
		$('overlay-note').textContent = overlay.streams.length
			? `· ${overlay.streams.map((o) => o.name).join(', ')} (dashed)`
			: $('overlay').value ? '· no other stream has this tag' : '';
		$('steps-chart').dataset.points = String(st.length);
		$('ckpt-chart').dataset.points = String(ck.length);
		const more = series.complete ? '' : ` (first ${HISTORY_PAGES * HISTORY_LIMIT} shown)`;
		$('steps-note').textContent = st.length ? `· ${fmtInt(st.length)} points${more}` : '· no step points yet (post updates with "step")';
		$('ckpt-note').textContent = ck.length ? `· ${fmtInt(ck.length)}` : '· none yet (POST …/checkpoint)';
		const p = st[st.length - 1];
		const why = (p && p.null_reasons) || {};
		$('lp-step').textContent = p ? (p.step_end > p.step ? `${fmtInt(p.step)}–${fmtInt(p.step_end)}` : fmtInt(p.step)) : '—';
		$('lp-count').textContent = p ? fmtInt(p.count) : '—';
		setValue($('lp-loss'), p ? fmtNum(p.loss, 6) : '—', why.loss);
		setValue($('lp-acc'), p ? fmtNum(p.accuracy, 4) : '—', why.accuracy);
		const c = ck[ck.length - 1];
		const cwhy = (c && c.null_reasons) || {};
		$('lc-step').textContent = c ? fmtInt(c.step) : '—';
		$('lc-label').textContent = c ? c.label || '' : '—';
		setValue($('lc-auc'), c ? fmtAuc(c.auc) : '—', cwhy.auc);
		setValue($('lc-loss'), c ? fmtNum(c.loss, 6) : '—', cwhy.loss);
	}

	function renderDetail(info, r) {
		$('pick').hidden = true;
		$('detail').hidden = false;
		const kind = info && info.curve === 'pr' ? 'pr' : 'roc';
		const why = r.null_reasons || {};
		$('detail-title').textContent = `${(info && info.name) || r.name || '(unnamed)'} · ${r.id}`;
		const meta = $('d-meta');
		meta.replaceChildren(`created ${fmtTime(r.created_at)} · updated ${fmtTime(r.updated_at)} UTC`);
		if (r.tags && Object.keys(r.tags).length) meta.append(' · ', tagChips(r.tags));
		setValue($('d-auc'), fmtAuc(r.auc), why.auc);
		$('d-err').textContent = r.error_bound === null || r.error_bound === undefined ? '—' : r.error_bound === 0 ? '0' : Number(r.error_bound).toExponential(2);
		$('d-count').textContent = fmtInt(r.count);
		$('d-posneg').textContent = `${fmtInt(r.positives)} / ${fmtInt(r.negatives)}`;
		setValue($('d-loss'), fmtNum(r.loss, 4), why.loss);
		$('d-ppl-box').hidden = !('perplexity' in r);
		setValue($('d-ppl'), fmtNum(r.perplexity, 4), why.perplexity);
		$('d-updates').textContent = fmtInt(r.updates);
		$('curve-caption').textContent = kind === 'pr' ? 'Precision-recall curve' : 'ROC curve';
		renderClasses(r);
		const sel = $('overlay');
		const want = ['', ...Object.entries(r.tags || {}).map(([k, v]) => `${k}:${v}`)];
		if ([...sel.options].map((o) => o.value).join('\n') !== want.join('\n')) {
			const keep = sel.value;
			sel.replaceChildren(...want.map((v) => el('option', { value: v }, v ? v.replace(':', '=') : 'none')));
			sel.value = want.includes(keep) ? keep : '';
		}
		if (charts.id !== r.id || charts.kind !== kind || !charts.curve || charts.overlayKey !== overlay.key) makeCharts(kind);
		charts.curve.setData(curveData(r.curve, kind, r.positives || 0, r.negatives || 0));
		renderSeries();
		renderExtra(r);
	}

	// Multi-class streams: the class picker and the per-class table, the
	// reading's per_class joined with loss_detail.per_class by class.
	function renderClasses(r) {
		const pc = r.per_class || [];
		const many = pc.length > 1;
		$('class-pick-box').hidden = !many;
		$('pc-fig').hidden = !many;
		const col = pick.id === r.id ? pick.col : -1;
		const shown = pc.find((c) => c.class === col);
		$('curve-class-auc').textContent = many ? (shown ? `· class ${col}, AUC ${fmtAuc(shown.auc)}` : `· all classes pooled${r.average ? ` (AUC: ${r.average} average)` : ''}`) : '';
		if (!many) return;
		const sel = $('class-pick');
		const want = ['-1', ...pc.map((c) => String(c.class))];
		if ([...sel.options].map((o) => o.value).join() !== want.join()) {
			sel.replaceChildren(...want.map((v) => el('option', { value: v }, v === '-1' ? 'all (pooled)' : `class ${v}`)));
		}
		sel.value = String(col);
		const loss = new Map(((r.loss_detail && r.loss_detail.per_class) || []).map((c) => [c.class, c]));
		const tbody = $('per-class').tBodies[0];
		tbody.replaceChildren();
		for (const c of pc.slice(0, PER_CLASS_ROWS)) {
			const l = loss.get(c.class) || {};
			const tr = el('tr', { 'data-class': String(c.class), tabindex: '0' });
			if (c.class === col) tr.className = 'selected';
			tr.append(el('td', { class: 'num' }, String(c.class)), el('td', { class: 'num auc' }, fmtAuc(c.auc)),
				el('td', { class: 'num' }, fmtInt(c.positives)), el('td', { class: 'num' }, fmtInt(c.negatives)),
				el('td', { class: 'num' }, fmtNum(l.loss_mean, 4)), el('td', { class: 'num' }, fmtNum(l.precision, 4)),
				el('td', { class: 'num' }, fmtNum(l.recall, 4)), el('td', { class: 'num' }, fmtNum(l.f1, 4)));
			const choose = () => pickClass(c.class === col ? -1 : c.class);
			tr.addEventListener('click', choose);
			tr.addEventListener('keydown', (e) => {
				if (e.key === 'Enter' || e.key === ' ') choose();
			});
			tbody.append(tr);
		}
		$('pc-note').textContent = pc.length > PER_CLASS_ROWS ? `· first ${PER_CLASS_ROWS} of ${fmtInt(pc.length)} classes` : `· ${pc.length} classes`;
	}

	function pickClass(col) {
		pick = { id: selected, col };
		poll();
	}

	// The reading's query for the selected stream: its curve, of the
	// picked class when one is.
	function readQuery() {
		const col = pick.id === selected ? pick.col : -1;
		return `?curve=true&max_points=512${col >= 0 ? `&class=${col}` : ''}`;
	}

	// Calibration (streams created with calibration): ECE / Brier and the
	// reliability diagram, shown only where the reading has them.
	function renderExtra(r) {
		const cal = r.calibration;
		$('d-ece-row').hidden = !cal;
		$('calib-fig').hidden = !cal;
		if (!cal) {
			if (charts.calib) charts.calib.destroy();
			charts.calib = null;
			return;
		}
		$('d-ece').textContent = `${fmtNum(cal.ece, 4)} / ${fmtNum(cal.brier, 4)}`;
		const bins = (cal.bins || []).filter((b) => b.count > 0 && b.confidence !== null && b.accuracy !== null);
		const data = [bins.map((b) => b.confidence), bins.map((b) => b.accuracy), bins.map((b) => b.confidence)];
		if (!charts.calib) {
			const node = $('calib-chart');
			charts.calib = new uPlot({
				width: chartWidth(node),
				height: 300,
				scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1.02] } },
				axes: [{ label: 'confidence' }, { label: 'accuracy' }],
				series: [
					{ label: 'confidence', value: (u, v) => (v === null ? '—' : v.toFixed(3)) },
					{ label: 'accuracy', stroke: '#b35c00', width: 2, points: { show: true, size: 6 }, value: (u, v) => (v === null ? '—' : v.toFixed(3)) },
					{ label: 'perfect', stroke: '#9aa4b2', dash: [6, 4], width: 1, points: { show: false } },
				],
				cursor: { drag: { x: false, y: false } },
				legend: { live: false },
			}, data, node);
		} else {
			charts.calib.setData(data);
		}
	}

	// The streams sharing the chosen tag (not the selected one), each with
	// its step series and checkpoints (refetched only when its updated_at
	// moves); the key names the set, so the charts are rebuilt when it
	// changes.
	async function loadOverlay() {
		const tag = $('overlay').value;
		const streams = [];
		if (tag) {
			const q = new URLSearchParams({ tag, limit: String(OVERLAY_MAX + 1), sort: 'name', order: 'asc' });
			const list = ((await api(`/v1/streams?${q}`)).streams || []).filter((s) => s.id !== selected).slice(0, OVERLAY_MAX);
			for (const s of list) {
				let c = overlayCache.get(s.id);
				if (!c || c.stamp !== (s.updated_at || '')) {
					const [st, ck] = await Promise.all([fetchSeries(s.id, 'steps'), fetchSeries(s.id, 'checkpoints')]);
					c = { stamp: s.updated_at || '', steps: st.points, ckpts: ck.points };
					overlayCache.set(s.id, c);
				}
				streams.push({ id: s.id, name: s.name || s.id, steps: c.steps, points: c.ckpts });
			}
		}
		for (const id of overlayCache.keys()) if (!streams.some((o) => o.id === id)) overlayCache.delete(id);
		overlay = { key: `${selected}|${tag}|${streams.map((s) => s.id).join(',')}`, streams };
	}

	async function fetchList() {
		try {
			return (await api(`/v1/streams?${listQuery()}`)).streams || [];
		} catch (e) {
			// A shared PostgreSQL store lists by id only (501 not_implemented).
			if (!(e instanceof HttpError) || e.status !== 501) throw e;
			return (await api('/v1/streams?limit=1000')).streams || [];
		}
	}

	async function poll() {
		if (busy) {
			again = true;
			return;
		}
		busy = true;
		try {
			const list = await fetchList();
			lastList = list;
			const results = new Map();
			await Promise.all(list.slice(0, MAX_STREAMS).map(async (s) => {
				const q = s.id === selected ? readQuery() : '';
				try {
					results.set(s.id, await api(`/v1/streams/${encodeURIComponent(s.id)}${q}`));
				} catch (e) {
					if (!(e instanceof HttpError) || e.status !== 404) throw e;
				}
			}));
			let info = list.find((s) => s.id === selected);
			// The selected stream stays shown when the filter hides it.
			if (selected && !info) {
				try {
					const r = await api(`/v1/streams/${encodeURIComponent(selected)}${readQuery()}`);
					results.set(selected, r);
					info = r;
				} catch (e) {
					if (!(e instanceof HttpError) || e.status !== 404) throw e;
				}
			}
			if (info) await loadSeries(results.get(selected) || info);
			if (info) await loadOverlay();
			renderList(list, results);
			if (info && results.has(selected)) {
				renderDetail(info, results.get(selected));
			} else if (selected) {
				$('detail').hidden = true;
				$('pick').hidden = false;
			}
			setStatus(`Live: polling every ${POLL_MS / 1000} s.`, 'ok');
			$('updated').textContent = `Last update ${new Date().toLocaleTimeString('en-GB')}`;
		} catch (e) {
			if (e instanceof HttpError && e.status === 401) {
				setStatus(token() ? 'The token was refused (401). Paste a valid one above.' : 'This server needs a bearer token: paste one above.', 'warn');
				$('token').focus();
			} else if (e instanceof HttpError && e.status === 422 && e.body && /tag|name_prefix/.test(e.body.pointer || e.body.detail || '')) {
				setStatus(`The filter was refused: ${e.body.detail || e.body.code}.`, 'warn');
			} else {
				setStatus(`Cannot reach the API: ${e.message}. Retrying.`, 'err');
			}
		} finally {
			busy = false;
			if (again) {
				again = false;
				poll();
			}
		}
	}

	// Every CSV page of a series (the Link rel="next" header), one file.
	async function exportCsv(name) {
		if (!selected) return;
		const id = selected;
		let url = `/v1/streams/${encodeURIComponent(id)}/history?series=${name}&format=csv&limit=10000`;
		let text = '';
		for (let page = 0; url && page < HISTORY_PAGES; page++) {
			const r = await request(url, 'text/csv');
			if (!r.ok) {
				setStatus(`Export failed: ${r.status}.`, 'err');
				return;
			}
			let body = await r.text();
			if (page > 0) body = body.slice(body.indexOf('\n') + 1); // one header row
			text += body;
			const m = /<([^>]+)>;\s*rel="next"/.exec(r.headers.get('Link') || '');
			url = m ? m[1] : null;
		}
		const a = el('a', { href: URL.createObjectURL(new Blob([text], { type: 'text/csv' })), download: `${id}-${name}.csv` });
		document.body.append(a);
		a.click();
		a.remove();
		setTimeout(() => URL.revokeObjectURL(a.href), 10000);
	}

	function select(id) {
		selected = id;
		if (location.hash !== `#stream=${id}`) window.history.replaceState(null, '', `#stream=${encodeURIComponent(id)}`);
		for (const tr of $('streams').tBodies[0].rows) tr.className = tr.dataset.id === id ? 'selected' : '';
		poll();
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
		let typing = null;
		$('search').addEventListener('input', () => {
			clearTimeout(typing);
			typing = setTimeout(poll, 250);
		});
		$('search-form').addEventListener('submit', (e) => {
			e.preventDefault();
			poll();
		});
		$('overlay').addEventListener('change', () => poll());
		$('class-pick').addEventListener('change', () => pickClass(Number($('class-pick').value)));
		$('export-steps').addEventListener('click', () => exportCsv('steps'));
		$('export-ckpts').addEventListener('click', () => exportCsv('checkpoints'));
		window.addEventListener('resize', () => {
			if (charts.curve) charts.curve.setSize({ width: chartWidth($('curve-chart')), height: 280 });
			if (charts.steps) charts.steps.setSize({ width: chartWidth($('steps-chart')), height: 300 });
			if (charts.ckpt) charts.ckpt.setSize({ width: chartWidth($('ckpt-chart')), height: 280 });
		});
		poll();
		setInterval(poll, POLL_MS);
	}

	window.lossdDashboard = {
		fmtAuc,
		streams: () => lastList,
		// What the charts hold, for tests: [x, ...series] per chart.
		chartData: () => ({
			steps: charts.steps ? charts.steps.data.map((a) => Array.from(a)) : null,
			checkpoints: charts.ckpt ? charts.ckpt.data.map((a) => Array.from(a)) : null,
			curve: charts.curve ? charts.curve.data.map((a) => Array.from(a)) : null,
			overlay: overlay.streams.map((o) => o.id),
			stepsX: charts.steps ? [charts.steps.scales.x.min, charts.steps.scales.x.max] : null,
		}),
	};
	if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
	else init();
})();
