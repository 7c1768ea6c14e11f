// SPDX-License-Identifier: GPL-2.0
/*
 * abort_loop: from one CPU, reads a physical address outside Linux's partition through
 * /dev/mem COUNT times; each read is a stage-2 abort that spumone answers with an external
 * abort (SIGBUS here). Its log must stay rate-limited.
 *
 *   abort_loop CPU PHYS COUNT
 *
 * Prints `abort_loop: N aborts` (reads that faulted).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static sigjmp_buf back;

static void on_bus_error(int sig)
{
	(void)sig;
	siglongjmp(back, 1);
}

int main(int argc, char **argv)
{
	unsigned long phys, count;
	volatile unsigned long i, aborts = 0;
	volatile uint32_t *word;
	struct sigaction sa = { .sa_handler = on_bus_error };
	cpu_set_t set;
	int fd;

	if (argc < 4) {
		fprintf(stderr, "usage: abort_loop CPU PHYS COUNT\n");
		return 2;
	}
	phys = strtoul(argv[2], NULL, 0);
	count = strtoul(argv[3], NULL, 0);
	CPU_ZERO(&set);
	CPU_SET(atoi(argv[1]), &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("abort_loop: sched_setaffinity");
		return 1;
	}
	fd = open("/dev/mem", O_RDONLY | O_SYNC);
	if (fd < 0) {
		perror("abort_loop: /dev/mem");
		return 1;
	}
	word = mmap(NULL, 0x1000, PROT_READ, MAP_SHARED, fd, (off_t)(phys & ~0xFFFUL));
	if (word == MAP_FAILED) {
		perror("abort_loop: mmap");
		return 1;
	}
	word += (phys & 0xFFF) / 4;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	for (i = 0; i < count; i++) {
		if (sigsetjmp(back, 1))
			aborts++;
		else
			(void)*word;
	}
	printf("abort_loop: %lu aborts\n", aborts);
	return 0;
}
