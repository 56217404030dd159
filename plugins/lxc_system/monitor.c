/* The console keeper of a system container, in C: the same arguments and behaviour as
 * monitor.py (its fallback where no C compiler is available), at a tenth of its memory.
 *
 *   monitor FD STATE_DIR NOTIFY_FD [-- REBOOT_COMMAND...]
 *
 * FD brings the pty master (the container's /dev/console) and, as SO_PASSCRED, the pid of
 * the process that becomes the init. Output is kept in a 64 KiB ring and in
 * STATE_DIR/console.log (capped); one `rt console` client at a time attaches through
 * STATE_DIR/console.sock. NOTIFY_FD is the init's sd_notify socket: READY=1 is recorded as
 * STATE_DIR/ready. A slave fd of our own keeps the console alive while nothing inside holds
 * it; the keeper ends with the init (a pidfd). As the init's parent (a subreaper, given a
 * REBOOT_COMMAND), an init killed by SIGHUP asked for a reboot: REBOOT_COMMAND then runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define RING (64 * 1024)
#define LOG_CAP (1024 * 1024)
#ifndef TIOCGPTPEER
#define TIOCGPTPEER 0x5441
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static char ring[RING];
static unsigned long long total; /* bytes ever put into the ring */
static char buf[65536];

static void ring_put(const char *p, size_t n) {
    if (n > RING) {
        total += n - RING;
        p += n - RING;
        n = RING;
    }
    size_t at = total % RING, first = RING - at < n ? RING - at : n;
    memcpy(ring + at, p, first);
    memcpy(ring, p + first, n - first);
    total += n;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_ring(int fd) {
    size_t n = total < RING ? (size_t)total : RING;
    size_t start = (size_t)((total - n) % RING), first = RING - start < n ? RING - start : n;
    if (send_all(fd, ring + start, first) < 0)
        return -1;
    return send_all(fd, ring, n - first);
}

/* The pty master from the shim, and the host pid of the sender (the init-to-be). */
static int receive_master(int sock, pid_t *pid) {
    int one = 1, master = -1;
    char data[256];
    union {
        char b[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {data, sizeof data};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
    ssize_t n;
    setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    close(sock);
    *pid = 0;
    if (n < 0)
        return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SCM_RIGHTS) {
            memcpy(&master, CMSG_DATA(c), sizeof master);
        } else if (c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred cr;
            memcpy(&cr, CMSG_DATA(c), sizeof cr);
            *pid = cr.pid;
        }
    }
    return master;
}

/* sd_notify from the init: READY=1 becomes STATE/ready, holding STATUS= (or "ready"). */
static void on_notify(int sock, const char *state) {
    char m[4097], path[PATH_MAX], tmp[PATH_MAX];
    const char *status = "ready";
    size_t slen = 5;
    int ready = 0;
    ssize_t n = recv(sock, m, sizeof m - 1, MSG_DONTWAIT);
    if (n <= 0)
        return;
    m[n] = 0;
    for (char *line = m; line && *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len == 7 && !memcmp(line, "READY=1", 7))
            ready = 1;
        else if (len >= 7 && !memcmp(line, "STATUS=", 7)) {
            status = line + 7;
            slen = len - 7;
        }
        line = end ? end + 1 : NULL;
    }
    snprintf(path, sizeof path, "%s/ready", state);
    if (!ready || access(path, F_OK) == 0)
        return;
    snprintf(tmp, sizeof tmp, "%s/ready.tmp", state);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    int ok = write(fd, status, slen) == (ssize_t)slen && write(fd, "\n", 1) == 1;
    close(fd);
    if (ok)
        rename(tmp, path);
}

static void write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) { /* the pty is full: wait for room, briefly */
                struct pollfd q = {fd, POLLOUT, 0};
                if (poll(&q, 1, 1000) > 0)
                    continue;
            }
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void spawn_reboot(char **argv) {
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        setsid();
        dup2(null, 0);
        dup2(null, 1);
        execv(argv[0], argv);
        _exit(127);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fputs("usage: monitor FD STATE_DIR NOTIFY_FD [-- REBOOT_COMMAND...]\n", stderr);
        return 2;
    }
    const char *state = argv[2];
    int notify = atoi(argv[3]);
    char **reboot = NULL;
    for (int i = 4; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            reboot = i + 1 < argc ? argv + i + 1 : NULL;
            break;
        }
    fcntl(notify, F_SETFD, FD_CLOEXEC);
    pid_t init_pid;
    int master = receive_master(atoi(argv[1]), &init_pid);
    if (master < 0) {
        fputs("monitor: no pty master received\n", stderr);
        return 1;
    }
    /* systemd closes /dev/console between messages once journald runs: hold a slave of
     * our own, or the master reads EIO and the console would end under it */
    ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    int pidfd = init_pid > 0 ? (int)syscall(SYS_pidfd_open, init_pid, 0) : -1;
    int gone = init_pid > 0 && pidfd < 0; /* it exited before we got here */
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);

    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/console.log", state);
    int log = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if ((size_t)snprintf(addr.sun_path, sizeof addr.sun_path, "%s/console.sock", state) >= sizeof addr.sun_path) {
        fprintf(stderr, "monitor: %s/console.sock: path too long for a socket\n", state);
        return 1;
    }
    unlink(addr.sun_path);
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        chmod(addr.sun_path, 0600) < 0 || listen(listener, 4) < 0) {
        perror("monitor: console.sock");
        return 1;
    }

    int client = -1, done = gone;
    unsigned long long written = 0;
    do {
        struct pollfd p[5];
        int n = 0, im = n++, il = n++, in = n++, ic = -1, ip = -1;
        p[im] = (struct pollfd){master, POLLIN, 0};
        p[il] = (struct pollfd){listener, POLLIN, 0};
        p[in] = (struct pollfd){notify, POLLIN, 0};
        if (client >= 0) {
            ic = n++;
            p[ic] = (struct pollfd){client, POLLIN, 0};
        }
        if (pidfd >= 0) {
            ip = n++;
            p[ip] = (struct pollfd){pidfd, POLLIN, 0};
        }
        if (!done && poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        int from_master = done || p[im].revents;
        if (ip >= 0 && p[ip].revents) { /* the init exited: log what it left, then end */
            done = 1;
            from_master = 1;
        }
        if (p[in].revents)
            on_notify(notify, state);
        if (from_master) {
            ssize_t r = read(master, buf, sizeof buf);
            if (r < 0 && errno != EAGAIN && errno != EINTR)
                break; /* EIO: no slave left */
            if (r > 0) {
                ring_put(buf, (size_t)r);
                if (log >= 0 && written < LOG_CAP) {
                    size_t k = (unsigned long long)r < LOG_CAP - written ? (size_t)r : (size_t)(LOG_CAP - written);
                    ssize_t w = write(log, buf, k);
                    if (w > 0)
                        written += (unsigned long long)w;
                }
                if (client >= 0 && send_all(client, buf, (size_t)r) < 0) {
                    close(client);
                    client = -1;
                }
            }
        }
        if (!done && p[il].revents) {
            int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
            if (conn >= 0 && client >= 0) { /* one at a time, as lxc-console */
                static const char busy[] = "rt console: another client is attached\r\n";
                send_all(conn, busy, sizeof busy - 1);
                close(conn);
            } else if (conn >= 0) {
                client = conn;
                if (send_ring(client) < 0) {
                    close(client);
                    client = -1;
                }
            }
        }
        if (!done && ic >= 0 && client == p[ic].fd && p[ic].revents) {
            ssize_t r = recv(client, buf, sizeof buf, 0);
            if (r <= 0) {
                close(client);
                client = -1;
            } else {
                write_all(master, buf, (size_t)r);
            }
        }
    } while (!done);
    close(listener);
    unlink(addr.sun_path);
    if (reboot && init_pid > 0) {
        int st;
        pid_t got;
        do
            got = waitpid(init_pid, &st, 0);
        while (got < 0 && errno == EINTR);
        if (got == init_pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGHUP) {
            fputs("monitor: the init rebooted; restarting the container\n", stderr);
            spawn_reboot(reboot);
        }
    }
    return 0;
}
