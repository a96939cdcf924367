// render-docs.mjs - renders openapi.yaml into one static HTML page (web/docs.html).
//
// Why not Redoc or Swagger UI: both are large client-side apps whose
// offline builds inline their bundle and state as <script> blocks, which
// the server's Content-Security-Policy (script-src 'self', no inline)
// forbids. This page needs no script at all: every operation, parameter,
// body, reply and schema is plain HTML with anchors; the style is
// /ui/docs.css.
//
// Deterministic: the same spec gives byte-identical output (no dates, no
// absolute paths), so scripts/vendor-web.sh --check can diff it.
// It understands the subset of OpenAPI 3.1 that openapi.yaml uses
// (local $refs, allOf/oneOf, type arrays); it does not validate the spec
// (redocly lint does that).
//
// Usage: node web/tools/render-docs.mjs openapi.yaml > web/docs.html
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';

const spec = yaml.load(readFileSync(process.argv[2], 'utf8'));
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

function esc(s) {
	return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

// A tiny Markdown subset: paragraphs, "- " lists, `code`, **bold**.
function inline(s) {
	return esc(s)
		.replace(/`([^`]+)`/g, '<code>$1</code>')
		.replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>');
}
function md(text) {
	if (!text) return '';
	const out = [];
	for (const block of String(text).trim().split(/\n\s*\n/)) {
		const lines = block.split('\n');
		if (lines.every((l) => /^\s*[-*] /.test(l) || /^\s{2,}\S/.test(l))) {
			const items = [];
			for (const l of lines) {
				if (/^\s*[-*] /.test(l)) items.push(l.replace(/^\s*[-*] /, ''));
				else items[items.length - 1] += ' ' + l.trim();
			}
			out.push('<ul>' + items.map((i) => `<li>${inline(i)}</li>`).join('') + '</ul>');
		} else {
			out.push(`<p>${inline(lines.join(' '))}</p>`);
		}
	}
	return out.join('\n');
}

function refName(ref) {
	return ref.split('/').pop();
}
function resolve(obj) {
	let o = obj;
	for (let i = 0; o && o.$ref && i < 16; i++) {
		const parts = o.$ref.replace(/^#\//, '').split('/');
		let t = spec;
		for (const p of parts) t = t?.[p];
		o = t ? { ...t, ...Object.fromEntries(Object.entries(o).filter(([k]) => k !== '$ref')) } : null;
	}
	return o || {};
}

// One-line description of a schema's type, with links to named schemas.
function typeOf(s) {
	if (!s) return '';
	if (s.$ref) return `<a href="#schema-${esc(refName(s.$ref))}">${esc(refName(s.$ref))}</a>`;
	if (s.oneOf) return s.oneOf.map(typeOf).join(' | ');
	if (s.anyOf) return s.anyOf.map(typeOf).join(' | ');
	if (s.allOf) return s.allOf.map(typeOf).join(' &amp; ');
	let t = Array.isArray(s.type) ? s.type.join(' | ') : s.type || 'any';
	if (s.type === 'array' || (Array.isArray(s.type) && s.type.includes('array'))) t = `array of ${typeOf(s.items) || 'any'}`;
	else t = esc(t);
	if (s.enum) t += ` <span class="enum">(${s.enum.map((v) => `<code>${esc(JSON.stringify(v))}</code>`).join(', ')})</span>`;
	if (s.const !== undefined) t += ` <code>${esc(JSON.stringify(s.const))}</code>`;
	return t;
}
function constraints(s) {
	const c = [];
	for (const k of ['default', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minLength', 'maxLength', 'minItems', 'maxItems', 'pattern', 'contentEncoding']) {
		if (s && s[k] !== undefined) c.push(`${k}: <code>${esc(JSON.stringify(s[k]))}</code>`);
	}
	return c.join(', ');
}

function propsTable(s) {
	const rows = [];
	const req = new Set(s.required || []);
	for (const part of s.allOf || []) {
		if (part.$ref) rows.push(`<tr><td colspan="3">all fields of ${typeOf(part)}</td></tr>`);
	}
	for (const [name, p] of Object.entries(s.properties || {})) {
		const r = resolve(p.$ref ? { $ref: p.$ref } : {});
		const desc = p.description || '';
		rows.push(`<tr><td><code>${esc(name)}</code>${req.has(name) ? ' <span class="req">required</span>' : ''}</td>` +
			`<td>${typeOf(p.$ref ? { $ref: p.$ref } : p)}${constraints(p.$ref ? r : p) ? `<div class="cons">${constraints(p)}</div>` : ''}</td>` +
			`<td>${md(desc)}${p.properties || (p.items && p.items.properties) ? nested(p) : ''}</td></tr>`);
	}
	if (!rows.length) return '';
	return `<table><thead><tr><th>field</th><th>type</th><th>meaning</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}
function nested(p) {
	const inner = p.properties ? p : p.items;
	return `<details><summary>fields</summary>${propsTable(inner)}</details>`;
}

function schemaBlock(name, s) {
	let h = `<section class="schema" id="schema-${esc(name)}"><h3>${esc(name)}</h3>${md(s.description)}`;
	if (s.oneOf) h += `<p>one of: ${s.oneOf.map(typeOf).join(', ')}</p>` + s.oneOf.filter((o) => o.properties).map(propsTable).join('');
	if (!s.properties && !s.oneOf && !s.allOf) h += `<p>${typeOf(s)}${constraints(s) ? ' — ' + constraints(s) : ''}</p>`;
	h += propsTable(s);
	if (s.additionalProperties === false || s.unevaluatedProperties === false) h += '<p class="note">No other fields are accepted.</p>';
	return h + '</section>';
}

function bodyContent(content) {
	if (!content) return '';
	return Object.entries(content).map(([mt, c]) => {
		let h = `<div class="media"><code>${esc(mt)}</code> ${c.schema ? typeOf(c.schema) : ''}</div>`;
		const ex = c.example !== undefined ? [['example', { value: c.example }]] : Object.entries(c.examples || {});
		for (const [k, e] of ex) {
			h += `<details><summary>example: ${esc(e.summary || k)}</summary><pre>${esc(JSON.stringify(e.value, null, 2))}</pre></details>`;
		}
		return h;
	}).join('');
}

function operation(path, method, op, shared) {
	const id = op.operationId || `${method}-${path}`;
	let h = `<section class="op" id="op-${esc(id)}"><h3><span class="m m-${method}">${method.toUpperCase()}</span> <code>${esc(path)}</code></h3>`;
	h += `<p class="summary">${inline(op.summary || '')}</p>${md(op.description)}`;
	const sec = op.security || spec.security || [];
	const open = sec.every((s) => Object.keys(s).length === 0);
	h += `<p class="auth">${open ? 'No token needed.' : 'Bearer token when the server runs with <code>--tokens-file</code>.'}</p>`;
	const params = [...(shared || []), ...(op.parameters || [])].map(resolve);
	if (params.length) {
		h += '<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th><th>meaning</th></tr></thead><tbody>';
		for (const p of params) {
			h += `<tr><td><code>${esc(p.name)}</code>${p.required ? ' <span class="req">required</span>' : ''}</td><td>${esc(p.in)}</td>` +
				`<td>${typeOf(p.schema)}${constraints(p.schema) ? `<div class="cons">${constraints(p.schema)}</div>` : ''}</td><td>${md(p.description)}</td></tr>`;
		}
		h += '</tbody></table>';
	}
	if (op.requestBody) {
		const rb = resolve(op.requestBody);
		h += `<h4>Request body${rb.required ? ' <span class="req">required</span>' : ''}</h4>${md(rb.description)}${bodyContent(rb.content)}`;
	}
	h += '<h4>Replies</h4><table><thead><tr><th>status</th><th>meaning</th><th>body</th></tr></thead><tbody>';
	for (const [code, r0] of Object.entries(op.responses || {}).sort(([a], [b]) => a.localeCompare(b))) {
		const r = resolve(r0);
		h += `<tr><td><code>${esc(code)}</code></td><td>${md(r.description)}</td><td>${bodyContent(r.content)}</td></tr>`;
	}
	return h + '</tbody></table></section>';
}

function render() {
	const info = spec.info || {};
	const byTag = new Map((spec.tags || []).map((t) => [t.name, { tag: t, ops: [] }]));
	for (const [path, item] of Object.entries(spec.paths || {})) {
		for (const m of METHODS) {
			if (!item[m]) continue;
			const tag = (item[m].tags || ['other'])[0];
			if (!byTag.has(tag)) byTag.set(tag, { tag: { name: tag }, ops: [] });
			byTag.get(tag).ops.push([path, m, item[m], item.parameters]);
		}
	}
	let nav = '';
	let body = '';
	for (const { tag, ops } of byTag.values()) {
		if (!ops.length) continue;
		nav += `<li><a href="#tag-${esc(tag.name)}">${esc(tag.name)}</a><ul>` +
			ops.map(([p, m, op]) => `<li><a href="#op-${esc(op.operationId || `${m}-${p}`)}"><span class="m m-${m}">${m.toUpperCase()}</span> ${esc(p)}</a></li>`).join('') + '</ul></li>';
		body += `<section class="tag" id="tag-${esc(tag.name)}"><h2>${esc(tag.name)}</h2>${md(tag.description)}` +
			ops.map(([p, m, op, shared]) => operation(p, m, op, shared)).join('') + '</section>';
	}
	const schemas = Object.entries(spec.components?.schemas || {});
	nav += `<li><a href="#schemas">schemas</a><ul>${schemas.map(([n]) => `<li><a href="#schema-${esc(n)}">${esc(n)}</a></li>`).join('')}</ul></li>`;
	body += `<section id="schemas"><h2>Schemas</h2>${schemas.map(([n, s]) => schemaBlock(n, s)).join('')}</section>`;
	return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(info.title || 'API')} ${esc(info.version || '')} — API reference</title>
<link rel="icon" href="/ui/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/docs.css">
</head>
<body>
<nav><p class="brand"><a href="/">${esc(info.title || '')}</a> <span>${esc(info.version || '')}</span></p><ul>${nav}</ul></nav>
<main>
<header><h1>${esc(info.title || '')} API reference</h1><p class="summary">${inline(info.summary || '')}</p>${md(info.description)}
<p>Machine-readable: <a href="/openapi.yaml">/openapi.yaml</a> (OpenAPI ${esc(spec.openapi)}). Dashboard: <a href="/">/</a>.
This page is generated from that file by <code>web/tools/render-docs.mjs</code>.</p></header>
${body}
</main>
</body>
</html>
`;
}

process.stdout.write(render());
