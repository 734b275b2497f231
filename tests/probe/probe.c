/* probe: one syscall (or a short sequence) per subcommand, for the containment tests
 * (tests/integration/containment.rs). Built statically by the test harness and bound
 * into the container read-only at /probe.
 *
 * Output: one line, "ok" (sometimes followed by data) and exit 0, or "errno=N" and
 * exit 1. Usage errors exit 2.
 *
 * Each probe is chosen so that the kernel itself, without a seccomp filter, answers
 * something other than EPERM even for a process without the capability the call
 * would need (a missing target for mount, an invalid command for bpf, a bad fd for
 * open_by_handle_at, ...): then "errno=1" from inside a container means a filter
 * refused the call, not the kernel's own permission checks. Where the kernel checks
 * the capability first (kexec_load, init_module) the arguments are harmless when the
 * capability is present: invalid flags, an empty module.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(void) {
    int e = errno;
    printf("errno=%d\n", e);
    fflush(stdout);
    return 1;
}

static int ok(void) {
    printf("ok\n");
    fflush(stdout);
    return 0;
}

static int result(long r) { return r < 0 ? fail() : ok(); }

static int usage(const char *what) {
    fprintf(stderr, "probe: usage: %s\n", what);
    return 2;
}

/* "user,mnt,net" -> CLONE_NEW* flags */
static unsigned long ns_flags(const char *list) {
    unsigned long f = 0;
    char *copy = strdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "user")) f |= CLONE_NEWUSER;
        else if (!strcmp(t, "mnt")) f |= CLONE_NEWNS;
        else if (!strcmp(t, "uts")) f |= CLONE_NEWUTS;
        else if (!strcmp(t, "ipc")) f |= CLONE_NEWIPC;
        else if (!strcmp(t, "net")) f |= CLONE_NEWNET;
        else if (!strcmp(t, "pid")) f |= CLONE_NEWPID;
        else if (!strcmp(t, "cgroup")) f |= CLONE_NEWCGROUP;
        else if (!strcmp(t, "none")) f |= 0;
        else { fprintf(stderr, "probe: unknown namespace %s\n", t); exit(2); }
    }
    free(copy);
    return f;
}

/* A child made by clone/clone3 exits at once; the parent reaps it. */
static int reap(long pid) {
    if (pid < 0) return fail();
    if (pid == 0) _exit(0);
    int st;
    waitpid((pid_t)pid, &st, __WALL);
    return ok();
}

static int write_file(const char *path, const char *data) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    ssize_t n = write(fd, data, strlen(data));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(data) ? 0 : -1;
}

/* userns-cgroup FSTYPE OPTS DIR CMD..: become root of a new user namespace with its
 * own mount and cgroup namespaces (as `unshare -U -r -m -C` does), mount a cgroup
 * filesystem at DIR (OPTS "-" for none), then exec CMD. */
static int userns_cgroup(int argc, char **argv) {
    if (argc < 6) return usage("userns-cgroup FSTYPE OPTS DIR CMD..");
    const char *fstype = argv[2], *opts = strcmp(argv[3], "-") ? argv[3] : NULL;
    const char *dir = argv[4];
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP) < 0) {
        printf("unshare ");
        return fail();
    }
    char map[64];
    if (write_file("/proc/self/setgroups", "deny") < 0 && errno != ENOENT) {
        printf("setgroups ");
        return fail();
    }
    snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
    if (write_file("/proc/self/uid_map", map) < 0) {
        printf("uid_map ");
        return fail();
    }
    snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
    if (write_file("/proc/self/gid_map", map) < 0) {
        printf("gid_map ");
        return fail();
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        printf("make-private ");
        return fail();
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        printf("mkdir ");
        return fail();
    }
    if (mount("none", dir, fstype, 0, opts) < 0) {
        printf("mount ");
        return fail();
    }
    fflush(stdout);
    execvp(argv[5], argv + 5);
    printf("exec ");
    return fail();
}

int main(int argc, char **argv) {
    if (argc < 2) return usage("probe SUBCOMMAND [ARGS]");
    const char *cmd = argv[1];
    const char *a = argc > 2 ? argv[2] : NULL;
    const char *b = argc > 3 ? argv[3] : NULL;

    if (!strcmp(cmd, "unshare")) {
        /* unshare NS,..: e.g. "user", "user,mnt" (needs no capability unconfined) */
        if (!a) return usage("unshare NS[,NS..]");
        return result(unshare((int)ns_flags(a)));
    }
    if (!strcmp(cmd, "clone")) {
        /* clone NS,..: the raw clone syscall with namespace flags, fork-like */
        if (!a) return usage("clone NS[,NS..]");
        return reap(syscall(SYS_clone, ns_flags(a) | SIGCHLD, 0, 0, 0, 0));
    }
    if (!strcmp(cmd, "clone3")) {
        /* clone3 [NS,..]: plain fork by clone3 (Docker's profile: ENOSYS, so libcs
         * fall back to clone, whose flags the filter can inspect) */
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = a ? ns_flags(a) : 0;
        ca.exit_signal = SIGCHLD;
        return reap(syscall(SYS_clone3, &ca, sizeof ca));
    }
    if (!strcmp(cmd, "mount-enoent")) {
        /* The kernel looks the target up before it checks CAP_SYS_ADMIN: ENOENT
         * unfiltered, EPERM from a filter. */
        return result(mount("none", "/nonexistent/locker-probe", "tmpfs", 0, NULL));
    }
    if (!strcmp(cmd, "mount-tmpfs")) {
        if (!a) return usage("mount-tmpfs DIR");
        return result(mount("none", a, "tmpfs", 0, "size=1m"));
    }
    if (!strcmp(cmd, "userns-cgroup")) return userns_cgroup(argc, argv);
    if (!strcmp(cmd, "keyctl-session")) {
        long r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
        if (r < 0) return fail();
        printf("ok %ld\n", r);
        return 0;
    }
    if (!strcmp(cmd, "keyctl-read")) {
        /* keyctl-read SERIAL: prints "ok PAYLOAD" */
        if (!a) return usage("keyctl-read SERIAL");
        char buf[512];
        long n = syscall(SYS_keyctl, KEYCTL_READ, strtol(a, NULL, 0), buf, sizeof buf - 1);
        if (n < 0) return fail();
        if (n > (long)sizeof buf - 1) n = sizeof buf - 1;
        buf[n] = 0;
        printf("ok %s\n", buf);
        return 0;
    }
    if (!strcmp(cmd, "keyctl-search")) {
        /* keyctl-search DESC: a "user" key in the session keyring; prints its serial */
        if (!a) return usage("keyctl-search DESC");
        long r = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", a, 0);
        if (r < 0) return fail();
        printf("ok %ld\n", r);
        return 0;
    }
    if (!strcmp(cmd, "add-key")) {
        return result(syscall(SYS_add_key, "user", "locker-probe", "x", 1,
                              KEY_SPEC_PROCESS_KEYRING));
    }
    if (!strcmp(cmd, "request-key")) {
        /* unfiltered: ENOKEY (nothing to find, no callout) */
        return result(syscall(SYS_request_key, "user", "locker-probe-nosuch", NULL, 0));
    }
    if (!strcmp(cmd, "bpf")) {
        /* an unknown command: EINVAL unfiltered (whatever unprivileged_bpf_disabled) */
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        return result(syscall(SYS_bpf, 0x7fff, &attr, sizeof attr));
    }
    if (!strcmp(cmd, "uevent")) {
        /* a NETLINK_KOBJECT_UEVENT socket bound to the kernel's group: the host's
         * device events (needs no capability unfiltered) */
        int fd = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT);
        if (fd < 0) return fail();
        struct sockaddr_nl snl = {.nl_family = AF_NETLINK, .nl_groups = 1};
        if (bind(fd, (struct sockaddr *)&snl, sizeof snl) < 0) return fail();
        return ok();
    }
    if (!strcmp(cmd, "perf")) {
        /* a software counter on this process, user space only: allowed unfiltered
         * at perf_event_paranoid <= 2 */
        struct perf_event_attr pa;
        memset(&pa, 0, sizeof pa);
        pa.type = PERF_TYPE_SOFTWARE;
        pa.size = sizeof pa;
        pa.config = PERF_COUNT_SW_TASK_CLOCK;
        pa.disabled = 1;
        pa.exclude_kernel = 1;
        pa.exclude_hv = 1;
        return result(syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0));
    }
    if (!strcmp(cmd, "userfaultfd")) {
        /* user-mode-only faults: allowed unfiltered whatever vm.unprivileged_userfaultfd */
        return result(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
    }
    if (!strcmp(cmd, "io-uring")) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        return result(syscall(SYS_io_uring_setup, 4, &p));
    }
    if (!strcmp(cmd, "open-by-handle")) {
        /* a mount fd that is not open: EBADF unfiltered, before any capability check */
        struct { struct file_handle fh; unsigned char data[128]; } h;
        memset(&h, 0, sizeof h);
        h.fh.handle_bytes = 8;
        return result(syscall(SYS_open_by_handle_at, 987, &h.fh, O_RDONLY));
    }
    if (!strcmp(cmd, "kexec")) {
        /* no segments and an undefined flag (0x100): EINVAL with CAP_SYS_BOOT, and
         * nothing is loaded or unloaded; EPERM without */
        return result(syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0x100UL));
    }
    if (!strcmp(cmd, "init-module")) {
        /* an empty module: ENOEXEC with CAP_SYS_MODULE (nothing loaded); EPERM without */
        return result(syscall(SYS_init_module, NULL, 0UL, ""));
    }
    if (!strcmp(cmd, "personality")) {
        /* personality VAL: set it, then restore the old one */
        if (!a) return usage("personality VAL");
        unsigned long v = strtoul(a, NULL, 0);
        long old = syscall(SYS_personality, v);
        if (old < 0) return fail();
        if (v != 0xffffffffUL) syscall(SYS_personality, (unsigned long)old);
        return ok();
    }
    if (!strcmp(cmd, "raw-socket")) {
        return result(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    }
    if (!strcmp(cmd, "spoof-udp")) {
        /* spoof-udp SRC DST PORT: one UDP datagram "spoofed" from SRC (any address) to
         * DST:PORT, through a raw socket that writes its own IPv4 header (NET_RAW) */
        if (!a || !b || argc < 5) return usage("spoof-udp SRC DST PORT");
        struct {
            uint8_t vihl, tos;
            uint16_t len, id, frag;
            uint8_t ttl, proto;
            uint16_t sum;
            uint32_t src, dst;
            uint16_t sport, dport, ulen, usum;
            char data[8];
        } __attribute__((packed)) pkt = {.vihl = 0x45, .ttl = 64, .proto = IPPROTO_UDP};
        if (inet_pton(AF_INET, a, &pkt.src) != 1 || inet_pton(AF_INET, b, &pkt.dst) != 1)
            return usage("SRC and DST are IPv4");
        memcpy(pkt.data, "spoofed\n", 8);
        pkt.len = htons(sizeof pkt);
        pkt.sport = htons(40000);
        pkt.dport = htons(atoi(argv[4]));
        pkt.ulen = htons(8 + sizeof pkt.data);
        /* the kernel fills in the IP checksum (and the id); UDP's 0 means none */
        int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
        if (fd < 0) return fail();
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = pkt.dst};
        if (sendto(fd, &pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to) < 0) return fail();
        return ok();
    }
    if (!strcmp(cmd, "packet-socket")) {
        return result(socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
    }
    if (!strcmp(cmd, "mknod")) {
        /* mknod PATH [MAJOR MINOR]: a character device, default 1:3 (null) */
        if (!a) return usage("mknod PATH [MAJOR MINOR]");
        unsigned maj = b ? (unsigned)atoi(b) : 1, min = argc > 4 ? (unsigned)atoi(argv[4]) : 3;
        return result(mknod(a, S_IFCHR | 0666, makedev(maj, min)));
    }
    if (!strcmp(cmd, "open")) {
        /* open PATH: read-write, without blocking or taking a tty */
        if (!a) return usage("open PATH");
        return result(open(a, O_RDWR | O_NONBLOCK | O_NOCTTY));
    }
    if (!strcmp(cmd, "reopen-read")) {
        /* reopen-read FD: /proc/self/fd/FD opened afresh for reading; prints
         * "ok DATA" with what a non-blocking read returned */
        if (!a) return usage("reopen-read FD");
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/self/fd/%s", a);
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) return fail();
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n < 0) n = 0;
        buf[n] = 0;
        printf("ok %s\n", buf);
        return 0;
    }
    if (!strcmp(cmd, "reopen-trunc")) {
        /* reopen-trunc FD: /proc/self/fd/FD opened afresh with O_TRUNC */
        if (!a) return usage("reopen-trunc FD");
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", a);
        return result(open(path, O_WRONLY | O_TRUNC | O_NONBLOCK | O_NOCTTY));
    }
    if (!strcmp(cmd, "openat-create")) {
        /* openat-create FD NAME: create NAME relative to directory fd FD */
        if (!a || !b) return usage("openat-create FD NAME");
        int fd = openat(atoi(a), b, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) return fail();
        if (write(fd, "planted\n", 8) < 0) return fail();
        return ok();
    }
    if (!strcmp(cmd, "create")) {
        /* create PATH: a new file, written */
        if (!a) return usage("create PATH");
        int fd = open(a, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) return fail();
        if (write(fd, "planted\n", 8) < 0) return fail();
        return ok();
    }
    if (!strcmp(cmd, "tiocsti")) {
        /* tiocsti FD TEXT: push TEXT and a newline into the terminal's input queue */
        if (!a || !b) return usage("tiocsti FD TEXT");
        int fd = atoi(a);
        for (const char *p = b; *p; p++)
            if (ioctl(fd, TIOCSTI, p) < 0) return fail();
        char nl = '\n';
        if (ioctl(fd, TIOCSTI, &nl) < 0) return fail();
        return ok();
    }
    if (!strcmp(cmd, "write")) {
        /* write PATH MIB: write MIB MiB of zeroes */
        if (!a || !b) return usage("write PATH MIB");
        static char chunk[1 << 20];
        int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) return fail();
        for (int i = 0; i < atoi(b); i++) {
            size_t done = 0;
            while (done < sizeof chunk) {
                ssize_t n = write(fd, chunk + done, sizeof chunk - done);
                if (n < 0) return fail();
                done += (size_t)n;
            }
        }
        if (fsync(fd) < 0) return fail();
        return ok();
    }
    if (!strcmp(cmd, "tcp") || !strcmp(cmd, "udp")) {
        /* tcp|udp ADDR PORT: connect (udp: send "ping"), print "ok LINE" with the first
         * line the peer sends back within 5 s */
        if (!a || !b) return usage("tcp|udp ADDR PORT");
        int udp = !strcmp(cmd, "udp");
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(atoi(b))};
        struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(atoi(b))};
        struct sockaddr *sa = (struct sockaddr *)&sin;
        socklen_t salen = sizeof sin;
        if (inet_pton(AF_INET, a, &sin.sin_addr) != 1) {
            if (inet_pton(AF_INET6, a, &sin6.sin6_addr) != 1) return usage("ADDR is IPv4 or IPv6");
            sa = (struct sockaddr *)&sin6;
            salen = sizeof sin6;
        }
        int fd = socket(sa->sa_family, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
        if (fd < 0) return fail();
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, sa, salen) < 0) return fail();
        if (udp && send(fd, "ping\n", 5, 0) < 0) return fail();
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n < 0) return fail();
        buf[n] = 0;
        char *nl = strchr(buf, '\n');
        if (nl) *nl = 0;
        printf("ok %s\n", buf);
        return 0;
    }
    if (!strcmp(cmd, "dns-tcp")) {
        /* dns-tcp ADDR NAME: one A query for NAME over TCP to ADDR:53 (RFC 7766
         * framing); print "ok A.B.C.D" of the answer's first A record */
        if (!a || !b) return usage("dns-tcp ADDR NAME");
        unsigned char q[300] = {0, 0, 0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
        size_t n = 14;
        for (const char *p = b; *p;) {
            const char *dot = strchr(p, '.');
            size_t l = dot ? (size_t)(dot - p) : strlen(p);
            if (l == 0 || l > 63 || n + l + 6 > sizeof q) return usage("NAME");
            q[n++] = (unsigned char)l;
            memcpy(q + n, p, l);
            n += l;
            p += l + (dot ? 1 : 0);
        }
        memcpy(q + n, "\0\0\1\0\1", 5);
        n += 5;
        q[0] = (unsigned char)((n - 2) >> 8);
        q[1] = (unsigned char)(n - 2);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(53)};
        if (inet_pton(AF_INET, a, &sin.sin_addr) != 1) return usage("ADDR is IPv4");
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return fail();
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) return fail();
        if (write(fd, q, n) != (ssize_t)n) return fail();
        unsigned char r[1024];
        size_t got = 0;
        ssize_t k;
        while (got < sizeof r && (k = read(fd, r + got, sizeof r - got)) > 0) {
            got += (size_t)k;
            if (got >= 2 && got >= 2 + ((size_t)r[0] << 8 | r[1])) break;
        }
        if (got < 14 + 16) {
            printf("short answer (%zu bytes)\n", got);
            return 1;
        }
        /* The answer's last 4 bytes: the A record's address (one answer, RDLENGTH 4) */
        printf("ok %u.%u.%u.%u\n", r[got - 4], r[got - 3], r[got - 2], r[got - 1]);
        return 0;
    }
    if (!strcmp(cmd, "hold-tcp")) {
        /* hold-tcp ADDR PORT N CLOSED: open N connections and hold them; wait (at most
         * 20 s) until CLOSED of them were closed by the peer; print "closed=X open=Y" */
        if (!a || !b || argc < 6) return usage("hold-tcp ADDR PORT N CLOSED");
        int want = atoi(argv[5]), total = atoi(argv[4]);
        if (total <= 0 || total > 256) return usage("N in 1..256");
        struct pollfd fds[256];
        for (int i = 0; i < total; i++) {
            struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(atoi(b))};
            if (inet_pton(AF_INET, a, &sin.sin_addr) != 1) return usage("ADDR is IPv4");
            fds[i].fd = socket(AF_INET, SOCK_STREAM, 0);
            fds[i].events = POLLIN;
            if (fds[i].fd < 0 || connect(fds[i].fd, (struct sockaddr *)&sin, sizeof sin) < 0)
                return fail();
        }
        int closed = 0;
        for (int waited = 0; closed < want && waited < 20; waited++) {
            if (poll(fds, (nfds_t)total, 1000) < 0) return fail();
            for (int i = 0; i < total; i++) {
                char c;
                if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP)) &&
                    read(fds[i].fd, &c, 1) <= 0) {
                    close(fds[i].fd);
                    fds[i].fd = -1;
                    closed++;
                }
            }
        }
        printf("closed=%d open=%d\n", closed, total - closed);
        return 0;
    }
    if (!strcmp(cmd, "abstract")) {
        /* abstract NAME: connect to the abstract unix socket @NAME */
        if (!a) return usage("abstract NAME");
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        size_t len = strlen(a);
        if (len + 1 > sizeof sun.sun_path) return usage("NAME too long");
        memcpy(sun.sun_path + 1, a, len);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) return fail();
        if (connect(fd, (struct sockaddr *)&sun, offsetof(struct sockaddr_un, sun_path) + 1 + len) < 0)
            return fail();
        return ok();
    }
    fprintf(stderr, "probe: unknown subcommand %s\n", cmd);
    return 2;
}
