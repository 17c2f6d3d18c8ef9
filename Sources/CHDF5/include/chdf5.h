#ifndef K2PACK_CHDF5_H
#define K2PACK_CHDF5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* libhdf5, loaded on first use (dlopen + dlsym) rather than linked: it pulls in libcurl, its TLS, Kerberos, LDAP
   and SSH, some 30 libraries whose loading every command paid before `main`, though only the reference-dump
   commands use HDF5. The library is the serial libhdf5 of libhdf5-dev (libhdf5_serial.so.103 on Debian 12), or
   the file named by K2PACK_HDF5_LIBRARY.

   The HDF5 calls k2pack makes are declared here with HDF5's C types (hid_t has been 64-bit since 1.10) and
   prefixed chdf5_ (chdf5_Fopen is H5Fopen); each forwards to the loaded library. Call chdf5_load first: before a
   successful load the forwarders must not be called. HDF5's flag macros that expand to globals are accessors. */

typedef int64_t hid_t;
typedef int herr_t;
typedef int htri_t;
typedef unsigned long long hsize_t;

/* H5T_class_t's H5T_INTEGER. */
#define CHDF5_T_INTEGER 0

/* Loads libhdf5 once per process (thread-safe) and silences its own error printing. Returns 0, or -1 with a
   message naming the library and the loader's reason copied into `error` (NUL-terminated, at most cap - 1). */
int chdf5_load(char *error, size_t cap);
/* Opens `library` and resolves every entry point without keeping it (for tests of the error path). */
int chdf5_probe(const char *library, char *error, size_t cap);

herr_t chdf5_get_libversion(unsigned *major, unsigned *minor, unsigned *release);
hid_t chdf5_Fopen(const char *name, unsigned flags, hid_t access);
hid_t chdf5_Fcreate(const char *name, unsigned flags, hid_t create, hid_t access);
herr_t chdf5_Fclose(hid_t file);
hid_t chdf5_Dopen2(hid_t location, const char *name, hid_t access);
hid_t chdf5_Dcreate2(hid_t location, const char *name, hid_t type, hid_t space, hid_t lcpl, hid_t dcpl, hid_t dapl);
herr_t chdf5_Dclose(hid_t set);
hid_t chdf5_Dget_type(hid_t set);
hid_t chdf5_Dget_space(hid_t set);
herr_t chdf5_Dwrite(hid_t set, hid_t memory_type, hid_t memory_space, hid_t file_space, hid_t transfer, const void *buffer);
herr_t chdf5_Dread(hid_t set, hid_t memory_type, hid_t memory_space, hid_t file_space, hid_t transfer, void *buffer);
herr_t chdf5_Pclose(hid_t plist);
herr_t chdf5_Pset_create_intermediate_group(hid_t plist, unsigned create);
hid_t chdf5_Screate_simple(int rank, const hsize_t *dims, const hsize_t *maxdims);
herr_t chdf5_Sclose(hid_t space);
int chdf5_Sget_simple_extent_ndims(hid_t space);
int chdf5_Sget_simple_extent_dims(hid_t space, hsize_t *dims, hsize_t *maxdims);
int chdf5_Tget_class(hid_t type);
herr_t chdf5_Tclose(hid_t type);
herr_t chdf5_Lcreate_soft(const char *target, hid_t location, const char *name, hid_t lcpl, hid_t lapl);
herr_t chdf5_Lcreate_external(const char *file, const char *object, hid_t location, const char *name, hid_t lcpl, hid_t lapl);

/* HDF5's type and flag macros, as plain calls. */
hid_t chdf5_native_float(void);
hid_t chdf5_native_double(void);
hid_t chdf5_native_int32(void);
hid_t chdf5_native_int64(void);
hid_t chdf5_native_llong(void);
unsigned chdf5_acc_rdonly(void);
unsigned chdf5_acc_trunc(void);
hid_t chdf5_p_default(void);
hid_t chdf5_s_all(void);
hid_t chdf5_link_create_plist(void);
/* File and dataset creation properties that store no object times: the same content gives the same bytes. */
hid_t chdf5_untimed_file_plist(void);
hid_t chdf5_untimed_dataset_plist(void);

/* Writes a fixed-length string attribute `name` = `value` on object `obj` (replacing one already there).
   Returns a negative value on failure. */
herr_t chdf5_write_string_attribute(hid_t file, const char *obj, const char *name, const char *value);
/* Reads a string attribute (fixed-length or variable-length) of object `obj` into `buf` (NUL-terminated,
   truncated to cap-1). Returns the string's length, or -1 when absent or not a string. */
long chdf5_read_string_attribute(hid_t file, const char *obj, const char *name, char *buf, size_t cap);
/* Checks every link along `path` without following any that is not a hard link: returns 0 when a component
   is absent, 1 when every component is a hard link, 2 at a soft link, 3 at an external link (to another file),
   4 at a user-defined link. The first non-hard component's path is copied to `bad` (NUL-terminated). */
int chdf5_path_links(hid_t file, const char *path, char *bad, size_t badcap);
/* How an open dataset stores its data: 0 in this file, 1 in external raw files (H5Pset_external), 2 a virtual
   dataset (mapped from other datasets, possibly other files), -1 when it cannot be told. */
int chdf5_dataset_storage(hid_t set);
/* Writes the block [start, start + count) of a float dataset from `values` (row-major, `count` in shape). */
herr_t chdf5_write_float_block(hid_t set, int rank, const hsize_t *start, const hsize_t *count, const float *values);
/* Reads the block [start, start + count) of a float dataset (any rank ≤ 8) into `out`. */
herr_t chdf5_read_float_block(hid_t set, int rank, const hsize_t *start, const hsize_t *count, float *out);

/* For tests and fuzzing: hostile layouts a reference dump must not be able to use. Each returns >= 0 on success
   (intermediate groups are created). */
hid_t chdf5_test_lcpl(void);
int chdf5_test_external_dataset(hid_t file, const char *name, const hsize_t *dims, int rank, const char *external);
int chdf5_test_virtual_dataset(hid_t file, const char *name, const hsize_t *dims, int rank, const char *source_file, const char *source_set);
/* A chunked, deflate-compressed float dataset never written: its (zero) fill value makes a huge shape cost a
   few bytes on disk. */
int chdf5_test_compressed_dataset(hid_t file, const char *name, const hsize_t *dims, int rank, const hsize_t *chunk);

#endif
