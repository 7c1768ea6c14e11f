/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The probes' seeded generator (xorshift64*), shared by the modules and the tools: the same
 * seed gives the same calls and writes, so a failing run can be replayed.
 */
#ifndef PROBE_RNG_H
#define PROBE_RNG_H

static inline unsigned long long probe_next(unsigned long long *state)
{
	unsigned long long x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* A per-thread stream of one seed. */
static inline unsigned long long probe_stream(unsigned long long seed, int n)
{
	return (seed ? seed : 1) ^ (0x9e3779b97f4a7c15ULL * (unsigned long long)(n + 1));
}

#endif
