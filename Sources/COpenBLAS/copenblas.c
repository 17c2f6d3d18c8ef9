#include "copenblas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cblas.h's values for the call shapes k2pack makes (CBLAS_ORDER, CBLAS_TRANSPOSE), and the LP64 integer
   type of Debian's libopenblas0 builds (blasint is int unless OPENBLAS_USE64BITINT). */
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef int (*get_threads_fn)(void);
typedef void (*set_threads_fn)(int);
typedef char *(*config_fn)(void);

struct api {
    sgemm_fn sgemm;
    get_threads_fn get_threads;
    set_threads_fn set_threads;
    config_fn config;
};

static const char *const default_names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblas.dylib", NULL};

static void put(char *error, size_t cap, const char *message) {
    if (cap == 0) return;
    snprintf(error, cap, "%s", message);
}

/* Opens one library file and resolves every entry point; on success fills `out` and returns the handle.
   OPENBLAS_NUM_THREADS is set to 1 first unless the environment names a count: k2pack runs OpenBLAS single-threaded
   inside its own workers (Gemm.threads = 1), and a pthreads OpenBLAS otherwise starts a thread per core when it
   loads, each spinning on sched_yield for about 0.1 s against k2pack's workers (measured: 30 ms of CPU per process,
   during the forward pass of a one-token benchmark). The first setenv of the process installs a new environment
   array and leaves the old one in place, so a getenv on another thread meanwhile reads one or the other;
   k2pack sets no other variable. */
static void *open_one(const char *library, struct api *out, char *error, size_t cap) {
    char message[768];
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    void *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *reason = dlerror();
        snprintf(message, sizeof message, "cannot load OpenBLAS (%s): %s", library, reason ? reason : "unknown reason");
        put(error, cap, message);
        return NULL;
    }
    static const char *const symbols[] = {"cblas_sgemm", "openblas_get_num_threads", "openblas_set_num_threads", "openblas_get_config"};
    void *found[4];
    for (int i = 0; i < 4; i++) {
        found[i] = dlsym(handle, symbols[i]);
        if (found[i] == NULL) {
            snprintf(message, sizeof message, "cannot load OpenBLAS (%s): it has no %s", library, symbols[i]);
            put(error, cap, message);
            dlclose(handle);
            return NULL;
        }
    }
    out->sgemm = (sgemm_fn)found[0];
    out->get_threads = (get_threads_fn)found[1];
    out->set_threads = (set_threads_fn)found[2];
    out->config = (config_fn)found[3];
    return handle;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct api loaded;
static int load_status = -1;
static char load_error[1024];

static void load_once(void) {
    const char *chosen = getenv("K2PACK_OPENBLAS_LIBRARY");
    if (chosen != NULL && chosen[0] != 0) {
        load_status = open_one(chosen, &loaded, load_error, sizeof load_error) ? 0 : -1;
        return;
    }
    char first[1024] = {0};
    for (int i = 0; default_names[i] != NULL; i++) {
        char error[1024];
        if (open_one(default_names[i], &loaded, error, sizeof error)) {
            load_status = 0;
            return;
        }
        if (i == 0) snprintf(first, sizeof first, "%s", error);
    }
    snprintf(load_error, sizeof load_error,
             "%s (also tried libopenblas.so and libopenblas.dylib; install OpenBLAS, e.g. apt-get install "
             "libopenblas-dev, or set K2PACK_OPENBLAS_LIBRARY to its file)", first);
}

int copenblas_load(char *error, size_t cap) {
    pthread_once(&once, load_once);
    if (load_status != 0) put(error, cap, load_error);
    return load_status;
}

int copenblas_probe(const char *library, char *error, size_t cap) {
    struct api api;
    void *handle = open_one(library, &api, error, cap);
    if (handle == NULL) return -1;
    /* A library already loaded stays loaded (dlclose only drops this reference). */
    dlclose(handle);
    return 0;
}

static const struct api *require(void) {
    if (copenblas_load(NULL, 0) != 0) {
        fprintf(stderr, "k2pack: %s\n", load_error);
        exit(70);
    }
    return &loaded;
}

void copenblas_sgemm(int transpose_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                     float beta, float *c, int ldc) {
    require()->sgemm(ROW_MAJOR, NO_TRANS, transpose_b ? TRANS : NO_TRANS, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int copenblas_get_num_threads(void) { return require()->get_threads(); }

void copenblas_set_num_threads(int threads) { require()->set_threads(threads); }

const char *copenblas_get_config(void) { return require()->config(); }
