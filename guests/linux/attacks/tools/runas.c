// SPDX-License-Identifier: GPL-2.0
/*
 * runas: runs a program as an unprivileged user, for the credential attack's victim
 * (busybox's setpriv here cannot change uids, and the initramfs has no user database).
 *
 *   runas UID GID PROGRAM [ARGS...]
 */
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	uid_t uid;
	gid_t gid;

	if (argc < 4) {
		fprintf(stderr, "usage: runas UID GID PROGRAM [ARGS...]\n");
		return 2;
	}
	uid = (uid_t)strtoul(argv[1], NULL, 10);
	gid = (gid_t)strtoul(argv[2], NULL, 10);
	/* Groups and gid first: after setuid we may no longer change them. */
	if (setgroups(0, NULL) || setgid(gid) || setuid(uid)) {
		perror("runas");
		return 1;
	}
	execvp(argv[3], argv + 3);
	perror("runas: exec");
	return 127;
}
