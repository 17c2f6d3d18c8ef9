#ifndef K2PACK_COPENBLAS_H
#define K2PACK_COPENBLAS_H

#include <stddef.h>

/// OpenBLAS, loaded on first use (dlopen + dlsym) rather than linked: its library constructor starts a thread
/// pool that spins on a 2-core machine, so commands that never multiply matrices (inspect, verify, convert) must
/// not load it. Only the four entry points k2pack uses are resolved. The library is the OpenBLAS runtime of
/// libopenblas-dev (`libopenblas.so.0`), or the file named by K2PACK_OPENBLAS_LIBRARY.

/// Loads OpenBLAS once per process (thread-safe). Returns 0, or -1 with a message naming the library and the
/// loader's reason copied into `error` (NUL-terminated, truncated to `cap` - 1).
int copenblas_load(char *error, size_t cap);

/// Opens `library` and resolves the entry points without keeping it (for tests of the error path). Same result
/// convention as copenblas_load.
int copenblas_probe(const char *library, char *error, size_t cap);

/// The calls below load the library when needed; if it cannot be loaded they print the reason to standard error
/// and end the process with status 70 (callers that want an error instead call copenblas_load first).

/// c[m, n] = alpha · a[m, k] · op(b) + beta · c (row-major; lda, ldb, ldc the row strides), where op(b) is
/// b[n, k]ᵀ when `transpose_b` is non-zero and b[k, n] otherwise.
void copenblas_sgemm(int transpose_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                     float beta, float *c, int ldc);
int copenblas_get_num_threads(void);
void copenblas_set_num_threads(int threads);
/// OpenBLAS's build description (a static string owned by the library).
const char *copenblas_get_config(void);

#endif
