/* rt's native front end: hands the command line to the resident core (core/server.py) and
 * forks what the core asks for, so that the container's processes are the caller's
 * descendants. Without a core, or when the core declines, it execs the Python rt (rt-py,
 * next to this binary) with the same argv: the in-process path. Protocol: core/server.py. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef RT_BUILD_ID
#define RT_BUILD_ID "dev"
#endif
#define FD_FLOOR 64 /* the core's fds are above this: the caller's preserved fds fit below */
#define MAXFDS 64
#define MAXKIDS 64

extern char **environ;
static char **g_argv;
static int g_sock = -1, g_target, g_subreaper;
static int kid_fd[MAXKIDS], kid_pid[MAXKIDS], nkids;

static void in_process(const char *why) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 8);
    if (n < 0) { perror("rt: /proc/self/exe"); exit(127); }
    self[n] = 0;
    strcpy(strrchr(self, '/') + 1, "rt-py");
    if (getenv("RT_CORE_DEBUG")) fprintf(stderr, "rt: in-process: %s\n", why);
    setenv("RT_ARGV0", g_argv[0], 1);
    execv(self, g_argv);
    fprintf(stderr, "rt: cannot run %s: %s\n", self, strerror(errno));
    exit(127);
}

static int send_frame(char type, const char *data, uint32_t n, const int *fds, int nfds) {
    char buf[4 + 1 + 64];
    uint32_t len = n + 1;
    if (n > 64 || nfds > 4) return -1;
    memcpy(buf, &len, 4); buf[4] = type; memcpy(buf + 5, data, n);
    struct iovec iov = {buf, 5 + n};
    union { struct cmsghdr h; char b[CMSG_SPACE(4 * sizeof(int))]; } c;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        m.msg_control = c.b; m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS; h->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(h), fds, nfds * sizeof(int));
    }
    return sendmsg(g_sock, &m, MSG_NOSIGNAL) == (ssize_t)(5 + n) ? 0 : -1;
}

/* One frame: its type, body (after the type byte) and fds; -1 on EOF or error. */
static int recv_frame(char **body, uint32_t *blen, int *fds, int *nfds) {
    uint32_t len; size_t got = 0;
    union { struct cmsghdr h; char b[CMSG_SPACE(MAXFDS * sizeof(int))]; } c;
    *nfds = 0;
    while (got < 4) {
        struct iovec iov = {(char *)&len + got, 4 - got};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.b, .msg_controllen = sizeof c.b};
        ssize_t r = recvmsg(g_sock, &m, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
                int k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int), got[MAXFDS];
                memcpy(got, CMSG_DATA(h), k * sizeof(int));  /* k <= MAXFDS: the buffer's size */
                for (int j = 0; j < k; j++)
                    if (*nfds < MAXFDS) fds[(*nfds)++] = got[j];
                    else close(got[j]);
            }
        got += r;
    }
    if (len < 1 || len > (1u << 20)) return -1;
    char *b = malloc(len + 1);
    for (got = 0; got < len;) {
        ssize_t r = read(g_sock, b + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { free(b); return -1; }
        got += r;
    }
    b[len] = 0;
    *body = b + 1; *blen = len - 1;
    return (unsigned char)b[0];
}

/* The NUL-terminated fields of a body, from *pos; NULL past its end. */
static char *field(char *body, uint32_t n, uint32_t *pos) {
    if (*pos >= n) return NULL;
    char *f = body + *pos;
    *pos += strnlen(f, n - *pos) + 1;
    return f;
}

static char **fields(char *body, uint32_t n, uint32_t *pos, long count) {
    if (count < 0 || count > 65536) return NULL;
    char **v = calloc(count + 1, sizeof *v);
    for (long i = 0; i < count; i++)
        if (!(v[i] = field(body, n, pos))) return NULL;
    return v;
}

static void spawn(char *body, uint32_t n, int *fds, int nfds) {
    uint32_t pos = 0;
    char *flags = field(body, n, &pos), *s;
    char **argv = (s = field(body, n, &pos)) ? fields(body, n, &pos, atol(s)) : NULL;
    char **envp = environ;
    s = field(body, n, &pos);
    if (s && strcmp(s, "-")) envp = fields(body, n, &pos, atol(s));
    long nt = (s = field(body, n, &pos)) ? atol(s) : -1;
    int pid = -EINVAL;
    int target[MAXFDS], top = 0;
    for (long i = 0; i >= 0 && i < nt && i < MAXFDS; i++) {
        s = field(body, n, &pos);
        target[i] = s ? atoi(s) : -1;
        if (target[i] < 0) nt = -1;
        else if (target[i] > top) top = target[i];
    }
    if (flags && argv && argv[0] && envp && nt == nfds - 1 && nkids < MAXKIDS) {
        if (strchr(flags, 'r') && !g_subreaper) g_subreaper = !prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        pid = fork();
        if (pid == 0) {
            if (strchr(flags, 's')) setsid();
            int high[MAXFDS];
            for (int i = 0; i < nfds; i++)
                if ((high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, top + 1)) < 0) _exit(127);
            for (long i = 0; i < nt; i++)
                if (dup2(high[i + 1], target[i]) < 0) _exit(127);
            syscall(SYS_execveat, high[0], "", argv, envp, AT_EMPTY_PATH);
            _exit(127);
        }
        if (pid < 0) pid = -errno;
    }
    for (int i = 0; i < nfds; i++) close(fds[i]);
    char num[24];
    int len = snprintf(num, sizeof num, "%d", pid) + 1, pidfd = -1;
    if (pid > 0 && (pidfd = syscall(SYS_pidfd_open, pid, 0)) >= 0) {
        kid_fd[nkids] = pidfd; kid_pid[nkids++] = pid;
    }
    send_frame('P', num, len, &pidfd, pid > 0 && pidfd >= 0);
}

static void forward(int sig) { kill(g_target, sig); }

static int code_of(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

/* Wait for the container process (we are its subreaper), then run the follow-up argv. */
static void wait_and_exit(char *body, uint32_t n) {
    uint32_t pos = 0;
    char *s = field(body, n, &pos);
    g_target = s ? atoi(s) : 0;
    char **then = (s = field(body, n, &pos)) ? fields(body, n, &pos, atol(s)) : NULL;
    close(g_sock);
    struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGCHLD && sig != SIGKILL && sig != SIGSTOP && sig != SIGTTIN && sig != SIGTTOU)
            sigaction(sig, &sa, NULL);
    int st, code = 255;
    for (;;) {
        int w = waitpid(-1, &st, 0);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) break;
        if (w == g_target) { code = code_of(st); break; }
    }
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &sa, NULL);
    if (then && then[0]) {
        int pid = fork();
        if (pid == 0) { execv("/proc/self/exe", then); _exit(127); }
        while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    }
    exit(code);
}

/* The core went away mid-request: what it started is the store's to tell. */
static void core_lost(void) {
    fprintf(stderr, "rt: the resident core exited during the request\n");
    int st, code = 1;
    if (g_subreaper)  /* a foreground run's init may be ours by now: see it through */
        while (waitpid(-1, &st, 0) > 0 || errno == EINTR) code = code_of(st);
    exit(code);
}

/* Output of rt itself (O frames). Read-only verbs keep it until the exit code comes: if
 * the core fails them half-way, rt-py answers instead, and nothing is printed twice. */
static char *held[3];
static size_t held_len[3];

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w; n -= w;
    }
}

static void output(const char *body, uint32_t n, int hold) {
    int fd = n > 0 && body[0] == '2' ? 2 : 1;
    if (n == 0) return;
    if (!hold) { write_all(fd, body + 1, n - 1); return; }
    char *grown = realloc(held[fd], held_len[fd] + n);
    if (!grown) return;
    memcpy(grown + held_len[fd], body + 1, n - 1);
    held[fd] = grown; held_len[fd] += n - 1;
}

static void release_output(void) {
    for (int fd = 1; fd <= 2; fd++) write_all(fd, held[fd], held_len[fd]);
}

/* Digits only: anything else, rt-py judges it. */
static int count_of(const char *s) {
    if (!*s || strlen(s) > 6 || strspn(s, "0123456789") != strlen(s)) return -1;
    return atoi(s);
}

/* The core's directory must be ours and private, and the socket's owner us: anything else
 * there is someone else's, and gets nothing of ours (environment, cwd, a fork). */
static int trusted(const char *dir) {
    struct stat st;
    struct ucred peer;
    socklen_t len = sizeof peer;
    if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) return 0;
    return getsockopt(g_sock, SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0 && peer.uid == geteuid();
}

static int takes_value(const char *a) {
    static const char *v[] = {"--log", "--log-format", "--criu", "--plugin", "--rootless", NULL};
    for (int i = 0; v[i]; i++) if (!strcmp(a, v[i])) return 1;
    return 0;
}

/* $XDG_RUNTIME_DIR/rt is the default root for a user, and for root of a user namespace
 * (rootless podman) unless $USER is root: runc's rule. */
static int honor_xdg(void) {
    if (geteuid() != 0) return 1;
    char map[64] = "";
    int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, map, sizeof map - 1);
    if (fd >= 0) close(fd);
    unsigned long a = 0, b = 0, c = 0;
    if (n <= 0 || sscanf(map, "%lu %lu %lu", &a, &b, &c) != 3 || (a == 0 && b == 0 && c == 4294967295UL)) return 0;
    const char *u = getenv("USER");
    return !u || strcmp(u, "root") != 0;
}

int main(int argc, char **argv) {
    g_argv = argv;
    const char *root = "/run/rt", *verb = NULL, *e;
    char xdg_root[PATH_MAX];
    if ((e = getenv("XDG_RUNTIME_DIR")) && *e && honor_xdg() &&  /* core/cli.py's default_root */
        snprintf(xdg_root, sizeof xdg_root, "%s/rt", e) < (int)sizeof xdg_root)
        root = xdg_root;
    int i, preserve = 0;
    if ((e = getenv("RT_NO_CORE")) && *e && strcmp(e, "0")) in_process("RT_NO_CORE");
    for (i = 1; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--"); i++) {
        if (!strncmp(argv[i], "--root=", 7)) root = argv[i] + 7;
        else if (!strcmp(argv[i], "--root") && i + 1 < argc) root = argv[++i];
        else if (takes_value(argv[i])) i++;
    }
    if (i >= argc || argv[i][0] == '-') in_process("no verb");
    verb = argv[i];
    if (!strcmp(verb, "core")) in_process("rt core manages the core itself");
    for (; i < argc; i++) {
        int n = -2;
        if (!strcmp(argv[i], "--preserve-fds") && i + 1 < argc) n = count_of(argv[i + 1]);
        else if (!strncmp(argv[i], "--preserve-fds=", 15)) n = count_of(argv[i] + 15);
        if (n == -1) in_process("a --preserve-fds that is not a plain number");
        if (n > preserve) preserve = n;
    }
    if ((e = getenv("LISTEN_FDS")) && count_of(e) > preserve) preserve = count_of(e);
    if (preserve < 0 || 3 + preserve > FD_FLOOR) in_process("too many preserved fds");
    for (i = 0; i < 3; i++) if (fcntl(i, F_GETFD) < 0) in_process("a standard fd is closed");
    int readonly = !strcmp(verb, "state") || !strcmp(verb, "list") || !strcmp(verb, "ps") || !strcmp(verb, "features");
    long deadline = (e = getenv("RT_CORE_TIMEOUT")) ? (long)(atof(e) * 1000) : 5000;

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char dir[sizeof sa.sun_path];
    if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/.rt-core/sock", root) >= (int)sizeof sa.sun_path)
        in_process("state root path too long for a socket");
    snprintf(dir, sizeof dir, "%s/.rt-core", root);
    g_sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (g_sock < 0 || connect(g_sock, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if ((e = getenv("RT_CORE_AUTOSTART")) && !strcmp(e, "1") && fork() == 0) {
            char self[PATH_MAX];  /* rt-py core start re-homes the new core, then we go on in-process */
            ssize_t n = readlink("/proc/self/exe", self, sizeof self - 8);
            int null = open("/dev/null", O_RDWR);
            if (n > 0 && null >= 0) {
                self[n] = 0; strcpy(strrchr(self, '/') + 1, "rt-py");
                dup2(null, 0); dup2(null, 1); dup2(null, 2);
                execl(self, "rt-py", "--root", root, "core", "start", (char *)NULL);
            }
            _exit(127);
        }
        in_process("no core");
    }
    if (!trusted(dir)) in_process("the socket is not a core of ours");
    /* the request: fields and our pidfd; cwd and stdio go with the go, so that a core that
     * never answers holds none of them (a caller waits for EOF on our stdout) */
    size_t cap = 64 + strlen(RT_BUILD_ID), len = 0;
    for (i = 0; i < argc; i++) cap += strlen(argv[i]) + 1;
    int envc = 0;
    for (char **p = environ; *p; p++, envc++) cap += strlen(*p) + 1;
    if (cap > (1u << 20)) in_process("request too large");
    char *req = malloc(cap + 4);
    mode_t mask = umask(0);
    umask(mask);
    len = 4;
    len += sprintf(req + len, "rt-core/1%c%s%c%o%c%d%c", 0, RT_BUILD_ID, 0, mask, 0, argc, 0);
    for (i = 0; i < argc; i++) len += strlen(strcpy(req + len, argv[i])) + 1;
    len += sprintf(req + len, "%d%c", envc, 0);
    for (char **p = environ; *p; p++) len += strlen(strcpy(req + len, *p)) + 1;
    uint32_t blen = len - 4;
    memcpy(req, &blen, 4);
    int pidfd = syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0) in_process("no pidfd");
    int sendfds[1] = {pidfd};
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof sendfds)]; } c;
    struct iovec iov = {req, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.b, .msg_controllen = sizeof c.b};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS; h->cmsg_len = CMSG_LEN(sizeof sendfds);
    memcpy(CMSG_DATA(h), sendfds, sizeof sendfds);
    ssize_t sent = sendmsg(g_sock, &m, MSG_NOSIGNAL);
    if (sent < 0) in_process("the core did not take the request");
    if ((size_t)sent < len && write(g_sock, req + sent, len - sent) != (ssize_t)(len - sent))
        in_process("the core did not take the request");
    close(pidfd); free(req);

    /* until we say go, nothing has happened: a slow or refusing core means in-process */
    char *body; uint32_t n; int fds[MAXFDS], nfds, t;
    struct pollfd pf[MAXKIDS + 1] = {{g_sock, POLLIN, 0}};
    if (poll(pf, 1, deadline) != 1) in_process("the core did not answer in time");
    t = recv_frame(&body, &n, fds, &nfds);
    if (t != 'A') in_process(t == 'F' ? body : "the core hung up");
    int go[2] = {open(".", O_PATH | O_DIRECTORY | O_CLOEXEC), 0};
    if (go[0] < 0) in_process("no cwd");
    if (send_frame('G', "", 0, go, 2) < 0) in_process("the core hung up");
    close(go[0]);
    for (;;) {
        pf[0].fd = g_sock;
        for (i = 0; i < nkids; i++) pf[i + 1] = (struct pollfd){kid_fd[i], POLLIN, 0};
        int r = poll(pf, 1 + nkids, readonly ? deadline : -1);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) in_process("the core did not answer in time");  /* read-only verbs only */
        for (i = nkids - 1; i >= 0; i--)  /* reap what we spawned as it exits */
            if (pf[i + 1].revents) {
                waitpid(kid_pid[i], NULL, WNOHANG);
                close(kid_fd[i]);
                kid_fd[i] = kid_fd[--nkids]; kid_pid[i] = kid_pid[nkids];
            }
        if (!pf[0].revents) continue;
        t = recv_frame(&body, &n, fds, &nfds);
        if (t != 'S')
            for (i = 0; i < nfds; i++) close(fds[i]);
        if (t == 'X') { release_output(); exit(atoi(body)); }
        else if (t == 'O') output(body, n, readonly);
        else if (t == 'S') spawn(body, n, fds, nfds);
        else if (t == 'W') { release_output(); wait_and_exit(body, n); }
        else if (t == 'F') in_process(body);  /* declined before it changed anything */
        else if (readonly) in_process("the core hung up");
        else core_lost();
    }
}
