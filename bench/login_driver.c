/* login_driver.c - runs a PAM account (and optionally session) stack N times
 * for one user in one process, for the benchmarks in bench/.
 *
 *   login_driver SERVICE USER N [--session] [--report]
 *
 * Each cycle: pam_start, pam_acct_mgmt, [pam_open_session,
 * pam_close_session], pam_end. Every pam_acct_mgmt must return PAM_SUCCESS
 * (exit 2 otherwise). Meant to run under pam_wrapper (PAM_WRAPPER=1,
 * PAM_WRAPPER_SERVICE_DIR) and nss_wrapper (NSS_WRAPPER_PASSWD/GROUP/SHADOW),
 * optionally under valgrind.
 *
 * Output (one "key=value" per line, on stdout):
 *   cycles=N  total_ns=...  per_call_ns=...
 * and with --report:
 *   fds_before=.. fds_after_first=.. fds_after=..
 *                                      open descriptors (/proc/self/fd)
 *                                      before the first cycle, after it
 *                                      and at the end; when the end differs
 *                                      from the start, "fd N -> TARGET" lines
 *   rss_kb_1000=.. rss_kb_end=..       VmRSS after 1,000 cycles and at the end
 *   mapped_libcurl=0|1 mapped_tls=0|1 mapped_libconfig=0|1 mapped_jsonc=0|1
 *                                      what /proc/self/maps shows at the end
 *
 * Compiled by bench/run.sh: gcc -O2 -o login_driver login_driver.c -lpam */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_appl.h>

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
    (void)n;
    (void)msg;
    (void)data;
    *resp = NULL;
    return PAM_CONV_ERR; /* nothing on the account path may prompt */
}

static int count_fds_list(int list);

static int count_fds(void)
{
    return count_fds_list(0);
}

static int count_fds_list(int list)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    if(d == NULL)
        return -1;
    while((de = readdir(d)) != NULL) {
        char path[300], target[512];
        ssize_t len;

        if(de->d_name[0] == '.')
            continue;
        n++;
        if(!list)
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
        len = readlink(path, target, sizeof(target) - 1);
        target[len > 0 ? len : 0] = '\0';
        printf("fd %s -> %s\n", de->d_name, target);
    }
    closedir(d);
    return n - 1; /* the DIR's own descriptor */
}

static long vm_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    if(f == NULL)
        return -1;
    while(fgets(line, sizeof(line), f) != NULL)
        if(strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Which interesting libraries are mapped into this process right now. */
static void report_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    int curl = 0, tls = 0, cfg = 0, json = 0;

    if(f == NULL) {
        printf("mapped_libcurl=-1\n");
        return;
    }
    while(fgets(line, sizeof(line), f) != NULL) {
        if(strstr(line, "libcurl") != NULL)
            curl = 1;
        if(strstr(line, "libssl") != NULL || strstr(line, "libcrypto") != NULL ||
           strstr(line, "libgnutls") != NULL || strstr(line, "libnettle") != NULL)
            tls = 1;
        if(strstr(line, "libconfig") != NULL)
            cfg = 1;
        if(strstr(line, "libjson-c") != NULL)
            json = 1;
    }
    fclose(f);
    printf("mapped_libcurl=%d\nmapped_tls=%d\nmapped_libconfig=%d\n"
           "mapped_jsonc=%d\n",
           curl, tls, cfg, json);
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    const struct pam_conv pc = { conv, NULL };
    const char *service, *user;
    int session = 0, report = 0, fds_before = 0, fds_first = -1, i;
    long n, rss1000 = -1;
    double t0, t1;

    if(argc < 4) {
        fprintf(stderr, "usage: %s SERVICE USER N [--session] [--report]\n", argv[0]);
        return 64;
    }
    service = argv[1];
    user = argv[2];
    n = strtol(argv[3], NULL, 10);
    for(i = 4; i < argc; i++) {
        if(strcmp(argv[i], "--session") == 0)
            session = 1;
        else if(strcmp(argv[i], "--report") == 0)
            report = 1;
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 64;
        }
    }
    if(report)
        fds_before = count_fds();

    t0 = now_ns();
    for(i = 0; i < n; i++) {
        pam_handle_t *h = NULL;
        int rc = pam_start(service, user, &pc, &h);

        if(rc != PAM_SUCCESS) {
            fprintf(stderr, "pam_start: %d\n", rc);
            return 2;
        }
        rc = pam_acct_mgmt(h, PAM_SILENT);
        if(rc != PAM_SUCCESS) {
            fprintf(stderr, "cycle %d: pam_acct_mgmt: %s\n", i, pam_strerror(h, rc));
            pam_end(h, rc);
            return 2;
        }
        if(session) {
            rc = pam_open_session(h, PAM_SILENT);
            if(rc == PAM_SUCCESS)
                rc = pam_close_session(h, PAM_SILENT);
            if(rc != PAM_SUCCESS) {
                fprintf(stderr, "cycle %d: session: %s\n", i, pam_strerror(h, rc));
                pam_end(h, rc);
                return 2;
            }
        }
        pam_end(h, rc);
        if(report && i == 0)
            fds_first = count_fds();
        if(report && i + 1 == 1000)
            rss1000 = vm_rss_kb();
    }
    t1 = now_ns();

    printf("cycles=%ld\ntotal_ns=%.0f\nper_call_ns=%.1f\n", n, t1 - t0,
           n > 0 ? (t1 - t0) / (double)n : 0.0);
    if(report) {
        int fds_after = count_fds();

        printf("fds_before=%d\nfds_after_first=%d\nfds_after=%d\n", fds_before, fds_first,
               fds_after);
        if(fds_after != fds_before)
            (void)count_fds_list(1);
        printf("rss_kb_1000=%ld\nrss_kb_end=%ld\n", rss1000, vm_rss_kb());
        report_maps();
    }
    return 0;
}
