/* rt-exec: the last step of every container process on the host kernel (CVE-2019-5736).
 *
 * The stub execs this program from a sealed memfd, and this program execs the workload.
 * So the process that execs the workload is never a host file: `#!/proc/self/exe` in the
 * image reaches this sealed copy, which nothing can write, and never the host's Python.
 *
 *   rt-exec LSM-ATTR LSM-VALUE PATH ARGV0 ARGS...
 *
 * LSM-ATTR is "-" or the /proc/thread-self/attr file whose label applies at our execve.
 * Built static (musl-gcc or cc -static): the container's own libc must never load here.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* one line on stderr: the parts, then a newline */
static void say(const char *a, const char *b, const char *c, const char *d)
{
	const char *parts[] = {a, b, c, d, "\n"};
	for (int i = 0; i < 5; i++)
		if (write(2, parts[i], strlen(parts[i])) < 0)
			return;
}

int main(int argc, char **argv, char **envp)
{
	if (argc < 5 || strcmp(argv[0], "rt-exec") != 0) {
		say("rt-exec: rt's exec helper, not for direct use", "", "", "");
		return 127;
	}
	if (strcmp(argv[1], "-") != 0) {
		int fd = open(argv[1], O_WRONLY | O_CLOEXEC);
		size_t n = strlen(argv[2]);
		if (fd < 0 || write(fd, argv[2], n) != (ssize_t)n) {
			say(argv[2], ": ", strerror(errno), "");
			return 1;
		}
		close(fd);
	}
	execve(argv[3], argv + 4, envp);
	say("exec ", argv[3], ": ", strerror(errno));
	return 127;
}
