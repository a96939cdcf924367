/*
 * bodymem.c - arenas for request bodies decoded as they arrive, kept
 * between requests.
 *
 * Why: a large base64 body is decoded into an arena as it arrives
 * (api/src/body.c). Fresh memory for every request costs a page fault and
 * a page the kernel clears for every 4 KiB: measured as the bound of the
 * large-body benchmark (docs/PERFORMANCE.md), slower than the decoding.
 * An arena given back is kept, its pages resident, and the next large body
 * decodes over them.
 *
 * How: each arena is one private anonymous mapping (MAP_NORESERVE: sized
 * for the largest body the request may send, paid for only as written).
 * Idle arenas wait in a short list; together they keep at most `keep`
 * written bytes resident: an arena given back beyond that has its pages
 * past the share returned to the system (MADV_DONTNEED), and one that
 * keeps nothing, or finds the list full, is unmapped. take() prefers the
 * idle arena big enough that has the most pages resident.
 *
 * Lock order: mu is a leaf. It does not count bytes against the body
 * budget (http.c does, as the body writes them).
 */
#include "bodymem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define IDLE_MAX 4

typedef struct idle {
	void *p;
	size_t cap, used;
} idle;

struct srv__bodymem {
	pthread_mutex_t mu;
	size_t keep, kept; /* written bytes the idle arenas keep resident */
	idle list[IDLE_MAX];
	int n;
};

srv__bodymem *srv__bodymem_new(size_t keep)
{
	srv__bodymem *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	pthread_mutex_init(&m->mu, NULL);
	m->keep = keep;
	return m;
}

void srv__bodymem_free(srv__bodymem *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->n; i++)
		munmap(m->list[i].p, m->list[i].cap);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

void *srv__bodymem_take(srv__bodymem *m, size_t size, size_t *cap)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int best = -1;
	void *p;

	pthread_mutex_lock(&m->mu);
	for (int i = 0; i < m->n; i++)
		if (m->list[i].cap >= size && (best < 0 || m->list[i].used > m->list[best].used))
			best = i;
	if (best >= 0) {
		idle e = m->list[best];
		m->list[best] = m->list[--m->n];
		m->kept -= e.used;
		pthread_mutex_unlock(&m->mu);
		*cap = e.cap;
		return e.p;
	}
	pthread_mutex_unlock(&m->mu);
	if (size > SIZE_MAX - page)
		return NULL;
	size = (size + page - 1) / page * page;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
	         -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	*cap = size;
	return p;
}

void srv__bodymem_give(srv__bodymem *m, void *p, size_t cap, size_t used)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	if (!p)
		return;
	used = used < cap ? (used + page - 1) / page * page : cap;
	if (used > cap)
		used = cap;
	pthread_mutex_lock(&m->mu);
	size_t share = m->keep > m->kept ? m->keep - m->kept : 0;
	share = share / page * page;
	if (share == 0 || m->n == IDLE_MAX) {
		pthread_mutex_unlock(&m->mu);
		munmap(p, cap);
		return;
	}
	if (used > share) {
		/* what is above the cap goes back to the system */
		madvise((char *)p + share, used - share, MADV_DONTNEED);
		used = share;
	}
	m->list[m->n++] = (idle){p, cap, used};
	m->kept += used;
	pthread_mutex_unlock(&m->mu);
}
