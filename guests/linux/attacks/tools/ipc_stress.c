// SPDX-License-Identifier: GPL-2.0
/*
 * ipc_stress: a scheduler and IPC stress in the manner of hackbench, written for spumone's
 * latency bench. Groups of sender processes write small messages round robin into the pipes
 * of their group's receivers until a deadline, so Linux's scheduler wakes and switches
 * tasks all the time on every CPU. Each message carries a tag that the receivers add up;
 * the counts and sums of both sides must agree, so the run also checks that Linux lost
 * and duplicated nothing while its vCPUs were moved.
 *
 *   ipc_stress [-g GROUPS] [-n PAIRS] [-s SECONDS] [-b BYTES] [-D]
 *
 * -D makes the first receiver drop its first message uncounted: a self-test of the check.
 *
 * Exits 0 when both sides agree, 1 when they do not or a process failed, 2 on bad usage.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_GROUPS 64
#define MAX_PAIRS 64
#define MIN_BYTES 8

/* What each child reports to the parent on the results pipe (one atomic write). */
struct report {
	uint32_t sender;	/* 1 for a sender, 0 for a receiver */
	uint32_t failed;	/* a read or write went wrong */
	uint64_t messages;
	uint64_t sum;
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A tag no two messages of one run share: the sender's number and its sequence number. */
static uint64_t tag(unsigned int sender, uint64_t seq)
{
	/* splitmix64's step: no tag is 0, and a lost message is not cancelled by a duplicate. */
	uint64_t x = (((uint64_t)sender << 40) ^ seq) + 0x9e3779b97f4a7c15ULL;

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly len bytes; returns 1 at a clean end of file, -1 on error or a torn message. */
static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return got == 0 ? 1 : -1;
		got += (size_t)n;
	}
	return 0;
}

static void report(int fd, uint32_t sender, uint32_t failed, uint64_t messages, uint64_t sum)
{
	struct report r = { sender, failed, messages, sum };

	_exit(write_all(fd, &r, sizeof(r)) == 0 && !failed ? 0 : 1);
}

static void receive(int in, int results, size_t bytes, int drop)
{
	char buf[PIPE_BUF];
	uint64_t messages = 0, sum = 0, t;
	int r;

	while ((r = read_all(in, buf, bytes)) == 0) {
		if (drop) {
			drop = 0;
			continue;
		}
		memcpy(&t, buf, sizeof(t));
		sum += t;
		messages++;
	}
	report(results, 0, r < 0, messages, sum);
}

static void send_until(const int *out, unsigned int pairs, unsigned int sender, double deadline,
		       int results, size_t bytes)
{
	char buf[PIPE_BUF];
	uint64_t messages = 0, sum = 0;

	memset(buf, 0x5a, bytes);
	while (now() < deadline) {
		for (unsigned int i = 0; i < pairs; i++) {
			uint64_t t = tag(sender, messages);

			memcpy(buf, &t, sizeof(t));
			if (write_all(out[i], buf, bytes))
				report(results, 1, 1, messages, sum);
			sum += t;
			messages++;
		}
	}
	for (unsigned int i = 0; i < pairs; i++)
		close(out[i]);
	report(results, 1, 0, messages, sum);
}

static unsigned long number(const char *text, unsigned long lo, unsigned long hi, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(text, &end, 10);
	if (errno || *text == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "ipc_stress: %s must be a number from %lu to %lu, not `%s`\n", what,
			lo, hi, text);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	unsigned long groups = 4, pairs = 5, seconds = 5, bytes = 100;
	int results[2], opt, status, failed = 0, drop = 0;
	uint64_t sent = 0, received = 0, sent_sum = 0, received_sum = 0;
	unsigned long children = 0, reports = 0;
	struct report r;
	double start, deadline, elapsed;

	while ((opt = getopt(argc, argv, "g:n:s:b:D")) != -1) {
		switch (opt) {
		case 'g':
			groups = number(optarg, 1, MAX_GROUPS, "-g (groups)");
			break;
		case 'n':
			pairs = number(optarg, 1, MAX_PAIRS, "-n (senders and receivers per group)");
			break;
		case 's':
			seconds = number(optarg, 1, 86400, "-s (seconds)");
			break;
		case 'b':
			bytes = number(optarg, MIN_BYTES, PIPE_BUF, "-b (message bytes)");
			break;
		case 'D':
			drop = 1;
			break;
		default:
			fprintf(stderr,
				"usage: ipc_stress [-g GROUPS] [-n PAIRS] [-s SECONDS] [-b BYTES] [-D]\n");
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "ipc_stress: unexpected argument `%s`\n", argv[optind]);
		return 2;
	}
	if (pipe(results)) {
		perror("ipc_stress: pipe");
		return 1;
	}
	start = now();
	deadline = start + (double)seconds;
	for (unsigned long g = 0; g < groups; g++) {
		int in[MAX_PAIRS], out[MAX_PAIRS];

		for (unsigned long i = 0; i < pairs; i++) {
			int p[2];

			if (pipe(p)) {
				perror("ipc_stress: pipe");
				return 1;
			}
			in[i] = p[0];
			out[i] = p[1];
		}
		/* Each child keeps only its own ends, so a receiver sees EOF once its senders end. */
		for (unsigned long i = 0; i < 2 * pairs; i++) {
			pid_t pid = fork();

			if (pid < 0) {
				perror("ipc_stress: fork");
				return 1;
			}
			if (pid == 0) {
				close(results[0]);
				if (i < pairs) {
					for (unsigned long j = 0; j < pairs; j++) {
						close(out[j]);
						if (j != i)
							close(in[j]);
					}
					receive(in[i], results[1], bytes, drop && g == 0 && i == 0);
				}
				for (unsigned long j = 0; j < pairs; j++)
					close(in[j]);
				send_until(out, (unsigned int)pairs,
					   (unsigned int)(g * MAX_PAIRS + i - pairs), deadline,
					   results[1], bytes);
			}
			children++;
		}
		for (unsigned long i = 0; i < pairs; i++) {
			close(in[i]);
			close(out[i]);
		}
	}
	close(results[1]);
	while (read_all(results[0], &r, sizeof(r)) == 0) {
		reports++;
		failed |= r.failed != 0;
		if (r.sender) {
			sent += r.messages;
			sent_sum += r.sum;
		} else {
			received += r.messages;
			received_sum += r.sum;
		}
	}
	while (wait(&status) > 0)
		failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	elapsed = now() - start;
	if (failed || reports != children || sent != received || sent_sum != received_sum) {
		printf("ipc_stress: FAILED: %lu of %lu processes reported%s; sent %llu messages "
		       "(sum %016llx), received %llu (sum %016llx)\n",
		       reports, children, failed ? ", some failed" : "", (unsigned long long)sent,
		       (unsigned long long)sent_sum, (unsigned long long)received,
		       (unsigned long long)received_sum);
		return 1;
	}
	printf("ipc_stress: %lu groups of %lu senders and %lu receivers, %lu-byte messages, "
	       "%.2f s: %llu messages (%.0f per s), every one received once\n",
	       groups, pairs, pairs, bytes, elapsed, (unsigned long long)received,
	       (double)received / elapsed);
	return 0;
}
