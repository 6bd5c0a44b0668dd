/* spawn_rusage.c - runs a command and reports its own resource usage.
 *
 *   spawn_rusage OUTFILE CMD [ARGS...]
 *
 * Forks (from this small process, so that ru_maxrss is the command's and not
 * that of a large parent such as the Python harness), execs CMD, waits with
 * wait4 and writes one line to OUTFILE:
 *   "status wall_s user_s sys_s maxrss_kb"
 * Exits with CMD's exit status. Compiled by bench/run.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec t0, t1;
    struct rusage ru;
    int status;
    pid_t pid;
    FILE *f;

    if(argc < 3) {
        fprintf(stderr, "usage: %s OUTFILE CMD [ARGS...]\n", argv[0]);
        return 64;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid = fork();
    if(pid < 0)
        return 71;
    if(pid == 0) {
        execv(argv[2], argv + 2);
        _exit(127);
    }
    if(wait4(pid, &status, 0, &ru) != pid)
        return 71;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    f = fopen(argv[1], "w");
    if(f == NULL)
        return 71;
    fprintf(f, "%d %.6f %.6f %.6f %ld\n",
            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
            (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss);
    fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
