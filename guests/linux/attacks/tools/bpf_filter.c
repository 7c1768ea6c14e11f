// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_filter: part of the benign workload. Loads a two-instruction socket filter
 * ("return 0xffff": keep the whole packet) with the bpf() system call, attaches it to one
 * end of a datagram socket pair, and checks a datagram still passes. The JIT puts the
 * program in executable memory outside kernel text, which an integrity checker must accept.
 */
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_ATTACH_BPF
#define SO_ATTACH_BPF 50
#endif

int main(void)
{
	struct bpf_insn prog[2];
	union bpf_attr attr;
	char log[256] = "", buf[16] = "";
	int fd, sv[2];

	memset(prog, 0, sizeof(prog));
	prog[0].code = BPF_ALU64 | BPF_MOV | BPF_K; /* r0 = 0xffff */
	prog[0].dst_reg = BPF_REG_0;
	prog[0].imm = 0xffff;
	prog[1].code = BPF_JMP | BPF_EXIT;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (unsigned long)prog;
	attr.insn_cnt = 2;
	attr.license = (unsigned long)"GPL";
	attr.log_buf = (unsigned long)log;
	attr.log_size = sizeof(log);
	attr.log_level = 1;
	fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	if (fd < 0) {
		perror("bpf_filter: BPF_PROG_LOAD");
		fprintf(stderr, "%s\n", log);
		return 1;
	}
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0) {
		perror("bpf_filter: socketpair");
		return 1;
	}
	if (setsockopt(sv[1], SOL_SOCKET, SO_ATTACH_BPF, &fd, sizeof(fd)) < 0) {
		perror("bpf_filter: SO_ATTACH_BPF");
		return 1;
	}
	if (write(sv[0], "spumone", 7) != 7 || read(sv[1], buf, sizeof(buf)) != 7 ||
	    memcmp(buf, "spumone", 7) != 0) {
		perror("bpf_filter: datagram through the filter");
		return 1;
	}
	printf("bpf_filter: program loaded (fd %d), attached, datagram passed\n", fd);
	close(sv[0]);
	close(sv[1]);
	close(fd);
	return 0;
}
