/* dlsym_check.c - the PAM module loads, exports the PAM entry points and
 * nothing else, and keeps libcurl, libconfig, json-c and TLS libraries out
 * of the process that loads it (sshd, login, ...).
 *
 * Module path: $PS_MODULE, default ".libs/pam_planetscale.so".
 * Output: TAP. The ELF file is read directly (no nm, readelf or ldd). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int test_no;
static int failures;

static void result(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void result(int ok, const char *fmt, ...)
{
    va_list ap;

    test_no++;
    if(!ok)
        failures++;
    printf("%s %d - ", ok ? "ok" : "not ok", test_no);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static const char *const entry_points[] = {
    "pam_sm_acct_mgmt",     "pam_sm_open_session",
    "pam_sm_close_session", "pam_sm_authenticate", /* PAM_IGNORE: a stray auth line is harmless */
    "pam_sm_setcred",       "pam_sm_chauthtok",
};
#define N_ENTRY (sizeof(entry_points) / sizeof(entry_points[0]))

/* Substrings of DT_NEEDED names (and sonames for RTLD_NOLOAD) that must not
 * appear: the module runs the command instead of loading these. */
static const char *const forbidden[] = {
    "libcurl", "libconfig", "libjson-c", "libgnutls", "libssl", "libcrypto", "libnss3",
};
#define N_FORBIDDEN (sizeof(forbidden) / sizeof(forbidden[0]))

static const char *const forbidden_sonames[] = {
    "libcurl.so.4",    "libcurl-gnutls.so.4", "libconfig.so.9", "libjson-c.so.5",
    "libgnutls.so.30", "libssl.so.3",         "libcrypto.so.3",
};
#define N_FORBIDDEN_SONAMES (sizeof(forbidden_sonames) / sizeof(forbidden_sonames[0]))

struct elf {
    const unsigned char *base;
    size_t size;
    const ElfW(Shdr) * sh;
    size_t shnum;
};

static int elf_open(const char *path, struct elf *e)
{
    const ElfW(Ehdr) * eh;
    struct stat st;
    void *m;
    int fd;

    memset(e, 0, sizeof(*e));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if(fd < 0)
        return -1;
    if(fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(ElfW(Ehdr))) {
        close(fd);
        return -1;
    }
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if(m == MAP_FAILED)
        return -1;
    e->base = m;
    e->size = (size_t)st.st_size;
    eh = m;
    if(memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
       eh->e_ident[EI_CLASS] != (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) ||
       eh->e_shoff == 0 || eh->e_shentsize != sizeof(ElfW(Shdr)) ||
       eh->e_shoff + (size_t)eh->e_shnum * sizeof(ElfW(Shdr)) > e->size)
        goto bad;
    e->sh = (const ElfW(Shdr) *)(e->base + eh->e_shoff);
    e->shnum = eh->e_shnum;
    return 0;
bad:
    munmap(m, e->size);
    memset(e, 0, sizeof(*e));
    return -1;
}

static int section_ok(const struct elf *e, const ElfW(Shdr) * s)
{
    return s->sh_type != SHT_NOBITS && s->sh_offset <= e->size &&
           s->sh_size <= e->size - s->sh_offset;
}

/* Name at offset off in string table section idx, or NULL. */
static const char *elf_str(const struct elf *e, size_t idx, size_t off)
{
    const ElfW(Shdr) * s;
    const char *p;

    if(idx >= e->shnum)
        return NULL;
    s = &e->sh[idx];
    if(!section_ok(e, s) || off >= s->sh_size)
        return NULL;
    p = (const char *)e->base + s->sh_offset + off;
    if(memchr(p, '\0', s->sh_size - off) == NULL)
        return NULL;
    return p;
}

/* Appends to bad (size badsz) every defined global or weak dynamic symbol
 * not named pam_sm_*. Returns the number found, or -1 when there is no
 * usable .dynsym. */
/* Appends " word" (or "word" to an empty buffer) when it fits. */
static void append_word(char *buf, size_t bufsz, const char *word)
{
    size_t len = strlen(buf);

    if(len + strlen(word) + 2 < bufsz)
        snprintf(buf + len, bufsz - len, "%s%s", len ? " " : "", word);
}

static int foreign_exports(const struct elf *e, char *bad, size_t badsz, int *n_pam)
{
    size_t i, j;
    int found = -1;

    *n_pam = 0;
    bad[0] = '\0';
    for(i = 0; i < e->shnum; i++) {
        const ElfW(Shdr) *s = &e->sh[i];
        const ElfW(Sym) * sym;

        if(s->sh_type != SHT_DYNSYM || !section_ok(e, s) || s->sh_entsize != sizeof(ElfW(Sym)))
            continue;
        found = 0;
        sym = (const ElfW(Sym) *)(e->base + s->sh_offset);
        for(j = 0; j < s->sh_size / sizeof(ElfW(Sym)); j++) {
            int bind = ELF64_ST_BIND(sym[j].st_info);
            const char *name;

            if(sym[j].st_shndx == SHN_UNDEF ||
               (bind != STB_GLOBAL && bind != STB_WEAK && bind != STB_GNU_UNIQUE))
                continue;
            name = elf_str(e, s->sh_link, sym[j].st_name);
            if(name == NULL || *name == '\0')
                continue;
            if(strncmp(name, "pam_sm_", 7) == 0) {
                (*n_pam)++;
                continue;
            }
            found++;
            append_word(bad, badsz, name);
        }
    }
    return found;
}

/* Writes the DT_NEEDED names, space-separated, into out. Returns their
 * number, or -1 when there is no usable .dynamic. */
static int needed(const struct elf *e, char *out, size_t outsz)
{
    size_t i, j;
    int n = -1;

    out[0] = '\0';
    for(i = 0; i < e->shnum; i++) {
        const ElfW(Shdr) *s = &e->sh[i];
        const ElfW(Dyn) * d;

        if(s->sh_type != SHT_DYNAMIC || !section_ok(e, s))
            continue;
        n = 0;
        d = (const ElfW(Dyn) *)(e->base + s->sh_offset);
        for(j = 0; j < s->sh_size / sizeof(ElfW(Dyn)) && d[j].d_tag != DT_NULL; j++) {
            const char *name;

            if(d[j].d_tag != DT_NEEDED)
                continue;
            name = elf_str(e, s->sh_link, d[j].d_un.d_val);
            if(name == NULL)
                continue;
            n++;
            append_word(out, outsz, name);
        }
    }
    return n;
}

int main(void)
{
    const char *path = getenv("PS_MODULE");
    char bad[4096], deps[4096];
    struct elf e;
    void *h;
    size_t i;
    int n, n_pam = 0, have_elf;

    if(path == NULL || *path == '\0')
        path = ".libs/pam_planetscale.so";

    printf("1..%zu\n", 2 + N_ENTRY + 4 + N_FORBIDDEN_SONAMES);

    have_elf = elf_open(path, &e) == 0;
    result(have_elf, "%s is a readable ELF file of this architecture", path);

    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    result(h != NULL, "dlopen %s", h != NULL ? path : dlerror());

    for(i = 0; i < N_ENTRY; i++)
        result(h != NULL && dlsym(h, entry_points[i]) != NULL, "exports %s", entry_points[i]);

    n = have_elf ? foreign_exports(&e, bad, sizeof(bad), &n_pam) : -1;
    result(n == 0 && n_pam == (int)N_ENTRY, "only pam_sm_* exported (%d found)%s%s", n_pam,
           n > 0 ? "; also:" : "", n > 0 ? bad : "");

    n = have_elf ? needed(&e, deps, sizeof(deps)) : -1;
    result(n > 0 && strstr(deps, "libpam.so") != NULL, "DT_NEEDED readable and names libpam: %s",
           deps);

    bad[0] = '\0';
    for(i = 0; n > 0 && i < N_FORBIDDEN; i++) {
        if(strstr(deps, forbidden[i]) != NULL)
            append_word(bad, sizeof(bad), forbidden[i]);
    }
    result(n > 0 && bad[0] == '\0', "no libcurl/libconfig/json-c/TLS in DT_NEEDED%s%s",
           bad[0] ? ": found" : "", bad);

    /* Whole dependency tree, as the dynamic loader resolved it. */
    bad[0] = '\0';
    if(h != NULL) {
        struct link_map *lm = NULL;

        if(dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0) {
            while(lm != NULL && lm->l_prev != NULL)
                lm = lm->l_prev;
            for(; lm != NULL; lm = lm->l_next)
                for(i = 0; i < N_FORBIDDEN; i++)
                    if(lm->l_name != NULL && strstr(lm->l_name, forbidden[i]))
                        append_word(bad, sizeof(bad), lm->l_name);
        }
    }
    result(h != NULL && bad[0] == '\0', "no forbidden library among the loaded objects%s%s",
           bad[0] ? ":" : "", bad);

    for(i = 0; i < N_FORBIDDEN_SONAMES; i++) {
        void *l = dlopen(forbidden_sonames[i], RTLD_NOW | RTLD_NOLOAD);

        result(l == NULL, "%s not loaded after dlopen of the module", forbidden_sonames[i]);
        if(l != NULL)
            dlclose(l);
    }

    if(h != NULL)
        dlclose(h);
    if(have_elf)
        munmap((void *)(uintptr_t)e.base, e.size);
    return failures ? 1 : 0;
}
