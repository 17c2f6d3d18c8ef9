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
/* File and dataset creation properties that store no object times: the same content gives the same bytes. */
static inline hid_t chdf5_untimed_file_plist(void) { hid_t p = H5Pcreate(H5P_FILE_CREATE); H5Pset_obj_track_times(p, 0); return p; }
static inline hid_t chdf5_untimed_dataset_plist(void) { hid_t p = H5Pcreate(H5P_DATASET_CREATE); H5Pset_obj_track_times(p, 0); return p; }
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

/* Writes a fixed-length string attribute `name` = `value` on object `obj` (replacing one already there).
   Returns a negative value on failure. */
static inline herr_t chdf5_write_string_attribute(hid_t file, const char *obj, const char *name, const char *value) {
    if (H5Aexists_by_name(file, obj, name, H5P_DEFAULT) > 0 && H5Adelete_by_name(file, obj, name, H5P_DEFAULT) < 0) return -1;
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0) return -1;
    size_t length = strlen(value);
    H5Tset_size(type, length > 0 ? length : 1);
    hid_t space = H5Screate(H5S_SCALAR);
    herr_t status = -1;
    if (space >= 0) {
        hid_t attr = H5Acreate_by_name(file, obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (attr >= 0) {
            status = H5Awrite(attr, type, value);
            H5Aclose(attr);
        }
        H5Sclose(space);
    }
    H5Tclose(type);
    return status;
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

/* Checks every link along `path` without following any that is not a hard link: returns 0 when a component
   is absent, 1 when every component is a hard link, 2 at a soft link, 3 at an external link (to another file),
   4 at a user-defined link. The first non-hard component's path is copied to `bad` (NUL-terminated). */
static inline int chdf5_path_links(hid_t file, const char *path, char *bad, size_t badcap) {
    char buffer[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buffer) return 0;
    memcpy(buffer, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buffer[i] == '/' || buffer[i] == 0) {
            char saved = buffer[i];
            buffer[i] = 0;
            if (!(i == 1 && buffer[0] == '/')) {
                if (H5Lexists(file, buffer, H5P_DEFAULT) <= 0) return 0;
                H5L_info_t info;
                if (H5Lget_info(file, buffer, &info, H5P_DEFAULT) < 0) return 0;
                if (info.type != H5L_TYPE_HARD) {
                    if (badcap > 0) chdf5_copy_string(buffer, bad, badcap);
                    return info.type == H5L_TYPE_SOFT ? 2 : info.type == H5L_TYPE_EXTERNAL ? 3 : 4;
                }
            }
            buffer[i] = saved;
        }
    }
    return 1;
}

/* How an open dataset stores its data: 0 in this file, 1 in external raw files (H5Pset_external), 2 a virtual
   dataset (mapped from other datasets, possibly other files), -1 when it cannot be told. */
static inline int chdf5_dataset_storage(hid_t set) {
    hid_t dcpl = H5Dget_create_plist(set);
    if (dcpl < 0) return -1;
    int result = 0;
    if (H5Pget_layout(dcpl) == H5D_VIRTUAL) result = 2;
    else if (H5Pget_external_count(dcpl) != 0) result = 1;
    H5Pclose(dcpl);
    return result;
}

/* For tests and fuzzing: hostile layouts a reference dump must not be able to use. Each returns >= 0 on success
   (intermediate groups are created). */
static inline hid_t chdf5_test_lcpl(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}
/* Creates the float dataset `name` of `space` with the creation properties `dcpl` (when `ok`: they were set)
   and closes it; 0 on success. The caller owns and closes `space` and `dcpl`. */
static inline int chdf5_test_create(hid_t file, const char *name, hid_t space, hid_t dcpl, int ok) {
    hid_t lcpl = chdf5_test_lcpl();
    hid_t set = ok ? H5Dcreate2(file, name, H5T_NATIVE_FLOAT, space, lcpl, dcpl, H5P_DEFAULT) : -1;
    if (set >= 0) H5Dclose(set);
    H5Pclose(lcpl);
    return set >= 0 ? 0 : -1;
}

static inline int chdf5_test_external_dataset(hid_t file, const char *name, const hsize_t *dims, int rank, const char *external) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int result = chdf5_test_create(file, name, space, dcpl, H5Pset_external(dcpl, external, 0, H5F_UNLIMITED) >= 0);
    H5Pclose(dcpl);
    H5Sclose(space);
    return result;
}

static inline int chdf5_test_virtual_dataset(hid_t file, const char *name, const hsize_t *dims, int rank, const char *source_file, const char *source_set) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t source = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int result = chdf5_test_create(file, name, space, dcpl, H5Pset_virtual(dcpl, space, source_file, source_set, source) >= 0);
    H5Pclose(dcpl);
    H5Sclose(source);
    H5Sclose(space);
    return result;
}

/* A chunked, deflate-compressed float dataset never written: its (zero) fill value makes a huge shape cost a
   few bytes on disk. */
static inline int chdf5_test_compressed_dataset(hid_t file, const char *name, const hsize_t *dims, int rank, const hsize_t *chunk) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int result = chdf5_test_create(file, name, space, dcpl, H5Pset_chunk(dcpl, rank, chunk) >= 0 && H5Pset_deflate(dcpl, 9) >= 0);
    H5Pclose(dcpl);
    H5Sclose(space);
    return result;
}

/* Writes the block [start, start + count) of a float dataset from `values` (row-major, `count` in shape). */
static inline herr_t chdf5_write_float_block(hid_t set, int rank, const hsize_t *start, const hsize_t *count, const float *values) {
    hid_t file_space = H5Dget_space(set);
    if (file_space < 0) return -1;
    herr_t status = H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t memory = H5Screate_simple(rank, count, NULL);
    if (status >= 0 && memory >= 0) status = H5Dwrite(set, H5T_NATIVE_FLOAT, memory, file_space, H5P_DEFAULT, values);
    else status = -1;
    if (memory >= 0) H5Sclose(memory);
    H5Sclose(file_space);
    return status;
}

/* Reads the block [start, start + count) of a float dataset (any rank ≤ 8) into `out`. */
static inline herr_t chdf5_read_float_block(hid_t set, int rank, const hsize_t *start, const hsize_t *count, float *out) {
    hid_t file_space = H5Dget_space(set);
    if (file_space < 0) return -1;
    herr_t status = H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t memory = H5Screate_simple(rank, count, NULL);
    if (status >= 0 && memory >= 0) status = H5Dread(set, H5T_NATIVE_FLOAT, memory, file_space, H5P_DEFAULT, out);
    else status = -1;
    if (memory >= 0) H5Sclose(memory);
    H5Sclose(file_space);
    return status;
}
