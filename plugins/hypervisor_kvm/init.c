/* /init of rt's guest initramfs, built static by rt (cc -DRT_PYTHON=...): the mounts, the
 * virtio modules from /rt/modules (the NIC's only with rtnet=1 on the kernel command line),
 * then the agent under the guest's Python. It does what guest.INIT, the busybox script
 * used where no compiler is found, does, without a shell and an insmod process per module.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RT_PYTHON
#error "build with -DRT_PYTHON=\"/path/to/python3\""
#endif

static void mnt(const char *src, const char *dst, const char *type, const char *data) {
    if (mount(src, dst, type, 0, data) < 0)
        dprintf(2, "rt-init: mount %s on %s: %s\n", type, dst, strerror(errno));
}

static int is_nic(const char *m) {
    return strstr(m, "net") || strstr(m, "failover") || strstr(m, "virtio_blk");
}

int main(void) {
    static char list[8192];
    char path[512];
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
        snprintf(path, sizeof path, "/lib/modules/%s", m);
        int mfd = open(path, O_RDONLY | O_CLOEXEC);
        if (mfd < 0)
            continue;
        if (syscall(SYS_finit_module, mfd, "", 0) < 0 && errno != EEXIST)
            dprintf(2, "rt-init: load %s: %s\n", m, strerror(errno));
        close(mfd);
    }
    char *argv[] = {RT_PYTHON, "-I", "-S", "-B", "-c",
                    "import sys; sys.path.insert(0, '/rt'); import agent; agent.main()", NULL};
    execv(argv[0], argv);
    dprintf(2, "rt-init: exec %s: %s\n", argv[0], strerror(errno));
    return 1;
}
