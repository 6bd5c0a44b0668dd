/* fuzz_config.c - libFuzzer target for the configuration parser.
 *
 * Each input is written to one file, 0600, in a private directory made once
 * (mkdtemp under $TMPDIR, removed at a normal exit; fuzz/run.sh points
 * TMPDIR into its work directory), and loaded with ps_config_load() exactly as
 * the command would load /etc/planetscale/deprovision.conf. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[PATH_MAX];
static char fuzz_path[PATH_MAX + 32];

static void cleanup(void)
{
    if(fuzz_path[0])
        unlink(fuzz_path);
    if(fuzz_dir[0])
        rmdir(fuzz_dir);
}

static void init_once(void)
{
    const char *tmp = getenv("TMPDIR");

    if(fuzz_dir[0])
        return;
    if(!tmp || !tmp[0] || strlen(tmp) > PATH_MAX - 32)
        tmp = "/tmp";
    snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/fuzz_config.XXXXXX", tmp);
    if(!mkdtemp(fuzz_dir)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(fuzz_path, sizeof(fuzz_path), "%s/deprovision.conf", fuzz_dir);
    atexit(cleanup);
}

static void write_input(const uint8_t *data, size_t size)
{
    int fd = open(fuzz_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);

    if(fd < 0) {
        perror(fuzz_path);
        abort();
    }
    while(size) {
        ssize_t w = write(fd, data, size);
        if(w < 0 && errno == EINTR)
            continue;
        if(w <= 0) {
            perror(fuzz_path);
            abort();
        }
        data += w;
        size -= (size_t)w;
    }
    if(fchmod(fd, 0600) != 0 || close(fd) != 0) {
        perror(fuzz_path);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_config_t *cfg = NULL;
    char err[1024];
    int rv;

    init_once();
    write_input(data, size);
    err[0] = '\0';
    rv = ps_config_load(&cfg, fuzz_path, 0, err, sizeof(err));
    if(rv == 0) {
        ps_mapping_t m;
        size_t i;

        if(!cfg)
            abort();
        for(i = 0; i < cfg->nusers; i++)
            ps_config_map(cfg, cfg->users[i].login, &m);
        ps_config_pam_service_allowed(cfg, "planetscale-deprovision");
    } else if(cfg || !err[0]) {
        abort(); /* a failure always says why, and returns nothing */
    }
    ps_config_free(cfg);
    return 0;
}
