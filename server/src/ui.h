/*
 * ui.h - the dashboard (/), the API reference (/docs) and their assets
 * (/ui/...), embedded in the binary from web/ at build time.
 */
#ifndef LOSSD_SERVER_UI_H
#define LOSSD_SERVER_UI_H

#include <stdbool.h>

#include <lossd/api.h>

#include "router.h"

struct MHD_Response;

/* True for the routes this module answers. Any thread. */
bool srv__ui_route(enum srv__route route);

/* Fills *out with a new copy of the route's embedded file, 200 with its
 * Content-Type (500 for a route that is not srv__ui_route). Any thread. */
void srv__ui_reply(api_reply *out, enum srv__route route);

/*
 * Adds the caching and browser-security headers of a reply on this route:
 * for the UI routes Cache-Control (no-cache for the pages, 5 minutes for
 * the assets), a strict Content-Security-Policy (everything from this
 * origin, no inline script or style, no framing), nosniff and
 * Referrer-Policy; for every other route "Cache-Control: no-store".
 */
void srv__ui_headers(struct MHD_Response *resp, enum srv__route route);

#endif
