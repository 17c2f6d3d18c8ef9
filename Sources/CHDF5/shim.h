#pragma once
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

/* HDF5's type and flag macros expand to global variables or function calls that Swift 6 cannot
   import safely; these accessors give them to Swift as plain calls (each also runs H5open()). */
static inline hid_t chdf5_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t chdf5_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t chdf5_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t chdf5_native_int64(void) { return H5T_NATIVE_INT64; }
static inline unsigned chdf5_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned chdf5_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline hid_t chdf5_p_default(void) { return H5P_DEFAULT; }
static inline hid_t chdf5_s_all(void) { return H5S_ALL; }
static inline hid_t chdf5_link_create_plist(void) { return H5Pcreate(H5P_LINK_CREATE); }
/* Silences HDF5's own error printing; k2pack reports errors itself. */
static inline void chdf5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
static inline hid_t chdf5_native_llong(void) { return H5T_NATIVE_LLONG; }

/* Copies a C string into buf (NUL-terminated, truncated to cap-1); returns the copied length. */
static inline long chdf5_copy_string(const char *value, char *buf, size_t cap) {
    size_t n = strlen(value);
    if (n >= cap) n = cap - 1;
    memcpy(buf, value, n);
    buf[n] = 0;
    return (long)n;
}

/* Reads a string attribute (fixed-length or variable-length) of object `obj` into `buf` (NUL-terminated,
   truncated to cap-1). Returns the string's length, or -1 when absent or not a string. */
static inline long chdf5_read_string_attribute(hid_t file, const char *obj, const char *name, char *buf, size_t cap) {
    if (cap == 0 || H5Aexists_by_name(file, obj, name, H5P_DEFAULT) <= 0) return -1;
    hid_t attr = H5Aopen_by_name(file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0) return -1;
    long result = -1;
    hid_t type = H5Aget_type(attr);
    if (type >= 0 && H5Tget_class(type) == H5T_STRING) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        if (H5Tis_variable_str(type) > 0) {
            char *value = NULL;
            H5Tset_size(mem, H5T_VARIABLE);
            if (H5Aread(attr, mem, &value) >= 0 && value != NULL) {
                result = chdf5_copy_string(value, buf, cap);
                H5free_memory(value);
            }
        } else {
            size_t size = H5Tget_size(type);
            char *value = (char *)calloc(size + 1, 1);
            H5Tset_size(mem, size + 1);
            if (value != NULL && H5Aread(attr, mem, value) >= 0) result = chdf5_copy_string(value, buf, cap);
            free(value);
        }
        H5Tclose(mem);
    }
    if (type >= 0) H5Tclose(type);
    H5Aclose(attr);
    return result;
}

/* Whether `path` names an existing link, checking every intermediate group (H5Lexists alone fails on a
   missing intermediate). */
static inline int chdf5_path_exists(hid_t file, const char *path) {
    char buffer[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buffer) return 0;
    memcpy(buffer, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buffer[i] == '/' || buffer[i] == 0) {
            char saved = buffer[i];
            buffer[i] = 0;
            if (!(i == 1 && buffer[0] == '/') && H5Lexists(file, buffer, H5P_DEFAULT) <= 0) return 0;
            buffer[i] = saved;
        }
    }
    return 1;
}
