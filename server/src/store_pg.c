/*
 * store_pg.c - the PostgreSQL backend of the store interface (store.h).
 * Built only with libpq; without it srv__store_pg_backend() is NULL and a
 * postgresql:// store URL is refused at start.
 */
#include "store.h"

const srv__store_backend *srv__store_pg_backend(void)
{
	return NULL;
}
