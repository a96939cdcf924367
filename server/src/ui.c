/*
 * ui.c - the dashboard, its assets and the API reference, served from the
 * binary.
 *
 * The files live in web/ (index.html, app.js, style.css, docs.css,
 * favicon.svg, the vendored uPlot in web/vendor/ and docs.html rendered
 * from openapi.yaml); server/CMakeLists.txt turns each into a C array with
 * cmake/Embed.cmake, so lossd needs no files at run time and the C build
 * needs no npm (scripts/vendor-web.sh refreshes the committed files).
 *
 * Each file is its own route in router.c (GET and HEAD only, 405
 * otherwise), answered on the HTTP thread like /openapi.yaml. They hold
 * no data, so they stay open when tokens are configured; the page's own
 * API calls carry the token. The Content-Security-Policy allows only this
 * origin and no inline script or style: app.js never builds markup from
 * server strings, and docs.html has no script at all.
 *
 * Invariant: table[] has one row per UI route, and its arrays are
 * read-only and NUL-terminated after len bytes.
 */
#include "ui.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#define EMBED(sym)                                                                                 \
	extern const char srv_ui_##sym[];                                                          \
	extern const size_t srv_ui_##sym##_len;
EMBED(index_html)
EMBED(docs_html)
EMBED(app_js)
EMBED(style_css)
EMBED(docs_css)
EMBED(favicon_svg)
EMBED(uplot_js)
EMBED(uplot_css)

#define HTML "text/html; charset=utf-8"
#define JS   "text/javascript; charset=utf-8"
#define CSS  "text/css; charset=utf-8"
#define SVG  "image/svg+xml"

static const struct asset {
	enum srv__route route;
	const char *ctype;
	const char *data;
	const size_t *len;
	bool page; /* an HTML page (revalidated each time), else an asset */
} table[] = {
        {SRV_ROUTE_UI_INDEX, HTML, srv_ui_index_html, &srv_ui_index_html_len, true},
        {SRV_ROUTE_UI_DOCS, HTML, srv_ui_docs_html, &srv_ui_docs_html_len, true},
        {SRV_ROUTE_UI_APP_JS, JS, srv_ui_app_js, &srv_ui_app_js_len, false},
        {SRV_ROUTE_UI_STYLE_CSS, CSS, srv_ui_style_css, &srv_ui_style_css_len, false},
        {SRV_ROUTE_UI_DOCS_CSS, CSS, srv_ui_docs_css, &srv_ui_docs_css_len, false},
        {SRV_ROUTE_UI_FAVICON, SVG, srv_ui_favicon_svg, &srv_ui_favicon_svg_len, false},
        {SRV_ROUTE_UI_UPLOT_JS, JS, srv_ui_uplot_js, &srv_ui_uplot_js_len, false},
        {SRV_ROUTE_UI_UPLOT_CSS, CSS, srv_ui_uplot_css, &srv_ui_uplot_css_len, false},
};
#define NASSETS (sizeof(table) / sizeof(table[0]))

/* default-src 'self' already forbids inline script and style; the rest
 * closes what default-src does not cover. */
static const char csp[] = "default-src 'self'; object-src 'none'; base-uri 'none'; "
                          "frame-ancestors 'none'; form-action 'self'";

static const struct asset *find(enum srv__route route)
{
	for (size_t i = 0; i < NASSETS; i++)
		if (table[i].route == route)
			return &table[i];
	return NULL;
}

bool srv__ui_route(enum srv__route route)
{
	return find(route) != NULL;
}

void srv__ui_reply(api_reply *out, enum srv__route route)
{
	const struct asset *a = find(route);

	if (!a) {
		api_reply_error(out, 500, "internal_error", "route %d is not a UI route",
		                (int)route);
		return;
	}
	out->body = malloc(*a->len + 1);
	if (!out->body) {
		api_reply_error(out, 503, "out_of_memory", "no memory to copy a page");
		out->retry_after = 1;
		return;
	}
	memcpy(out->body, a->data, *a->len);
	out->body[*a->len] = '\0';
	out->len = *a->len;
	out->status = 200;
	out->content_type = a->ctype;
}

void srv__ui_headers(struct MHD_Response *resp, enum srv__route route)
{
	const struct asset *a = find(route);

	if (!a) {
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
		return;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
	                        a->page ? "no-cache" : "public, max-age=300");
	MHD_add_response_header(resp, "Content-Security-Policy", csp);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
}
