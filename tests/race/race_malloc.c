/*
 * race_malloc.c - srv__malloc_setup (server/src/server.c) against workers
 * that call malloc_trim at the same moment, as http.c's workers do after
 * large bodies that end together. Where malloc is not glibc's (the sanitize
 * stage's AddressSanitizer), glibc's allocator was set up by the first of
 * those calls, on a worker; two at once left the count of threads on its
 * main arena one short and glibc aborted as the second exited ("malloc
 * assertion failure in __malloc_arena_thread_freeres"), in about one
 * process in six. srv__malloc_setup sets it up on the main thread first.
 * Each of ROUNDS child processes (the setup happens once a process) calls
 * it, then starts THREADS threads that wait at a barrier, trim together
 * and exit; every child must exit with status 0. With glibc's own malloc
 * (no sanitizer) the main thread has set the allocator up long before, so
 * this passes either way; it matters under AddressSanitizer. A plain
 * executable, exit status 0 = pass.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server.h"

#define ROUNDS  40
#define THREADS 8

static pthread_barrier_t together;

static void *worker(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&together);
	malloc_trim(0);
	return NULL;
}

static int child(void)
{
	srv__malloc_setup();
	pthread_t t[THREADS];
	pthread_barrier_init(&together, NULL, THREADS);
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, worker, NULL) != 0)
			return 2;
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	return 0;
}

int main(void)
{
	int bad = 0;
	for (int r = 0; r < ROUNDS; r++) {
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			perror("race_malloc: fork");
			return 1;
		}
		if (pid == 0)
			_exit(child());
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "race_malloc: round %d: the child %s %d\n", r,
			        WIFSIGNALED(st) ? "died of signal" : "exited with",
			        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
			bad++;
		}
	}
	printf("race_malloc: %d of %d processes failed\n", bad, ROUNDS);
	return bad ? 1 : 0;
}
