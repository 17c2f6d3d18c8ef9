#define _GNU_SOURCE
#include "csignals.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/// SWEEP: the handler owns the slot (it is reading its path); nothing else may touch it again.
enum { FREE = 0, BUSY = 1, LIVE = 2, SWEEP = 3 };
enum { TEMP_SLOTS = 256, TEMP_PATH = 4096, MAP_SLOTS = 4096, MAP_PATH = 1024 };

struct temp_slot {
    _Atomic int state;
    char path[TEMP_PATH];
};

struct map_slot {
    _Atomic int state;
    uintptr_t base;
    size_t length;
    int fd;
    char path[MAP_PATH];
};

static struct temp_slot temps[TEMP_SLOTS];
static struct map_slot maps[MAP_SLOTS];
static volatile sig_atomic_t exit_status = 74;
/// Set by the handler before it sweeps: no temporary file may be created after that.
static _Atomic int dying = 0;
/// Temporary files being created right now (the handler waits for these to finish before its sweep).
static _Atomic int creating = 0;

static int claim(_Atomic int *state) {
    int expected = FREE;
    return atomic_compare_exchange_strong(state, &expected, BUSY);
}

static int temp_register(const char *path) {
    size_t n = strlen(path);
    if (n >= TEMP_PATH) return -1;
    for (int i = 0; i < TEMP_SLOTS; i++) {
        if (!claim(&temps[i].state)) continue;
        memcpy(temps[i].path, path, n + 1);
        atomic_store(&temps[i].state, LIVE);
        return i;
    }
    return -1;
}

int k2_temp_create(int folder, const char *name, int flags, int mode, const char *path, int *slot) {
    *slot = -1;
    atomic_fetch_add(&creating, 1);
    if (atomic_load(&dying)) {
        // The process is exiting from the handler on another thread: create nothing, wait for the end.
        atomic_fetch_sub(&creating, 1);
        for (;;) pause();
    }
    int fd = openat(folder, name, flags, mode);
    int saved = errno;
    if (fd >= 0) *slot = temp_register(path);
    atomic_fetch_sub(&creating, 1);
    errno = saved;
    return fd;
}

void k2_temp_unregister(int slot) {
    if (slot < 0 || slot >= TEMP_SLOTS) return;
    // Only a LIVE slot is taken back: one the handler is sweeping (SWEEP) is left to it (the process is ending),
    // so its path is never rewritten while the handler reads it.
    int expected = LIVE;
    if (!atomic_compare_exchange_strong(&temps[slot].state, &expected, BUSY)) return;
    temps[slot].path[0] = 0;
    atomic_store(&temps[slot].state, FREE);
}

int k2_map_register(const void *base, size_t length, int fd, const char *path) {
    for (int i = 0; i < MAP_SLOTS; i++) {
        if (!claim(&maps[i].state)) continue;
        maps[i].base = (uintptr_t)base;
        maps[i].length = length;
        maps[i].fd = fd;
        size_t n = strlen(path);
        if (n >= MAP_PATH) {
            // Keep the end of a long path: it names the file.
            path += n - (MAP_PATH - 1);
            n = MAP_PATH - 1;
        }
        memcpy(maps[i].path, path, n + 1);
        atomic_store(&maps[i].state, LIVE);
        return i;
    }
    return -1;
}

void k2_map_unregister(int slot) {
    if (slot < 0 || slot >= MAP_SLOTS) return;
    atomic_store(&maps[slot].state, BUSY);
    maps[slot].length = 0;
    atomic_store(&maps[slot].state, FREE);
}

int k2_temp_count(void) {
    int n = 0;
    for (int i = 0; i < TEMP_SLOTS; i++) n += atomic_load(&temps[i].state) == LIVE;
    return n;
}

int k2_map_count(void) {
    int n = 0;
    for (int i = 0; i < MAP_SLOTS; i++) n += atomic_load(&maps[i].state) == LIVE;
    return n;
}

// ---- the handler: write(2), fstat(2), unlink(2), nanosleep(2), signal(2), raise(3) and _exit(2) only ----

static void put(const char *text) {
    size_t n = 0;
    while (text[n]) n++;
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, text, n);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return;
        }
        text += w;
        n -= (size_t)w;
    }
}

static void put_number(unsigned long long v) {
    char digits[24];
    int i = (int)sizeof digits - 1;
    digits[i] = 0;
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && i > 0);
    put(digits + i);
}

static int remove_temporaries(void) {
    int removed = 0;
    // No new temporary file from now on; those being created are waited for (a system call each, so the
    // wait is short; bounded at about a second in case the fault is inside one).
    atomic_store(&dying, 1);
    struct timespec step = {0, 1000000};
    for (int i = 0; i < 1000 && atomic_load(&creating) > 0; i++) nanosleep(&step, NULL);
    for (int i = 0; i < TEMP_SLOTS; i++) {
        int expected = LIVE;
        // Claimed before its path is read: a thread unregistering it at the same moment leaves it alone.
        if (!atomic_compare_exchange_strong(&temps[i].state, &expected, SWEEP)) continue;
        if (unlink(temps[i].path) == 0) removed++;
    }
    return removed;
}

/// Set by the first handler to run: a second thread faulting at the same moment (parallel scans of one shrunk file)
/// prints nothing and waits for the first to end the process, so the report is one line, not two interleaved.
static atomic_int reporting = 0;

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    (void)context;
    int idle = 0;
    if (!atomic_compare_exchange_strong(&reporting, &idle, 1)) {
        struct timespec pause = {1, 0};
        for (;;) nanosleep(&pause, NULL);
    }
    int saved = errno;
    uintptr_t address = (uintptr_t)info->si_addr;
    int found = -1;
    for (int i = 0; i < MAP_SLOTS && found < 0; i++) {
        if (atomic_load(&maps[i].state) != LIVE) continue;
        if (address >= maps[i].base && address - maps[i].base < maps[i].length) found = i;
    }
    int removed = remove_temporaries();
    if (found >= 0) {
        struct stat st;
        int known = fstat(maps[found].fd, &st) == 0;
        put("k2pack: error: ");
        put(maps[found].path);
        put(": the file changed while being read");
        if (known && (unsigned long long)st.st_size < (unsigned long long)maps[found].length) {
            put(" (it was ");
            put_number(maps[found].length);
            put(" bytes when opened, it is now ");
            put_number((unsigned long long)st.st_size);
            put(": truncated or rewritten by another program, such as a re-download or a sync)");
        } else {
            put(" (byte ");
            put_number(address - maps[found].base);
            put(" could not be read: the file was rewritten, or the disk or network file system failed)");
        }
        put("; stopped");
        if (removed > 0) put(", unfinished output files removed");
        put("\n");
        _exit(exit_status);
    }
    put("k2pack: bus error (SIGBUS) outside any mapped input file");
    if (removed > 0) put("; unfinished output files removed");
    put("\n");
    errno = saved;
    // The default action from now on, and the signal raised again (pending until the handler returns): a real
    // fault ends the process as SIGBUS would when the access re-runs, and so does a SIGBUS sent by another
    // process (kill), which would not fault again. The process never carries on with its temporaries gone and
    // `dying` set (k2_temp_create would wait forever).
    signal(sig, SIG_DFL);
    raise(sig);
}

int k2_install_sigbus_handler(int exit_code) {
    exit_status = exit_code;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGBUS, &action, NULL);
}
