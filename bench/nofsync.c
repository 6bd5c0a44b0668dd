/* nofsync.c - diagnostic LD_PRELOAD for bench/: fsync and fdatasync return
 * 0 at once. Used only to measure how much of one removal's wall time is the
 * write-ahead queue entry's durability (never in a real run). */
int fsync(int fd);
int fdatasync(int fd);

int fsync(int fd)
{
    (void)fd;
    return 0;
}

int fdatasync(int fd)
{
    (void)fd;
    return 0;
}
