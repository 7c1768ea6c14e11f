/*
 * gicstorm: wild writes over the whole (emulated) GIC distributor frame and every
 * redistributor frame Linux's device tree lists, from one thread pinned to each online CPU,
 * through /dev/physmap (physmap.ko). Then every thread toggles the enable bits of all PPIs
 * (the timer PPIs 26, 27 and 30 among them) in every redistributor frame, its own and the
 * other vCPUs'; then all PPIs are held disabled in every frame for a while. Accesses the
 * emulation refuses end in an external abort (SIGBUS), which the thread counts and goes on.
 *
 * Linux must still work afterwards to report, so one thread snapshots the registers Linux
 * configured before the storm and writes them back after it; pending and active bits set by
 * the storm are cleared. Meanwhile Linux may take no interrupt at all (its timers and IPIs
 * disabled by the storm), so the threads run as SCHED_FIFO 99 and never block: they wait for
 * each other spinning, and the restore happens before any of them returns.
 *
 *   gicstorm [-w SECONDS] [-t SECONDS] [-h SECONDS] [-s SEED]
 *
 * What is judged is outside Linux: the RTOS keeps its rounds, spumone stays up.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../rng.h"

#define GICD_SIZE 0x10000
#define GICR_FRAME 0x20000
#define SGI 0x10000
#define MAX_CPUS 8
#define MAX_FRAMES 8

static volatile uint8_t *gicd;
static volatile uint8_t *gicr;
static uint64_t gicd_phys, gicr_phys;
static int frames;
static double wild_secs = 3, toggle_secs = 5, hold_secs = 14, sweep_cap_secs = 60;
static struct worker *hold_owner;
static uint64_t seed;
static pthread_barrier_t start;
static volatile int arrived;
static int threads;

/* A barrier that never sleeps (a sleeping thread might never be woken: no interrupts). */
static void spin_barrier(int *round)
{
	int target = ++*round * threads;

	__atomic_add_fetch(&arrived, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&arrived, __ATOMIC_ACQUIRE) < target)
		;
}

static __thread sigjmp_buf jump;
static __thread volatile int in_access;

static void on_fault(int sig)
{
	(void)sig;
	if (in_access)
		siglongjmp(jump, 1);
	_exit(3);
}

/* One store of `size` bytes; 0 if it went through, 1 if it aborted. */
static int store(volatile uint8_t *p, int size, uint64_t v)
{
	if (sigsetjmp(jump, 1)) {
		in_access = 0;
		return 1;
	}
	in_access = 1;
	switch (size) {
	case 1: *(volatile uint8_t *)p = v; break;
	case 2: *(volatile uint16_t *)p = v; break;
	case 4: *(volatile uint32_t *)p = v; break;
	default: *(volatile uint64_t *)p = v; break;
	}
	in_access = 0;
	return 0;
}

/* A 32- or 64-bit load; `ok` says whether it aborted. */
static uint64_t load(volatile uint8_t *p, int size, int *ok)
{
	uint64_t v;

	if (sigsetjmp(jump, 1)) {
		in_access = 0;
		*ok = 0;
		return 0;
	}
	in_access = 1;
	v = size == 8 ? *(volatile uint64_t *)p : *(volatile uint32_t *)p;
	in_access = 0;
	*ok = 1;
	return v;
}

/*
 * Linux must live to report: a wild write must not set pending or active its IPIs (SGIs
 * 0-7: a stray CPU_STOP parks a CPU for good). So the value of a store that covers the
 * first byte of GICR_ISPENDR0 or GICR_ISACTIVER0 has that byte cleared.
 */
static uint64_t tame(volatile uint8_t *p, int size, uint64_t v)
{
	static const uint64_t ipi_bytes[] = { SGI + 0x200, SGI + 0x300 };

	if (p < gicr || p >= gicr + (uint64_t)frames * GICR_FRAME)
		return v;
	uint64_t off = (uint64_t)(p - gicr) % GICR_FRAME;

	for (int i = 0; i < 2; i++)
		if (ipi_bytes[i] >= off && ipi_bytes[i] < off + size)
			v &= ~(0xffULL << (8 * (ipi_bytes[i] - off)));
	return v;
}


static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The GICv3 node's first two reg entries: the distributor and the redistributor region. */
static int find_gic(void)
{
	DIR *d = opendir("/proc/device-tree");
	struct dirent *e;
	char path[512], buf[256];
	int found = 0;

	if (!d)
		return -1;
	while (!found && (e = readdir(d))) {
		snprintf(path, sizeof(path), "/proc/device-tree/%s/compatible", e->d_name);
		FILE *f = fopen(path, "r");
		size_t n;

		if (!f)
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		if (strcmp(buf, "arm,gic-v3"))
			continue;
		snprintf(path, sizeof(path), "/proc/device-tree/%s/reg", e->d_name);
		f = fopen(path, "r");
		if (!f)
			break;
		uint8_t reg[64];

		n = fread(reg, 1, sizeof(reg), f);
		fclose(f);
		/* Two (address, size) pairs of two cells each. */
		if (n < 32)
			break;
		uint64_t v[4];

		for (int i = 0; i < 4; i++) {
			v[i] = 0;
			for (int b = 0; b < 8; b++)
				v[i] = v[i] << 8 | reg[16 * (i / 2) + 8 * (i % 2) + b];
		}
		gicd_phys = v[0];
		gicr_phys = v[2];
		frames = v[3] / GICR_FRAME;
		found = 1;
	}
	closedir(d);
	return found ? 0 : -1;
}

static volatile uint8_t *map(uint64_t phys, size_t size)
{
	int fd = open("/dev/physmap", O_RDWR | O_SYNC);
	void *p;

	if (fd < 0)
		return NULL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, phys);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

/* The registers Linux configures, saved before the storm. */
struct saved {
	uint32_t d_ctlr, d_group[32], d_enable[32], d_prio[256], d_cfg[64], d_grpmod[32];
	uint64_t d_route[988];
	uint32_t r_waker[MAX_FRAMES], r_group[MAX_FRAMES], r_enable[MAX_FRAMES];
	uint32_t r_prio[MAX_FRAMES][8], r_cfg[MAX_FRAMES][2];
	int spis;
} saved;

static uint32_t rd32(volatile uint8_t *p)
{
	int ok;
	uint32_t v = load(p, 4, &ok);

	return ok ? v : 0;
}

static void snapshot(void)
{
	int ok;
	uint32_t typer = load(gicd + 4, 4, &ok);

	saved.spis = ok ? ((typer & 0x1f) + 1) * 32 : 64;
	if (saved.spis > 1020)
		saved.spis = 1020;
	saved.d_ctlr = rd32(gicd);
	for (int i = 1; i < saved.spis / 32; i++) {
		saved.d_group[i] = rd32(gicd + 0x80 + 4 * i);
		saved.d_enable[i] = rd32(gicd + 0x100 + 4 * i);
		saved.d_grpmod[i] = rd32(gicd + 0xd00 + 4 * i);
	}
	for (int i = 8; i < saved.spis / 4; i++)
		saved.d_prio[i] = rd32(gicd + 0x400 + 4 * i);
	for (int i = 2; i < saved.spis / 16; i++)
		saved.d_cfg[i] = rd32(gicd + 0xc00 + 4 * i);
	for (int i = 32; i < saved.spis; i++)
		saved.d_route[i - 32] = load(gicd + 0x6000 + 8 * i, 8, &ok);
	for (int f = 0; f < frames; f++) {
		volatile uint8_t *r = gicr + f * GICR_FRAME;

		saved.r_waker[f] = rd32(r + 0x14);
		saved.r_group[f] = rd32(r + SGI + 0x80);
		saved.r_enable[f] = rd32(r + SGI + 0x100);
		for (int i = 0; i < 8; i++)
			saved.r_prio[f][i] = rd32(r + SGI + 0x400 + 4 * i);
		saved.r_cfg[f][0] = rd32(r + SGI + 0xc00);
		saved.r_cfg[f][1] = rd32(r + SGI + 0xc04);
	}
}

static void restore(void)
{
	store(gicd, 4, 0);
	for (int i = 1; i < saved.spis / 32; i++) {
		store(gicd + 0x180 + 4 * i, 4, 0xffffffff);
		store(gicd + 0x280 + 4 * i, 4, 0xffffffff);
		store(gicd + 0x380 + 4 * i, 4, 0xffffffff);
		store(gicd + 0x80 + 4 * i, 4, saved.d_group[i]);
		store(gicd + 0xd00 + 4 * i, 4, saved.d_grpmod[i]);
	}
	for (int i = 8; i < saved.spis / 4; i++)
		store(gicd + 0x400 + 4 * i, 4, saved.d_prio[i]);
	for (int i = 2; i < saved.spis / 16; i++)
		store(gicd + 0xc00 + 4 * i, 4, saved.d_cfg[i]);
	for (int i = 32; i < saved.spis; i++)
		store(gicd + 0x6000 + 8 * i, 8, saved.d_route[i - 32]);
	for (int f = 0; f < frames; f++) {
		volatile uint8_t *r = gicr + f * GICR_FRAME;

		store(r + 0x14, 4, saved.r_waker[f]);
		store(r + SGI + 0x180, 4, ~saved.r_enable[f]);
		store(r + SGI + 0x280, 4, 0xffffffff);
		store(r + SGI + 0x380, 4, 0xffffffff);
		store(r + SGI + 0x80, 4, saved.r_group[f]);
		for (int i = 0; i < 8; i++)
			store(r + SGI + 0x400 + 4 * i, 4, saved.r_prio[f][i]);
		store(r + SGI + 0xc04, 4, saved.r_cfg[f][1]);
		store(r + SGI + 0x100, 4, saved.r_enable[f]);
	}
	for (int i = 1; i < saved.spis / 32; i++)
		store(gicd + 0x100 + 4 * i, 4, saved.d_enable[i]);
	store(gicd, 4, saved.d_ctlr);
}

struct worker {
	pthread_t thread;
	int cpu, index;
	unsigned long writes, swept, aborted, toggles, toggle_aborts;
};

/*
 * The sweep: the distributor's registers up to 0x1000 (CTLR .. NSACR) and its IROUTER
 * array, then per redistributor frame RD_base up to 0x100 and SGI_base up to 0x1000.
 */
#define D_LOW (0x1000 / 4)
#define D_ROUTE ((0x7fe0 - 0x6100) / 8)
#define R_RD (0x100 / 4)
#define R_SGI (0x1000 / 4)

static uint64_t sweep_len(void)
{
	return D_LOW + D_ROUTE + (uint64_t)frames * (R_RD + R_SGI);
}

/* The n-th register of the sweep: its address, and its natural size. */
static int sweep_at(uint64_t n, volatile uint8_t **p)
{
	if (n < D_LOW) {
		*p = gicd + 4 * n;
		return 4;
	}
	n -= D_LOW;
	if (n < D_ROUTE) {
		*p = gicd + 0x6100 + 8 * n;
		return 8;
	}
	n -= D_ROUTE;
	volatile uint8_t *r = gicr + (n / (R_RD + R_SGI)) * GICR_FRAME;

	n %= R_RD + R_SGI;
	*p = n < R_RD ? r + 4 * n : r + SGI + 4 * (n - R_RD);
	return 4;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	unsigned long long s = probe_stream(seed, w->cpu);
	cpu_set_t set;
	double end;

	struct sched_param rt = { .sched_priority = 99 };
	int round = 0;

	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		fprintf(stderr, "gicstorm: cannot pin to cpu %d\n", w->cpu);
	/* Interrupts still work: every thread is up before any of them spins. */
	pthread_barrier_wait(&start);
	if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &rt))
		fprintf(stderr, "gicstorm: no SCHED_FIFO on cpu %d\n", w->cpu);
	spin_barrier(&round);
	/*
	 * Wild writes: first a sweep over every register offset of the distributor and of each
	 * redistributor frame, 32-bit with random values (64-bit over the distributor's IROUTER
	 * array), one in eight with a random size instead (at most sweep_cap_secs); then, until
	 * wild_secs have passed, anywhere in the frames, any size (1, 2, 4, 8 bytes, aligned).
	 */
	end = now() + wild_secs;
	uint64_t total = sweep_len();
	double cap = now() + sweep_cap_secs;

	/* The threads share the sweep (thread k takes every n-th register from k): together
	 * they cover it once, and each writes into every frame. */
	for (uint64_t i = w->index; i < total && now() < cap; i += threads) {
		volatile uint8_t *p;
		int size = sweep_at(i, &p);
		uint64_t r = probe_next(&s);

		if ((r & 7) == 0)
			size = 1 << ((r >> 3) & 3);
		p = (volatile uint8_t *)((uintptr_t)p & ~(uintptr_t)(size - 1));
		w->writes++;
		w->swept++;
		w->aborted += store(p, size, tame(p, size, probe_next(&s)));
	}
	while (now() < end) {
		for (int k = 0; k < 64; k++) {
			uint64_t r = probe_next(&s);
			int size = 1 << (r & 3);
			int frame = (r >> 2) % (frames + 1);
			volatile uint8_t *base = frame ? gicr + (frame - 1) * GICR_FRAME : gicd;
			uint64_t span = frame ? GICR_FRAME : GICD_SIZE;
			uint64_t off = (probe_next(&s) % span) & ~(uint64_t)(size - 1);

			w->writes++;
			w->aborted += store(base + off, size, tame(base + off, size, probe_next(&s)));
		}
	}
	spin_barrier(&round);
	/* Every PPI's enable bit off and on again, in every vCPU's frame. */
	end = now() + toggle_secs;
	while (now() < end) {
		for (int f = 0; f < frames; f++) {
			volatile uint8_t *r = gicr + f * GICR_FRAME + SGI;

			w->toggle_aborts += store(r + 0x180, 4, 0xffff0000);
			w->toggle_aborts += store(r + 0x100, 4, saved.r_enable[f] & 0xffff0000);
			w->toggles++;
		}
	}
	spin_barrier(&round);
	/*
	 * Every PPI disabled in every frame and held so (the timers included): each vCPU's own
	 * state only. A leak to a core the RTOS uses would silence it for the whole hold, longer
	 * than the host allows it to be silent.
	 */
	if (w == hold_owner)
		for (int f = 0; f < frames; f++)
			store(gicr + f * GICR_FRAME + SGI + 0x180, 4, 0xffff0000);
	end = now() + hold_secs;
	while (now() < end)
		;
	spin_barrier(&round);
	if (w == hold_owner)
		restore();
	spin_barrier(&round);
	return NULL;
}

int main(int argc, char **argv)
{
	struct worker workers[MAX_CPUS];
	struct sigaction sa;
	int cpus = 0, opt;

	seed = (uint64_t)time(NULL);
	while ((opt = getopt(argc, argv, "w:t:h:s:")) != -1) {
		if (opt == 'w')
			wild_secs = atof(optarg);
		else if (opt == 'h')
			hold_secs = atof(optarg);
		else if (opt == 't')
			toggle_secs = atof(optarg);
		else if (opt == 's')
			seed = strtoull(optarg, NULL, 0);
		else
			return 2;
	}
	if (!seed)
		seed = 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fault;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	if (find_gic()) {
		printf("gicstorm: no arm,gic-v3 node in /proc/device-tree\n");
		return 2;
	}
	if (frames > MAX_FRAMES)
		frames = MAX_FRAMES;
	gicd = map(gicd_phys, GICD_SIZE);
	gicr = map(gicr_phys, (size_t)frames * GICR_FRAME);
	if (!gicd || !gicr) {
		printf("gicstorm: cannot map the GIC through /dev/physmap (%s)\n", strerror(errno));
		return 2;
	}
	for (int c = 0; c < MAX_CPUS; c++) {
		cpu_set_t set;

		sched_getaffinity(0, sizeof(set), &set);
		if (CPU_ISSET(c, &set))
			workers[cpus++].cpu = c;
	}
	printf("gicstorm: seed %llu; distributor 0x%llx, %d redistributor frames at 0x%llx; "
	       "%d threads, %.1f s of wild writes, %.1f s of PPI toggles, all PPIs off for "
	       "%.1f s\n",
	       (unsigned long long)seed, (unsigned long long)gicd_phys, frames,
	       (unsigned long long)gicr_phys, cpus, wild_secs, toggle_secs, hold_secs);
	snapshot();
	threads = cpus;
	pthread_barrier_init(&start, NULL, cpus);
	hold_owner = &workers[0];
	for (int i = 0; i < cpus; i++) {
		workers[i].writes = workers[i].aborted = workers[i].swept = 0;
		workers[i].index = i;
		workers[i].toggles = workers[i].toggle_aborts = 0;
		pthread_create(&workers[i].thread, NULL, work, &workers[i]);
	}
	for (int i = 0; i < cpus; i++)
		pthread_join(workers[i].thread, NULL);
	for (int i = 0; i < cpus; i++)
		printf("gicstorm: cpu %d: %lu wild writes (%lu in its share of a %llu-register sweep; %lu aborted), "
		       "%lu PPI toggle rounds over %d frames (%lu aborted)\n",
		       workers[i].cpu, workers[i].writes, workers[i].swept,
		       (unsigned long long)sweep_len(), workers[i].aborted, workers[i].toggles,
		       frames, workers[i].toggle_aborts);
	unsigned long swept = 0;

	for (int i = 0; i < cpus; i++)
		swept += workers[i].swept;
	printf("gicstorm: sweep: %lu of %llu registers written\n", swept,
	       (unsigned long long)sweep_len());
	printf("gicstorm: done, GIC state restored\n");
	return 0;
}
