/* rt's guest agent: /init of the VM, built static by rt. It mounts /proc, /sys, /dev and
 * /run, loads the virtio modules listed in /rt/modules (the NIC's only with rtnet=1 on the
 * kernel command line), then serves the host shim on the virtio-serial port "rt.agent" with
 * the frames of wire.py: it prepares the container root, starts the workload at `start`,
 * runs `exec` sessions, forwards stdio, delivers signals and reaps every orphan.
 * Messages are marshal version 2 dicts (wire.py sends that version, which has no refs).
 * Built with -DRT_PYTHON="/path/to/python3", it only boots and then runs agent.py.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROOT "/run/rt/root"
#define SHARES "/run/rt/shares"
#define PACKED "/rt/rootfs"
#define BB "/bin/busybox"
enum { MSG, STDIN, STDOUT, STDERR, END };
#define HEADER 9
#define MAX_PAYLOAD (1u << 20)
#define MAX_SESSIONS 256

static void logf_(const char *fmt, ...) {
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(2, "rt-agent: %s\n", line);
}

static void mnt(const char *src, const char *dst, const char *type, const char *data) {
    if (mount(src, dst, type, 0, data) < 0)
        logf_("mount %s on %s: %s", type, dst, strerror(errno));
}

static int load_module(const char *rel) {
    char path[512];
    snprintf(path, sizeof path, "/lib/modules/%s", rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = syscall(SYS_finit_module, fd, "", 0);
    int e = errno;
    close(fd);
    errno = e;
    return r < 0 && e != EEXIST ? -1 : 0;
}

static int is_nic(const char *m) {
    return strstr(m, "net") || strstr(m, "failover") || strstr(m, "virtio_blk");
}

static void boot(void) {
    static char list[8192];
    mnt("proc", "/proc", "proc", NULL);
    mnt("sys", "/sys", "sysfs", NULL);
    mnt("dev", "/dev", "devtmpfs", NULL);
    mkdir("/dev/pts", 0755);
    mnt("devpts", "/dev/pts", "devpts", "ptmxmode=0666");
    mnt("run", "/run", "tmpfs", NULL);
    int net = getenv("rtnet") != NULL; /* the kernel passes unknown key=value parameters as env */
    int fd = open("/rt/modules", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? 0 : read(fd, list, sizeof list - 1);
    if (fd >= 0)
        close(fd);
    list[n > 0 ? n : 0] = 0;
    for (char *save = NULL, *m = strtok_r(list, " \n", &save); m; m = strtok_r(NULL, " \n", &save)) {
        if ((is_nic(m) && !net) || strstr(m, "balloon")) /* the balloon's loads on demand */
            continue;
        if (load_module(m) < 0 && errno != ENOENT)
            logf_("load %s: %s", m, strerror(errno));
    }
}

#ifdef RT_PYTHON
int main(void) {
    boot();
    char *argv[] = {RT_PYTHON, "-I", "-S", "-B", "-c",
                    "import sys; sys.path.insert(0, '/rt'); import agent; agent.main()", NULL};
    execv(argv[0], argv);
    logf_("exec %s: %s", argv[0], strerror(errno));
    return 1;
}
#else

/* --- growable buffers ------------------------------------------------------------------ */
struct buf {
    unsigned char *p;
    size_t n, cap;
};

static void put(struct buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            logf_("out of memory");
            abort();
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_u32le(struct buf *b, uint32_t v) {
    unsigned char x[4] = {v, v >> 8, v >> 16, v >> 24};
    put(b, x, 4);
}

/* --- marshal (version 2: no refs) ------------------------------------------------------- */
enum { V_NONE, V_BOOL, V_INT, V_STR, V_LIST, V_DICT, V_OTHER };
struct val {
    int t;
    long long i;
    char *s; /* NUL-terminated copy; n is its length */
    size_t n;
    struct val *kids, *next; /* list items; dict keys and values alternate */
};

struct parser {
    const unsigned char *p, *end;
    int err;
};

static uint32_t u32le(const unsigned char *p) {
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void free_val(struct val *v) {
    while (v) {
        struct val *next = v->next;
        free_val(v->kids);
        free(v->s);
        free(v);
        v = next;
    }
}

static int need(struct parser *ps, size_t n) {
    if ((size_t)(ps->end - ps->p) < n) {
        ps->err = 1;
        return 0;
    }
    return 1;
}

/* One object; NULL at a dict's end marker ('0') or on error (ps->err). */
static struct val *parse(struct parser *ps, int depth) {
    if (depth > 32 || !need(ps, 1))
        return ps->err = 1, NULL;
    int code = *ps->p++ & 0x7f; /* FLAG_REF never appears in version 2 */
    if (code == '0')
        return NULL;
    struct val *v = calloc(1, sizeof *v);
    if (!v)
        return ps->err = 1, NULL;
    uint32_t n;
    switch (code) {
    case 'N': v->t = V_NONE; break;
    case 'T': case 'F': v->t = V_BOOL; v->i = code == 'T'; break;
    case 'i':
        if (!need(ps, 4)) break;
        v->t = V_INT;
        v->i = (int32_t)u32le(ps->p);
        ps->p += 4;
        break;
    case 'l': { /* a long: signed digit count, then 15-bit digits */
        if (!need(ps, 4)) break;
        int32_t cnt = (int32_t)u32le(ps->p);
        ps->p += 4;
        uint32_t k = cnt < 0 ? -(uint32_t)cnt : (uint32_t)cnt;
        if (k > 4 || !need(ps, 2 * k)) { ps->err = 1; break; }
        long long x = 0;
        for (uint32_t j = 0; j < k; j++)
            x |= (long long)(ps->p[2 * j] | ps->p[2 * j + 1] << 8) << (15 * j);
        ps->p += 2 * k;
        v->t = V_INT;
        v->i = cnt < 0 ? -x : x;
        break;
    }
    case 'g': if (need(ps, 8)) { ps->p += 8; v->t = V_OTHER; } break;
    case 'u': case 's': case 't': case 'a': case 'A': case 'z': case 'Z':
        if (code == 'z' || code == 'Z') {
            if (!need(ps, 1)) break;
            n = *ps->p++;
        } else {
            if (!need(ps, 4)) break;
            n = u32le(ps->p);
            ps->p += 4;
        }
        if (!need(ps, n)) break;
        v->t = V_STR;
        v->s = malloc(n + 1);
        if (!v->s) { ps->err = 1; break; }
        memcpy(v->s, ps->p, n);
        v->s[n] = 0;
        v->n = n;
        ps->p += n;
        break;
    case '[': case '(': case '<': case '>': {
        if (!need(ps, 4)) break;
        n = u32le(ps->p);
        ps->p += 4;
        v->t = V_LIST;
        struct val **tail = &v->kids;
        for (uint32_t j = 0; j < n && !ps->err; j++) {
            struct val *item = parse(ps, depth + 1);
            if (!item) { ps->err = 1; break; }
            *tail = item;
            tail = &item->next;
            v->n++;
        }
        break;
    }
    case '{': {
        v->t = V_DICT;
        struct val **tail = &v->kids;
        for (;;) {
            struct val *key = parse(ps, depth + 1);
            if (!key || ps->err) break;
            *tail = key;
            tail = &key->next;
            struct val *value = parse(ps, depth + 1);
            if (!value) { ps->err = 1; break; }
            *tail = value;
            tail = &value->next;
        }
        break;
    }
    default: ps->err = 1;
    }
    if (ps->err) {
        free_val(v);
        return NULL;
    }
    return v;
}

static struct val *get(const struct val *d, const char *key) {
    if (!d || d->t != V_DICT)
        return NULL;
    for (struct val *k = d->kids; k && k->next; k = k->next->next)
        if (k->t == V_STR && strcmp(k->s, key) == 0)
            return k->next;
    return NULL;
}

static const char *gstr(const struct val *d, const char *key) {
    struct val *v = get(d, key);
    return v && v->t == V_STR ? v->s : NULL;
}

static long long gint(const struct val *d, const char *key, long long def) {
    struct val *v = get(d, key);
    return v && (v->t == V_INT || v->t == V_BOOL) ? v->i : def;
}

static int gtrue(const struct val *d, const char *key) {
    struct val *v = get(d, key);
    return v && (v->t == V_INT || v->t == V_BOOL) ? v->i != 0 : v && v->t == V_STR ? v->n > 0 : 0;
}

/* Writing: a dict is '{', key/value pairs, '0'. */
static void m_str(struct buf *b, const char *s) {
    size_t n = strlen(s);
    put(b, "u", 1);
    put_u32le(b, n);
    put(b, s, n);
}

static void m_int(struct buf *b, long long v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
        put(b, "i", 1);
        put_u32le(b, (uint32_t)(int32_t)v);
        return;
    }
    unsigned long long x = v < 0 ? -(unsigned long long)v : (unsigned long long)v;
    unsigned char digits[10];
    int n = 0;
    for (; x; x >>= 15, n++) { /* a long: a signed count of 15-bit digits */
        digits[2 * n] = x & 0xff;
        digits[2 * n + 1] = (x >> 8) & 0x7f;
    }
    put(b, "l", 1);
    put_u32le(b, (uint32_t)(v < 0 ? -n : n));
    put(b, digits, 2 * n);
}

/* --- frames on the port ----------------------------------------------------------------- */
static int port = -1;

static void write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pf = {fd, POLLOUT, 0};
                poll(&pf, 1, -1);
                continue;
            }
            return; /* the reader went away */
        }
        p += w;
        n -= w;
    }
}

static void send_frame(int kind, uint32_t sid, const void *payload, size_t n) {
    unsigned char h[HEADER] = {n >> 24, n >> 16, n >> 8, n, kind, sid >> 24, sid >> 16, sid >> 8, sid};
    write_all(port, h, HEADER);
    write_all(port, payload, n);
}

/* send(sid, "op", "k1", 'i', 5, "k2", 's', "text", NULL): a flat dict of ints and strings */
static void send_msg(uint32_t sid, const char *op, ...) {
    struct buf b = {0};
    put(&b, "{", 1);
    m_str(&b, "op");
    m_str(&b, op);
    va_list ap;
    va_start(ap, op);
    for (const char *key; (key = va_arg(ap, const char *));) {
        m_str(&b, key);
        if (va_arg(ap, int) == 'i')
            m_int(&b, va_arg(ap, long long));
        else
            m_str(&b, va_arg(ap, const char *));
    }
    va_end(ap);
    put(&b, "0", 1);
    send_frame(MSG, sid, b.p, b.n);
    free(b.p);
}

static void send_error(uint32_t sid, const char *op, const char *why) {
    char text[700];
    snprintf(text, sizeof text, "%s: %s", op, why);
    send_msg(sid, "error", "error", 's', text, NULL);
}

/* --- small helpers ---------------------------------------------------------------------- */
static int mkdirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Run busybox with args and wait: 0, or -1 with errno. */
static int bb(const char *const *args) {
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        char *env[] = {"PATH=/bin", NULL};
        execve(BB, (char *const *)args, env);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return errno = EIO, -1;
    return 0;
}

/* The destination inside ROOT, lexically: "", "." and ".." components are dropped. */
static void inside(const char *dest, char *out, size_t size) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dest);
    snprintf(out, size, "%s", ROOT);
    for (char *save = NULL, *c = strtok_r(tmp, "/", &save); c; c = strtok_r(NULL, "/", &save))
        if (strcmp(c, ".") && strcmp(c, ".."))
            snprintf(out + strlen(out), size - strlen(out), "/%s", c);
}

struct flag {
    const char *name;
    unsigned long set, clear;
};
static const struct flag FLAGS[] = {
    {"ro", MS_RDONLY, 0}, {"rw", 0, MS_RDONLY}, {"nosuid", MS_NOSUID, 0}, {"suid", 0, MS_NOSUID},
    {"nodev", MS_NODEV, 0}, {"dev", 0, MS_NODEV}, {"noexec", MS_NOEXEC, 0}, {"exec", 0, MS_NOEXEC},
    {"sync", MS_SYNCHRONOUS, 0}, {"async", 0, MS_SYNCHRONOUS}, {"dirsync", MS_DIRSYNC, 0},
    {"noatime", MS_NOATIME, 0}, {"atime", 0, MS_NOATIME}, {"nodiratime", MS_NODIRATIME, 0},
    {"diratime", 0, MS_NODIRATIME}, {"relatime", MS_RELATIME, 0}, {"norelatime", 0, MS_RELATIME},
    {"strictatime", MS_STRICTATIME, 0}, {"nostrictatime", 0, MS_STRICTATIME}, {"mand", MS_MANDLOCK, 0},
    {"nomand", 0, MS_MANDLOCK},
};
/* handled by the host (binds, propagation) or meaningless in the guest */
static const char *PLAIN[] = {"rbind", "bind", "rprivate", "private", "rslave", "slave", "rshared", "shared",
                              "runbindable", "unbindable", "rro", "rrw", "idmap", "ridmap", "tmpcopyup",
                              "defaults", NULL};

static unsigned long mount_flags(const struct val *opts, char *data, size_t size) {
    unsigned long flags = 0;
    data[0] = 0;
    if (!opts || opts->t != V_LIST)
        return 0;
    for (struct val *o = opts->kids; o; o = o->next) {
        if (o->t != V_STR)
            continue;
        int known = 0;
        for (const char **p = PLAIN; *p; p++)
            known |= strcmp(*p, o->s) == 0;
        for (size_t i = 0; i < sizeof FLAGS / sizeof *FLAGS; i++)
            if (strcmp(FLAGS[i].name, o->s) == 0) {
                flags = (flags | FLAGS[i].set) & ~FLAGS[i].clear;
                known = 1;
            }
        if (!known)
            snprintf(data + strlen(data), size - strlen(data), "%s%s", data[0] ? "," : "", o->s);
    }
    return flags;
}

static void populate_dev(const char *dev) {
    static const struct { const char *name; int major, minor; } nodes[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    static const char *links[][2] = {{"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
                                     {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
                                     {"core", "/proc/kcore"}};
    char path[4200];
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, nodes[i].name);
        if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) == 0)
            chmod(path, 0666);
    }
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, links[i][0]);
        symlink(links[i][1], path);
    }
    snprintf(path, sizeof path, "%s/pts", dev);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/shm", dev);
    mkdir(path, 0755);
}

/* 4 MiB read-ahead on the rootfs's virtio-fs mount, not 128 KiB: each FUSE request is a
 * round trip to virtiofsd, and exec then reads a binary in a few large requests. */
static void read_ahead(const char *mnt) {
    struct stat st;
    char path[128];
    if (stat(mnt, &st) < 0)
        return;
    snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev), minor(st.st_dev));
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (write(fd, "4096", 4) < 0)
            logf_("read_ahead_kb on %s: %s", mnt, strerror(errno));
        close(fd);
    }
}

/* Fails with a message in `why`. */
static int prepare_root(const struct val *spec, char *why, size_t size) {
    char path[4200], dest[4200], data[1024];
    if (mkdirs(ROOT) < 0)
        return snprintf(why, size, "mkdir %s: %s", ROOT, strerror(errno)), -1;
    if (gtrue(spec, "packed") ? mount(PACKED, ROOT, NULL, MS_BIND, NULL) : mount("rt0", ROOT, "virtiofs", 0, NULL))
        return snprintf(why, size, "mount the rootfs: %s", strerror(errno)), -1;
    if (!gtrue(spec, "packed"))
        read_ahead(ROOT);
    struct val *shares = get(spec, "shares");
    for (struct val *t = shares && shares->t == V_LIST ? shares->kids : NULL; t; t = t->next) {
        if (t->t != V_STR)
            continue;
        snprintf(path, sizeof path, "%s/%s", SHARES, t->s);
        if (mkdirs(path) < 0 || mount(t->s, path, "virtiofs", 0, NULL) < 0)
            return snprintf(why, size, "mount share %s: %s", t->s, strerror(errno)), -1;
    }
    struct val *mounts = get(spec, "mounts");
    for (struct val *m = mounts && mounts->t == V_LIST ? mounts->kids : NULL; m; m = m->next) {
        const char *destination = gstr(m, "destination");
        if (!destination)
            continue;
        inside(destination, dest, sizeof dest);
        unsigned long flags = mount_flags(get(m, "options"), data, sizeof data);
        const char *share = gstr(m, "share");
        if (share) {
            const char *sub = gstr(m, "sub");
            snprintf(path, sizeof path, "%s/%s/%s", SHARES, share, sub ? sub : "");
            struct stat st;
            if (lstat(dest, &st) < 0) {
                if (is_dir(path)) {
                    mkdirs(dest);
                } else {
                    char parent[4200];
                    snprintf(parent, sizeof parent, "%s", dest);
                    *strrchr(parent, '/') = 0;
                    mkdirs(parent);
                    int fd = open(dest, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                    if (fd >= 0)
                        close(fd);
                }
            }
            if (mount(path, dest, NULL, MS_BIND, NULL) < 0)
                return snprintf(why, size, "bind %s: %s", destination, strerror(errno)), -1;
            unsigned long locked = flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
            if (locked && mount(NULL, dest, NULL, MS_REMOUNT | MS_BIND | locked, NULL) < 0)
                return snprintf(why, size, "remount %s: %s", destination, strerror(errno)), -1;
            continue;
        }
        const char *kind = gstr(m, "type");
        if (!kind)
            continue;
        if (strcmp(kind, "cgroup") == 0)
            kind = "cgroup2";
        const char *source = gstr(m, "source");
        mkdirs(dest);
        if (mount(source && *source ? source : kind, dest, kind, flags, data[0] ? data : NULL) < 0) {
            if (strcmp(kind, "cgroup2") == 0 || strcmp(kind, "mqueue") == 0) {
                logf_("skipped %s: %s", destination, strerror(errno)); /* optional in a guest kernel */
                continue;
            }
            return snprintf(why, size, "mount %s on %s: %s", kind, destination, strerror(errno)), -1;
        }
        if (strcmp(destination, "/dev") == 0 && (strcmp(kind, "tmpfs") == 0 || strcmp(kind, "devtmpfs") == 0))
            populate_dev(dest);
    }
    const char *hostname = gstr(spec, "hostname");
    if (hostname && *hostname && sethostname(hostname, strlen(hostname)) < 0)
        return snprintf(why, size, "sethostname: %s", strerror(errno)), -1;
    if (gtrue(spec, "readonly") && mount(NULL, ROOT, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
        return snprintf(why, size, "remount the rootfs read-only: %s", strerror(errno)), -1;
    return 0;
}

/* The entry of `dir` whose file `attr` holds `want` (case aside, up to a newline), in `out`. */
static int find_by_attr(const char *dir, const char *attr, const char *want, char *out, size_t size) {
    char path[600], got[128];
    int found = -1;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && found < 0 && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s/%s", dir, e->d_name, attr);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, got, sizeof got - 1);
        if (fd >= 0)
            close(fd);
        if (n <= 0)
            continue;
        got[n] = 0;
        got[strcspn(got, "\n")] = 0;
        if (strcasecmp(got, want) == 0 && (size_t)snprintf(out, size, "%s", e->d_name) < size)
            found = 0;
    }
    if (d)
        closedir(d);
    return found;
}

/* The interface with net's MAC gets its name, address and route (busybox ip: a rare path). */
static int configure_net(const struct val *net, char *why, size_t size) {
    const char *mac = gstr(net, "mac"), *ifname = gstr(net, "ifname"), *address = gstr(net, "address");
    const char *gateway = gstr(net, "gateway");
    if (!mac || !ifname || !address)
        return snprintf(why, size, "net: incomplete settings"), -1;
    const char *lo[] = {BB, "ip", "link", "set", "lo", "up", NULL};
    bb(lo);
    char found[256] = "";
    find_by_attr("/sys/class/net", "address", mac, found, sizeof found);
    if (!found[0])
        return snprintf(why, size, "no interface with MAC %s", mac), -1;
    const char *rename[] = {BB, "ip", "link", "set", found, "name", ifname, NULL};
    const char *add[] = {BB, "ip", "addr", "add", address, "dev", ifname, NULL};
    const char *up[] = {BB, "ip", "link", "set", ifname, "up", NULL};
    const char *route[] = {BB, "ip", "route", "add", "default", "via", gateway, NULL};
    if ((strcmp(found, ifname) && bb(rename) < 0) || bb(add) < 0 || bb(up) < 0 || (gateway && bb(route) < 0))
        return snprintf(why, size, "configuring %s failed (busybox ip)", ifname), -1;
    return 0;
}

/* --- sessions --------------------------------------------------------------------------- */
struct session {
    int used;
    uint32_t sid;
    pid_t pid;
    int in, master, gate;  /* -1 when closed */
    int out[2];            /* stdout, stderr (-1 when closed); a tty has only out[0] */
    unsigned long long count[2];
    struct buf pending;    /* stdin not yet taken by the process (at most the host's window) */
    int eof;               /* close stdin once pending is written */
};
static struct session sessions[MAX_SESSIONS];

static struct session *find(uint32_t sid) {
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i].used && sessions[i].sid == sid)
            return &sessions[i];
    return NULL;
}

static void close_fd(int *fd) {
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void set_winsize(int fd, long long rows, long long cols) {
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    ioctl(fd, TIOCSWINSZ, &ws);
}

/* A pty from the container's own devpts, so the process's tty has a name in its /dev. */
static int open_pty(int *master, int *slave) {
    const char *ptmx = ROOT "/dev/pts/ptmx";
    char name[128];
    int m = open(access(ptmx, F_OK) == 0 ? ptmx : "/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    int unlock = 0;
    unsigned int n;
    if (m < 0 || ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCGPTN, &n) < 0) {
        if (m >= 0)
            close(m);
        return -1;
    }
    snprintf(name, sizeof name, "%s/%u", access(ptmx, F_OK) == 0 ? ROOT "/dev/pts" : "/dev/pts", n);
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) {
        close(m);
        return -1;
    }
    *master = m;
    *slave = s;
    return 0;
}

static unsigned long long cap_mask(const struct val *caps, const char *set) {
    unsigned long long m = 0;
    struct val *l = get(caps, set);
    for (struct val *v = l && l->t == V_LIST ? l->kids : NULL; v; v = v->next)
        if (v->t == V_INT && v->i >= 0 && v->i < 64)
            m |= 1ULL << v->i;
    return m;
}

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The BPF the host compiled with libseccomp (hex), installed with its flags. */
static int load_seccomp(const struct val *sc) {
    const char *hex = gstr(sc, "bpf");
    size_t n = hex ? strlen(hex) / 2 : 0;
    if (n == 0 || n % sizeof(struct sock_filter))
        return errno = EINVAL, -1;
    unsigned char *prog = malloc(n);
    if (!prog)
        return -1;
    for (size_t i = 0; i < n; i++)
        prog[i] = hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]);
    struct sock_fprog fprog = {.len = n / sizeof(struct sock_filter), .filter = (struct sock_filter *)prog};
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned)gint(sc, "flags", 0), &fprog);
    free(prog);
    return r < 0 ? -1 : 0;
}

struct cap_header { uint32_t version; int pid; };
struct cap_data { uint32_t effective, permitted, inheritable; };

/* execvp's search in the container's PATH. */
static const char *lookup(const char *name, const char *path, char *out, size_t size) {
    if (strchr(name, '/'))
        return access(name, F_OK) == 0 ? name : NULL;
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s", path);
    for (char *d = dirs, *next; d; d = next) {
        next = strchr(d, ':');
        if (next)
            *next++ = 0;
        if ((size_t)snprintf(out, size, "%s/%s", *d ? d : ".", name) >= size)
            continue;
        if (access(out, X_OK) == 0 && !is_dir(out))
            return out;
    }
    errno = ENOENT;
    return NULL;
}

#define FAIL(what) do { step = what; goto fail; } while (0)

/* The forked child: from the agent to the workload, in runc's order. Never returns. */
static void child(const struct val *p, int fds[3], int tty, int gate) {
    const char *step = "setsid";
    const char *arg0 = "?";
    struct val *args = get(p, "args");
    if (args && args->t == V_LIST && args->kids && args->kids->t == V_STR)
        arg0 = args->kids->s;
    setsid();
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], i) < 0)
            FAIL("dup2");
    if (tty && ioctl(0, TIOCSCTTY, 0) < 0)
        FAIL("set the controlling terminal");
    if (gate >= 0) {
        char c = 0;
        while (read(gate, &c, 1) < 0 && errno == EINTR)
            ;
        if (c != '1')
            _exit(0);
    }
    if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < 65; sig++)
        sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (chroot(ROOT) < 0)
        FAIL("chroot");
    const char *cwd = gstr(p, "cwd");
    if (chdir(cwd && *cwd ? cwd : "/") < 0)
        FAIL(NULL);
    struct val *caps = get(p, "caps"), *sc = get(p, "seccomp");
    if (caps && caps->t != V_DICT)
        caps = NULL;
    if (sc && sc->t != V_DICT)
        sc = NULL;
    int nnp = gtrue(p, "nnp");
    long long uid = gint(p, "uid", 0), gid = gint(p, "gid", 0);
    if (sc && !nnp && load_seccomp(sc) < 0) /* without no_new_privs this needs CAP_SYS_ADMIN */
        FAIL("load seccomp filter");
    if (caps) {
        unsigned long long bounding = cap_mask(caps, "bounding");
        char last[16] = "";
        int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (read(fd, last, sizeof last - 1) < 0)
                last[0] = 0;
            close(fd);
        }
        for (int c = 0; c <= (last[0] ? atoi(last) : 40); c++)
            if (!(bounding & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
                FAIL("drop a capability from the bounding set");
        if (uid != 0)
            prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
    }
    struct val *gl = get(p, "gids");
    gid_t gids[64];
    size_t ng = 0;
    for (struct val *g = gl && gl->t == V_LIST ? gl->kids : NULL; g && ng < 64; g = g->next)
        if (g->t == V_INT)
            gids[ng++] = g->i;
    if (setgroups(ng, gids) < 0)
        FAIL("setgroups");
    if (setgid(gid) < 0)
        FAIL("setgid");
    if (setuid(uid) < 0)
        FAIL("setuid");
    struct val *um = get(p, "umask");
    if (um && um->t == V_INT)
        umask(um->i);
    /* the environment, last value of a name winning */
    struct val *el = get(p, "env");
    size_t ne = 0;
    char **env = calloc((el && el->t == V_LIST ? el->n : 0) + 1, sizeof *env);
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    for (struct val *e = el && el->t == V_LIST ? el->kids : NULL; env && e; e = e->next) {
        char *eq = e->t == V_STR ? strchr(e->s, '=') : NULL;
        if (!eq)
            continue;
        size_t klen = eq - e->s + 1;
        size_t j = 0;
        while (j < ne && strncmp(env[j], e->s, klen))
            j++;
        env[j] = e->s;
        ne += j == ne;
        if (klen == 5 && strncmp(e->s, "PATH=", 5) == 0)
            path = eq + 1;
    }
    char **argv = calloc((args && args->t == V_LIST ? args->n : 0) + 1, sizeof *argv);
    size_t na = 0;
    for (struct val *a = args && args->t == V_LIST ? args->kids : NULL; argv && a; a = a->next)
        if (a->t == V_STR)
            argv[na++] = a->s;
    if (!env || !argv || na == 0)
        FAIL("process.args");
    char found[4096];
    const char *exe = lookup(argv[0], path, found, sizeof found);
    if (!exe) { /* runc's words, which podman maps to 127 */
        if (strchr(argv[0], '/'))
            dprintf(2, "rt: exec: \"%s\": stat %s: no such file or directory\n", argv[0], argv[0]);
        else
            dprintf(2, "rt: exec: \"%s\": executable file not found in $PATH\n", argv[0]);
        _exit(127);
    }
    if (caps) {
        unsigned long long eff = cap_mask(caps, "effective"), perm = cap_mask(caps, "permitted");
        unsigned long long inh = cap_mask(caps, "inheritable");
        struct cap_header h = {0x20080522, 0};
        struct cap_data d[2];
        for (int i = 0; i < 2; i++)
            d[i] = (struct cap_data){eff >> (32 * i), perm >> (32 * i), inh >> (32 * i)};
        if (syscall(SYS_capset, &h, d) < 0)
            FAIL("capset");
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        unsigned long long amb = cap_mask(caps, "ambient");
        for (int c = 0; c < 64; c++)
            if ((amb & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
                FAIL("raise an ambient capability");
    }
    if (nnp) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            FAIL("set no_new_privs");
        if (sc && load_seccomp(sc) < 0) /* as late as possible, so the filter sees only the workload */
            FAIL("load seccomp filter");
    }
    execve(exe, argv, env);
    step = NULL;
fail:;
    int e = errno;
    if (step)
        dprintf(2, "rt: exec %s: %s: %s\n", arg0, step, strerror(e));
    else
        dprintf(2, "rt: exec %s: %s\n", arg0, strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

/* The host sends stdin within a window of unacknowledged bytes, and we acknowledge what the
 * process took: a process that does not read its stdin then stalls only its own stream. */
static void ack(uint32_t sid, size_t n) {
    if (n)
        send_msg(sid, "ack", "bytes", 'i', (long long)n, NULL);
}

static void end_stdin(struct session *s) {
    if (s->in >= 0 && s->in != s->master)
        close(s->in);
    s->in = -1;
    ack(s->sid, s->pending.n);
    s->pending.n = 0;
}

static void feed_stdin(struct session *s) {
    size_t off = 0;
    while (off < s->pending.n) {
        ssize_t w = write(s->in, s->pending.p + off, s->pending.n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w < 0) { /* EPIPE: it closed its stdin; what is left is dropped */
            ack(s->sid, off);
            memmove(s->pending.p, s->pending.p + off, s->pending.n - off);
            s->pending.n -= off;
            end_stdin(s);
            return;
        }
        off += w;
    }
    memmove(s->pending.p, s->pending.p + off, s->pending.n - off);
    s->pending.n -= off;
    ack(s->sid, off);
    if (s->eof && s->pending.n == 0)
        end_stdin(s);
}

/* Forks the process of `p` for session `sid`; gated: it waits for `start`. */
static struct session *spawn(uint32_t sid, const struct val *p, int gated, char *why, size_t size) {
    struct session *s = NULL;
    for (int i = 0; i < MAX_SESSIONS && !s; i++)
        if (!sessions[i].used)
            s = &sessions[i];
    if (!s)
        return snprintf(why, size, "too many sessions"), NULL;
    *s = (struct session){1, sid, 0, -1, -1, -1, {-1, -1}, {0, 0}, {0}, 0};
    int tty = gtrue(p, "tty"), fds[3], gate[2] = {-1, -1}, pipes[6] = {-1, -1, -1, -1, -1, -1};
    if (tty) {
        int slave;
        if (open_pty(&s->master, &slave) < 0)
            return s->used = 0, snprintf(why, size, "open a pty: %s", strerror(errno)), NULL;
        if (gint(p, "rows", 0))
            set_winsize(s->master, gint(p, "rows", 0), gint(p, "cols", 0));
        fds[0] = fds[1] = fds[2] = slave;
        s->in = s->out[0] = s->master;
    } else {
        for (int i = 0; i < 3; i++)
            if (pipe2(pipes + 2 * i, O_CLOEXEC) < 0) {
                for (int j = 0; j < 6; j++)
                    close_fd(&pipes[j]);
                return s->used = 0, snprintf(why, size, "pipe: %s", strerror(errno)), NULL;
            }
        fds[0] = pipes[0], fds[1] = pipes[3], fds[2] = pipes[5];
        s->in = pipes[1], s->out[0] = pipes[2], s->out[1] = pipes[4];
    }
    if (gated && pipe2(gate, O_CLOEXEC) < 0)
        gate[0] = gate[1] = -1;
    pid_t pid = fork();
    if (pid == 0)
        child(p, fds, tty, gate[0]);
    int e = errno;
    for (int i = 0; i < 3; i++)
        if (i == 0 || fds[i] != fds[0])
            close(fds[i]);
    close_fd(&gate[0]);
    if (pid < 0) {
        close_fd(&gate[1]);
        close_fd(&s->in);
        if (!tty)
            close_fd(&s->out[0]);
        close_fd(&s->out[1]);
        s->master = s->out[0] = -1;
        s->used = 0;
        return snprintf(why, size, "fork: %s", strerror(e)), NULL;
    }
    s->pid = pid;
    s->gate = gate[1];
    for (int i = 0; i < 2; i++)
        if (s->out[i] >= 0)
            fcntl(s->out[i], F_SETFL, fcntl(s->out[i], F_GETFL) | O_NONBLOCK);
    fcntl(s->in, F_SETFL, fcntl(s->in, F_GETFL) | O_NONBLOCK);
    return s;
}

/* Forwards what out[i] has (all of it when draining); closes it at EOF. */
static void pump(struct session *s, int i, int drain) {
    static char data[65536];
    for (;;) {
        ssize_t n = read(s->out[i], data, sizeof data);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) { /* EOF, or EIO: a pty whose last slave closed */
            if (s->master == s->out[i])
                s->master = s->in = -1;
            close_fd(&s->out[i]);
            return;
        }
        s->count[i] += n;
        send_frame(STDOUT + i, s->sid, data, n);
        if (!drain)
            return;
    }
}

static void reap(void) {
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0)
            return;
        for (int j = 0; j < MAX_SESSIONS; j++) {
            struct session *s = &sessions[j];
            if (!s->used || s->pid != pid)
                continue;
            int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            for (int i = 0; i < 2; i++)
                if (s->out[i] >= 0)
                    pump(s, i, 1);
            if (s->master >= 0 && s->in == s->master)
                s->in = -1;
            for (int i = 0; i < 2; i++)
                close_fd(&s->out[i]);
            s->master = -1;
            close_fd(&s->in);
            close_fd(&s->gate);
            free(s->pending.p);
            s->pending = (struct buf){0};
            send_msg(s->sid, "exit", "status", 'i', (long long)status, "stdout", 'i', (long long)s->count[0],
                     "stderr", 'i', (long long)s->count[1], NULL);
            s->used = 0;
        }
    }
}

static int cmp_int(const void *a, const void *b) {
    return *(const int *)a - *(const int *)b;
}

static void send_ps(uint32_t sid) {
    int pids[4096], n = 0;
    char path[64];
    struct stat st;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d)) && n < 4096;) {
        int pid = atoi(e->d_name);
        snprintf(path, sizeof path, "/proc/%d/exe", pid);
        if (pid > 1 && stat(path, &st) == 0) /* kernel threads have no exe */
            pids[n++] = pid;
    }
    if (d)
        closedir(d);
    qsort(pids, n, sizeof *pids, cmp_int);
    struct buf b = {0};
    put(&b, "{", 1);
    m_str(&b, "op");
    m_str(&b, "ps");
    m_str(&b, "pids");
    put(&b, "[", 1);
    put_u32le(&b, n);
    for (int i = 0; i < n; i++)
        m_int(&b, pids[i]);
    put(&b, "0", 1);
    send_frame(MSG, sid, b.p, b.n);
    free(b.p);
}

/* The balloon's driver, loaded on the first memory update (its dependencies are in already). */
static int load_balloon(void) {
    if (access("/sys/module/virtio_balloon", F_OK) == 0)
        return 0;
    static char list[8192];
    int fd = open("/rt/modules", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? 0 : read(fd, list, sizeof list - 1);
    if (fd >= 0)
        close(fd);
    list[n > 0 ? n : 0] = 0;
    for (char *save = NULL, *m = strtok_r(list, " \n", &save); m; m = strtok_r(NULL, " \n", &save))
        if (strlen(m) > 18 && strcmp(m + strlen(m) - 18, "/virtio_balloon.ko") == 0)
            return load_module(m);
    return errno = ENOENT, -1;
}

static void handle(int kind, uint32_t sid, const unsigned char *payload, size_t size) {
    struct session *s = find(sid);
    if (kind == STDIN) {
        if (s && s->in >= 0 && !s->eof) {
            put(&s->pending, payload, size);
            feed_stdin(s);
        } else {
            ack(sid, size); /* nobody takes it: the host's window must not shrink for it */
        }
        return;
    }
    if (kind == END) {
        if (s && s->in >= 0 && s->master < 0) {
            s->eof = 1;
            feed_stdin(s);
        }
        return;
    }
    if (kind != MSG)
        return;
    struct parser ps = {payload, payload + size, 0};
    struct val *m = parse(&ps, 0);
    if (!m || m->t != V_DICT) {
        free_val(m);
        send_error(sid, "?", "malformed message");
        return;
    }
    const char *op = gstr(m, "op");
    op = op ? op : "?";
    struct val *target = get(m, "target");
    if (target && target->t == V_INT)
        s = find(target->i);
    char why[600] = "";
    if (strcmp(op, "create") == 0) {
        struct val *net = get(m, "net");
        struct session *w;
        if (net && net->t == V_DICT && configure_net(net, why, sizeof why) < 0) {
        } else if (prepare_root(m, why, sizeof why) < 0) {
        } else if ((w = spawn(0, get(m, "process"), 1, why, sizeof why))) {
            send_msg(sid, "created", "pid", 'i', (long long)w->pid, NULL);
        }
    } else if (strcmp(op, "start") == 0) {
        if (!s || s->gate < 0) {
            snprintf(why, sizeof why, "nothing to start");
        } else {
            write_all(s->gate, "1", 1);
            close_fd(&s->gate);
            send_msg(sid, "started", NULL);
        }
    } else if (strcmp(op, "exec") == 0) {
        struct session *x = spawn(sid, get(m, "process"), 0, why, sizeof why);
        if (x)
            send_msg(sid, "started", "pid", 'i', (long long)x->pid, NULL);
    } else if (strcmp(op, "signal") == 0) {
        int sig = gint(m, "sig", 0);
        if (gtrue(m, "all")) {
            kill(-1, sig); /* every process but PID 1, the agent */
        } else if (s && kill(s->pid, sig) < 0) {
            snprintf(why, sizeof why, "%s", strerror(errno));
        }
        if (!why[0])
            send_msg(sid, "ok", NULL);
    } else if (strcmp(op, "resize") == 0) {
        if (s && s->master >= 0)
            set_winsize(s->master, gint(m, "rows", 0), gint(m, "cols", 0));
    } else if (strcmp(op, "balloon") == 0) {
        if (load_balloon() < 0)
            snprintf(why, sizeof why, "load virtio_balloon: %s", strerror(errno));
        else
            send_msg(sid, "ok", NULL);
    } else if (strcmp(op, "ps") == 0) {
        send_ps(sid);
    } else {
        snprintf(why, sizeof why, "unknown op '%s'", op);
    }
    if (why[0])
        send_error(sid, op, why);
    free_val(m); /* a forked process has its own copy */
}

static int open_port(const char *name) {
    char dev[300] = "/dev/";
    for (int tries = 0; tries < 2500; tries++) { /* the port appears once the driver has asked QEMU */
        if (find_by_attr("/sys/class/virtio-ports", "name", name, dev + 5, sizeof dev - 5) == 0)
            return open(dev, O_RDWR | O_CLOEXEC);
        usleep(2000);
    }
    errno = ENOENT;
    return -1;
}

static void fatal(const char *what) {
    logf_("fatal: %s", what);
    sync();
    reboot(RB_POWER_OFF);
    _exit(1);
}

int main(void) {
    boot();
    signal(SIGPIPE, SIG_IGN); /* a closed stdin is an EPIPE to handle, not a signal */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    port = open_port("rt.agent");
    if (port < 0 || sfd < 0)
        fatal("no virtio port named rt.agent");
    send_msg(0, "hello", "version", 'i', 1LL, NULL);
    struct buf in = {0};
    static unsigned char chunk[65536];
    for (;;) {
        struct pollfd pf[2 + 3 * MAX_SESSIONS];
        struct session *who[2 + 3 * MAX_SESSIONS];
        int which[2 + 3 * MAX_SESSIONS], n = 0; /* 0, 1: stdout, stderr; 2: stdin */
        pf[n++] = (struct pollfd){port, POLLIN, 0};
        pf[n++] = (struct pollfd){sfd, POLLIN, 0};
        for (int j = 0; j < MAX_SESSIONS; j++)
            for (int i = 0; i < 2; i++)
                if (sessions[j].used && sessions[j].out[i] >= 0) {
                    who[n] = &sessions[j];
                    which[n] = i;
                    pf[n++] = (struct pollfd){sessions[j].out[i], POLLIN, 0};
                }
        for (int j = 0; j < MAX_SESSIONS; j++)
            if (sessions[j].used && sessions[j].in >= 0 && sessions[j].pending.n) {
                who[n] = &sessions[j];
                which[n] = 2;
                pf[n++] = (struct pollfd){sessions[j].in, POLLOUT, 0};
            }
        if (poll(pf, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            fatal(strerror(errno));
        }
        for (int k = 2; k < n; k++) {
            struct session *s = who[k];
            if (!pf[k].revents || !s->used)
                continue;
            if (which[k] == 2 && s->in == pf[k].fd)
                feed_stdin(s);
            else if (which[k] < 2 && s->out[which[k]] == pf[k].fd)
                pump(s, which[k], 0);
        }
        if (pf[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
        }
        if (pf[0].revents) {
            ssize_t got = read(port, chunk, sizeof chunk);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                fatal("the host closed the agent port");
            put(&in, chunk, got);
            size_t off = 0;
            while (in.n - off >= HEADER) {
                const unsigned char *h = in.p + off;
                uint32_t size = (uint32_t)h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3];
                if (size > MAX_PAYLOAD)
                    fatal("a frame is too large");
                if (in.n - off < HEADER + size)
                    break;
                uint32_t sid = (uint32_t)h[5] << 24 | h[6] << 16 | h[7] << 8 | h[8];
                handle(h[4], sid, h + HEADER, size);
                off += HEADER + size;
            }
            memmove(in.p, in.p + off, in.n - off);
            in.n -= off;
        }
        reap();
    }
}
#endif
