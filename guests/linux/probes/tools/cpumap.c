/*
 * cpumap: CPU loads and stores from user space at physical addresses Linux was not given,
 * through three mappings of each page: /dev/mem (Linux's own policy applies), /dev/physmap
 * (device memory, no policy) and /dev/physmap_wb (cacheable, as memremap maps RAM). Every
 * access runs under a SIGBUS/SIGSEGV handler, so an external abort from spumone ends that
 * access only.
 *
 *   cpumap NAME=ADDR[,w] ...          every access must abort (or the mapping be refused);
 *                                     with ,w a store is tried too
 *   cpumap NAME=ADDR@OFF=VALUE ...    an emulated frame: a 32-bit load at ADDR+OFF must give
 *                                     VALUE (what spumone's emulation answers), nothing else
 *
 * Prints one line per target and path; exits 0 if every target was contained, 1 if not.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static sigjmp_buf jump;
static volatile sig_atomic_t last_signal;

static void on_fault(int sig)
{
	last_signal = sig;
	siglongjmp(jump, 1);
}

struct target {
	const char *name;
	uint64_t addr;
	int store;
	int emulated;
	uint64_t off;
	uint32_t value;
};

static int parse(char *arg, struct target *t)
{
	char *eq = strchr(arg, '=');
	char *end;

	if (!eq)
		return -1;
	*eq = 0;
	t->name = arg;
	t->addr = strtoull(eq + 1, &end, 0);
	if (*end == ',' && end[1] == 'w') {
		t->store = 1;
	} else if (*end == '@') {
		t->emulated = 1;
		t->off = strtoull(end + 1, &end, 0);
		if (*end != '=')
			return -1;
		t->value = strtoul(end + 1, &end, 0);
	}
	return *end && !(t->store && *end == ',') ? -1 : 0;
}

/* One load (and a store with t->store) through one mapping; 0 if contained. */
static int probe(const struct target *t, const char *path)
{
	uint64_t page = t->addr & ~0xfffULL;
	uint64_t in_page = t->addr - page + (t->emulated ? t->off : 0);
	volatile uint8_t *map;
	uint64_t got;
	int fd = open(path, O_RDWR | O_SYNC);

	if (fd < 0) {
		printf("cpumap: %s 0x%llx via %s: cannot open (%s)\n", t->name,
		       (unsigned long long)t->addr, path, strerror(errno));
		return 0;
	}
	map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, page);
	close(fd);
	if (map == MAP_FAILED) {
		printf("cpumap: %s 0x%llx via %s: mapping refused by Linux (%s)\n", t->name,
		       (unsigned long long)t->addr, path, strerror(errno));
		return 0;
	}
	int leaked = 0;

	if (sigsetjmp(jump, 1) == 0) {
		if (t->emulated)
			got = *(volatile uint32_t *)(map + in_page);
		else
			got = *(volatile uint64_t *)(map + in_page);
		if (t->emulated && got == t->value) {
			printf("cpumap: %s 0x%llx+0x%llx via %s: emulated value 0x%llx, contained\n",
			       t->name, (unsigned long long)t->addr, (unsigned long long)t->off,
			       path, (unsigned long long)got);
		} else {
			printf("cpumap: %s 0x%llx via %s: LEAK: read 0x%llx%s\n", t->name,
			       (unsigned long long)(t->addr + (t->emulated ? t->off : 0)), path,
			       (unsigned long long)got,
			       t->emulated ? " (not the emulated value)" : "");
			leaked = 1;
		}
	} else {
		printf("cpumap: %s 0x%llx via %s: load aborted (signal %d), contained\n", t->name,
		       (unsigned long long)t->addr, path, (int)last_signal);
	}
	if (t->store) {
		if (sigsetjmp(jump, 1) == 0) {
			*(volatile uint64_t *)(map + in_page) = 0x5350554d4f4e4521ULL;
			printf("cpumap: %s 0x%llx via %s: LEAK: the store did not abort\n", t->name,
			       (unsigned long long)t->addr, path);
			leaked = 1;
		} else {
			printf("cpumap: %s 0x%llx via %s: store aborted (signal %d), contained\n",
			       t->name, (unsigned long long)t->addr, path, (int)last_signal);
		}
	}
	munmap((void *)map, 4096);
	return leaked;
}

int main(int argc, char **argv)
{
	static const char *paths[] = { "/dev/mem", "/dev/physmap", "/dev/physmap_wb" };
	struct sigaction sa;
	int leaks = 0, i, p;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fault;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: cpumap NAME=ADDR[,w]|NAME=ADDR@OFF=VALUE ...\n");
		return 2;
	}
	for (i = 1; i < argc; i++) {
		struct target t = { 0 };

		if (parse(argv[i], &t)) {
			fprintf(stderr, "cpumap: bad target %s\n", argv[i]);
			return 2;
		}
		for (p = 0; p < 3; p++)
			leaks += probe(&t, paths[p]);
	}
	printf("cpumap: %d targets, %d leaks\n", argc - 1, leaks);
	return leaks ? 1 : 0;
}
