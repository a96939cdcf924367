/*
 * bodymem.h - arenas for request bodies decoded as they arrive (api_body),
 * kept between requests for reuse (bodymem.c).
 */
#ifndef LOSSD_SERVER_BODYMEM_H
#define LOSSD_SERVER_BODYMEM_H

#include <stddef.h>

typedef struct srv__bodymem srv__bodymem;

/* A pool that keeps at most `keep` bytes of idle arenas resident. NULL
 * when out of memory. Main thread. */
srv__bodymem *srv__bodymem_new(size_t keep);

/* Unmaps every idle arena. Accepts NULL. Main thread, once every arena
 * taken was given back. */
void srv__bodymem_free(srv__bodymem *m);

/* An arena of at least size bytes, 64-byte aligned: new (give it back with
 * srv__bodymem_give), *cap its size; NULL when none can be mapped. Its
 * bytes are whatever the last request left there. Any thread. */
void *srv__bodymem_take(srv__bodymem *m, size_t size, size_t *cap);

/* Gives back an arena of cap bytes of which the first `used` were written.
 * Accepts NULL. Any thread. */
void srv__bodymem_give(srv__bodymem *m, void *p, size_t cap, size_t used);

#endif
