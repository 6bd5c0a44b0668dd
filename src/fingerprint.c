/* fingerprint.c - see fingerprint.h. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fingerprint.h"

typedef struct fnv {
    uint64_t h;
} fnv_t;

static void mix(fnv_t *f, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i;

    for(i = 0; i < len; i++) {
        f->h ^= p[i];
        f->h *= 0x100000001b3ULL;
    }
}

static void mix_str(fnv_t *f, const char *s)
{
    mix(f, s ? s : "", s ? strlen(s) + 1 : 1);
}

/* The file's identity, or a marker that it is missing. */
static void mix_file(fnv_t *f, const char *path)
{
    struct stat st;
    long long v[7];

    mix_str(f, path);
    if(!path || stat(path, &st) != 0) {
        mix(f, "-", 1);
        return;
    }
    v[0] = (long long)st.st_dev;
    v[1] = (long long)st.st_ino;
    v[2] = (long long)st.st_size;
    v[3] = (long long)st.st_mtim.tv_sec;
    v[4] = (long long)st.st_mtim.tv_nsec;
    v[5] = (long long)st.st_ctim.tv_sec;
    v[6] = (long long)st.st_ctim.tv_nsec;
    mix(f, v, sizeof(v));
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* include_dir itself and its *.conf files, in name order. */
static void mix_include_dir(fnv_t *f, const char *dir)
{
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0, i;

    mix_file(f, dir);
    if(!dir || !(d = opendir(dir)))
        return;
    while((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        char **nn;

        if(de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".conf") != 0)
            continue;
        if(n == cap) {
            cap = cap ? cap * 2 : 16;
            nn = realloc(names, cap * sizeof(*names));
            if(!nn)
                break;
            names = nn;
        }
        if(!(names[n] = strdup(de->d_name)))
            break;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_name);
    for(i = 0; i < n; i++) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        mix_file(f, path);
        free(names[i]);
    }
    free(names);
}

void ps_config_fingerprint(const ps_config_t *cfg, char out[17])
{
    fnv_t f = { 0xcbf29ce484222325ULL };
    int v[3];

    mix_file(&f, cfg->path);
    if(cfg->include_dir)
        mix_include_dir(&f, cfg->include_dir);
    mix_file(&f, cfg->token_file);
    mix_file(&f, cfg->ca_file);
    mix_str(&f, cfg->api_url);
    mix_str(&f, cfg->proxy);
    v[0] = cfg->flags_mode;
    v[1] = cfg->auth_is_oauth;
    v[2] = cfg->auth_header != NULL;
    mix(&f, v, sizeof(v));
    snprintf(out, 17, "%016llx", (unsigned long long)f.h);
}
