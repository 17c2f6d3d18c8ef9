#include "chdf5.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HDF5's enum values and constants used here (H5public.h, H5Dpublic.h, H5Lpublic.h, H5Spublic.h, H5Tpublic.h). */
enum {
    LINK_HARD = 0, LINK_SOFT = 1, LINK_EXTERNAL = 64,  /* H5L_type_t */
    LAYOUT_VIRTUAL = 3,                                 /* H5D_layout_t */
    CLASS_STRING = 3,                                   /* H5T_class_t */
    SPACE_SCALAR = 0,                                   /* H5S_class_t */
    SELECT_SET = 0,                                     /* H5S_seloper_t */
};
#define VARIABLE_SIZE ((size_t)-1)            /* H5T_VARIABLE */
#define UNLIMITED_SIZE ((hsize_t)-1)          /* H5F_UNLIMITED */
#define P_DEFAULT ((hid_t)0)                  /* H5P_DEFAULT, H5S_ALL, H5E_DEFAULT */

/* Every entry point: return type, name in this table, C parameters, arguments, the library's symbol names (the
   first one found is used: 1.12 renamed H5Lget_info to H5Lget_info2 with a larger info struct whose first field,
   the link type, is all k2pack reads). */
#define CHDF5_FUNCTIONS(X) \
    X(herr_t, initialize, (void), (), "H5open") \
    X(herr_t, get_libversion, (unsigned *a, unsigned *b, unsigned *c), (a, b, c), "H5get_libversion") \
    X(herr_t, free_memory, (void *a), (a), "H5free_memory") \
    X(herr_t, Eset_auto2, (hid_t a, void *b, void *c), (a, b, c), "H5Eset_auto2") \
    X(hid_t, Fopen, (const char *a, unsigned b, hid_t c), (a, b, c), "H5Fopen") \
    X(hid_t, Fcreate, (const char *a, unsigned b, hid_t c, hid_t d), (a, b, c, d), "H5Fcreate") \
    X(herr_t, Fclose, (hid_t a), (a), "H5Fclose") \
    X(hid_t, Dopen2, (hid_t a, const char *b, hid_t c), (a, b, c), "H5Dopen2") \
    X(hid_t, Dcreate2, (hid_t a, const char *b, hid_t c, hid_t d, hid_t e, hid_t f, hid_t g), (a, b, c, d, e, f, g), "H5Dcreate2") \
    X(herr_t, Dclose, (hid_t a), (a), "H5Dclose") \
    X(hid_t, Dget_type, (hid_t a), (a), "H5Dget_type") \
    X(hid_t, Dget_space, (hid_t a), (a), "H5Dget_space") \
    X(hid_t, Dget_create_plist, (hid_t a), (a), "H5Dget_create_plist") \
    X(herr_t, Dwrite, (hid_t a, hid_t b, hid_t c, hid_t d, hid_t e, const void *f), (a, b, c, d, e, f), "H5Dwrite") \
    X(herr_t, Dread, (hid_t a, hid_t b, hid_t c, hid_t d, hid_t e, void *f), (a, b, c, d, e, f), "H5Dread") \
    X(hid_t, Pcreate, (hid_t a), (a), "H5Pcreate") \
    X(herr_t, Pclose, (hid_t a), (a), "H5Pclose") \
    X(herr_t, Pset_obj_track_times, (hid_t a, bool b), (a, b), "H5Pset_obj_track_times") \
    X(herr_t, Pset_create_intermediate_group, (hid_t a, unsigned b), (a, b), "H5Pset_create_intermediate_group") \
    X(int, Pget_layout, (hid_t a), (a), "H5Pget_layout") \
    X(int, Pget_external_count, (hid_t a), (a), "H5Pget_external_count") \
    X(herr_t, Pset_external, (hid_t a, const char *b, off_t c, hsize_t d), (a, b, c, d), "H5Pset_external") \
    X(herr_t, Pset_virtual, (hid_t a, hid_t b, const char *c, const char *d, hid_t e), (a, b, c, d, e), "H5Pset_virtual") \
    X(herr_t, Pset_chunk, (hid_t a, int b, const hsize_t *c), (a, b, c), "H5Pset_chunk") \
    X(herr_t, Pset_deflate, (hid_t a, unsigned b), (a, b), "H5Pset_deflate") \
    X(hid_t, Screate, (int a), (a), "H5Screate") \
    X(hid_t, Screate_simple, (int a, const hsize_t *b, const hsize_t *c), (a, b, c), "H5Screate_simple") \
    X(herr_t, Sclose, (hid_t a), (a), "H5Sclose") \
    X(int, Sget_simple_extent_ndims, (hid_t a), (a), "H5Sget_simple_extent_ndims") \
    X(int, Sget_simple_extent_dims, (hid_t a, hsize_t *b, hsize_t *c), (a, b, c), "H5Sget_simple_extent_dims") \
    X(herr_t, Sselect_hyperslab, (hid_t a, int b, const hsize_t *c, const hsize_t *d, const hsize_t *e, const hsize_t *f), (a, b, c, d, e, f), "H5Sselect_hyperslab") \
    X(hid_t, Tcopy, (hid_t a), (a), "H5Tcopy") \
    X(herr_t, Tset_size, (hid_t a, size_t b), (a, b), "H5Tset_size") \
    X(size_t, Tget_size, (hid_t a), (a), "H5Tget_size") \
    X(int, Tget_class, (hid_t a), (a), "H5Tget_class") \
    X(htri_t, Tis_variable_str, (hid_t a), (a), "H5Tis_variable_str") \
    X(herr_t, Tclose, (hid_t a), (a), "H5Tclose") \
    X(htri_t, Aexists_by_name, (hid_t a, const char *b, const char *c, hid_t d), (a, b, c, d), "H5Aexists_by_name") \
    X(herr_t, Adelete_by_name, (hid_t a, const char *b, const char *c, hid_t d), (a, b, c, d), "H5Adelete_by_name") \
    X(hid_t, Acreate_by_name, (hid_t a, const char *b, const char *c, hid_t d, hid_t e, hid_t f, hid_t g, hid_t h), (a, b, c, d, e, f, g, h), "H5Acreate_by_name") \
    X(hid_t, Aopen_by_name, (hid_t a, const char *b, const char *c, hid_t d, hid_t e), (a, b, c, d, e), "H5Aopen_by_name") \
    X(hid_t, Aget_type, (hid_t a), (a), "H5Aget_type") \
    X(herr_t, Awrite, (hid_t a, hid_t b, const void *c), (a, b, c), "H5Awrite") \
    X(herr_t, Aread, (hid_t a, hid_t b, void *c), (a, b, c), "H5Aread") \
    X(herr_t, Aclose, (hid_t a), (a), "H5Aclose") \
    X(htri_t, Lexists, (hid_t a, const char *b, hid_t c), (a, b, c), "H5Lexists") \
    X(herr_t, Lget_info, (hid_t a, const char *b, void *c, hid_t d), (a, b, c, d), "H5Lget_info2|H5Lget_info") \
    X(herr_t, Lcreate_soft, (const char *a, hid_t b, const char *c, hid_t d, hid_t e), (a, b, c, d, e), "H5Lcreate_soft") \
    X(herr_t, Lcreate_external, (const char *a, const char *b, hid_t c, const char *d, hid_t e, hid_t f), (a, b, c, d, e, f), "H5Lcreate_external")

/* The global identifiers HDF5's type and property-class macros read (valid after H5open). */
#define CHDF5_GLOBALS(X) \
    X(native_float, "H5T_NATIVE_FLOAT_g") \
    X(native_double, "H5T_NATIVE_DOUBLE_g") \
    X(native_int32, "H5T_NATIVE_INT32_g") \
    X(native_int64, "H5T_NATIVE_INT64_g") \
    X(native_llong, "H5T_NATIVE_LLONG_g") \
    X(c_s1, "H5T_C_S1_g") \
    X(link_create, "H5P_CLS_LINK_CREATE_ID_g") \
    X(file_create, "H5P_CLS_FILE_CREATE_ID_g") \
    X(dataset_create, "H5P_CLS_DATASET_CREATE_ID_g")

struct api {
#define FIELD(ret, name, params, args, symbols) ret(*name) params;
    CHDF5_FUNCTIONS(FIELD)
#undef FIELD
#define GLOBAL(name, symbol) const hid_t *name;
    CHDF5_GLOBALS(GLOBAL)
#undef GLOBAL
};

static void put(char *error, size_t cap, const char *message) {
    if (cap > 0) snprintf(error, cap, "%s", message);
}

/* The first of the '|'-separated `symbols` that `handle` defines, or NULL (the tried names in `tried`). */
static void *resolve(void *handle, const char *symbols) {
    char name[64];
    const char *start = symbols;
    while (*start) {
        const char *end = strchr(start, '|');
        size_t n = end ? (size_t)(end - start) : strlen(start);
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, start, n);
        name[n] = 0;
        void *found = dlsym(handle, name);
        if (found) return found;
        if (!end) break;
        start = end + 1;
    }
    return NULL;
}

/* Opens one library file and resolves every entry point and global; on success fills `out`, returns the handle. */
static void *open_one(const char *library, struct api *out, char *error, size_t cap) {
    char message[768];
    void *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *reason = dlerror();
        snprintf(message, sizeof message, "cannot load HDF5 (%s): %s", library, reason ? reason : "unknown reason");
        put(error, cap, message);
        return NULL;
    }
    void *found;
#define BIND(ret, name, params, args, symbols) \
    if ((found = resolve(handle, symbols)) == NULL) goto missing_##name; \
    out->name = (ret(*) params)found;
    CHDF5_FUNCTIONS(BIND)
#undef BIND
#define BIND_GLOBAL(name, symbol) \
    if ((found = dlsym(handle, symbol)) == NULL) goto missing_##name; \
    out->name = (const hid_t *)found;
    CHDF5_GLOBALS(BIND_GLOBAL)
#undef BIND_GLOBAL
    return handle;
#define MISSING(ret, name, params, args, symbols) \
missing_##name: \
    snprintf(message, sizeof message, "cannot load HDF5 (%s): it has no %s", library, symbols); \
    goto fail;
    CHDF5_FUNCTIONS(MISSING)
#undef MISSING
#define MISSING_GLOBAL(name, symbol) \
missing_##name: \
    snprintf(message, sizeof message, "cannot load HDF5 (%s): it has no %s", library, symbol); \
    goto fail;
    CHDF5_GLOBALS(MISSING_GLOBAL)
#undef MISSING_GLOBAL
fail:
    put(error, cap, message);
    dlclose(handle);
    return NULL;
}

/* Debian's serial HDF5 (1.10: .103, 1.14: .310), then the plain names other systems use. */
static const char *const default_names[] = {
    "libhdf5_serial.so.103", "libhdf5_serial.so.310", "libhdf5.so.103", "libhdf5.so.310", "libhdf5_serial.so",
    "libhdf5.so", "libhdf5.dylib", NULL};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct api h5;
static int load_status = -1;
static char load_error[1024];

static void load_once(void) {
    const char *chosen = getenv("K2PACK_HDF5_LIBRARY");
    if (chosen != NULL && chosen[0] != 0) {
        if (open_one(chosen, &h5, load_error, sizeof load_error) == NULL) return;
    } else {
        char first[1024] = {0};
        int opened = 0;
        for (int i = 0; default_names[i] != NULL && !opened; i++) {
            char error[1024];
            opened = open_one(default_names[i], &h5, error, sizeof error) != NULL;
            if (i == 0) snprintf(first, sizeof first, "%s", error);
        }
        if (!opened) {
            snprintf(load_error, sizeof load_error,
                     "%s (also tried libhdf5.so and the 1.14 names; install HDF5, e.g. apt-get install libhdf5-dev, "
                     "or set K2PACK_HDF5_LIBRARY to its file)", first);
            return;
        }
    }
    if (h5.initialize() < 0) {
        snprintf(load_error, sizeof load_error, "cannot load HDF5: H5open failed");
        return;
    }
    /* k2pack reports errors itself. */
    h5.Eset_auto2(P_DEFAULT, NULL, NULL);
    load_status = 0;
}

int chdf5_load(char *error, size_t cap) {
    pthread_once(&once, load_once);
    if (load_status != 0) put(error, cap, load_error);
    return load_status;
}

int chdf5_probe(const char *library, char *error, size_t cap) {
    struct api api;
    void *handle = open_one(library, &api, error, cap);
    if (handle == NULL) return -1;
    dlclose(handle);
    return 0;
}

/* The forwarders (callers load first; HDF5File does in open and create). */
herr_t chdf5_get_libversion(unsigned *a, unsigned *b, unsigned *c) { return h5.get_libversion(a, b, c); }
hid_t chdf5_Fopen(const char *a, unsigned b, hid_t c) { return h5.Fopen(a, b, c); }
hid_t chdf5_Fcreate(const char *a, unsigned b, hid_t c, hid_t d) { return h5.Fcreate(a, b, c, d); }
herr_t chdf5_Fclose(hid_t a) { return h5.Fclose(a); }
hid_t chdf5_Dopen2(hid_t a, const char *b, hid_t c) { return h5.Dopen2(a, b, c); }
hid_t chdf5_Dcreate2(hid_t a, const char *b, hid_t c, hid_t d, hid_t e, hid_t f, hid_t g) { return h5.Dcreate2(a, b, c, d, e, f, g); }
herr_t chdf5_Dclose(hid_t a) { return h5.Dclose(a); }
hid_t chdf5_Dget_type(hid_t a) { return h5.Dget_type(a); }
hid_t chdf5_Dget_space(hid_t a) { return h5.Dget_space(a); }
herr_t chdf5_Dwrite(hid_t a, hid_t b, hid_t c, hid_t d, hid_t e, const void *f) { return h5.Dwrite(a, b, c, d, e, f); }
herr_t chdf5_Dread(hid_t a, hid_t b, hid_t c, hid_t d, hid_t e, void *f) { return h5.Dread(a, b, c, d, e, f); }
herr_t chdf5_Pclose(hid_t a) { return h5.Pclose(a); }
herr_t chdf5_Pset_create_intermediate_group(hid_t a, unsigned b) { return h5.Pset_create_intermediate_group(a, b); }
hid_t chdf5_Screate_simple(int a, const hsize_t *b, const hsize_t *c) { return h5.Screate_simple(a, b, c); }
herr_t chdf5_Sclose(hid_t a) { return h5.Sclose(a); }
int chdf5_Sget_simple_extent_ndims(hid_t a) { return h5.Sget_simple_extent_ndims(a); }
int chdf5_Sget_simple_extent_dims(hid_t a, hsize_t *b, hsize_t *c) { return h5.Sget_simple_extent_dims(a, b, c); }
int chdf5_Tget_class(hid_t a) { return h5.Tget_class(a); }
herr_t chdf5_Tclose(hid_t a) { return h5.Tclose(a); }
herr_t chdf5_Lcreate_soft(const char *a, hid_t b, const char *c, hid_t d, hid_t e) { return h5.Lcreate_soft(a, b, c, d, e); }
herr_t chdf5_Lcreate_external(const char *a, const char *b, hid_t c, const char *d, hid_t e, hid_t f) { return h5.Lcreate_external(a, b, c, d, e, f); }

hid_t chdf5_native_float(void) { return *h5.native_float; }
hid_t chdf5_native_double(void) { return *h5.native_double; }
hid_t chdf5_native_int32(void) { return *h5.native_int32; }
hid_t chdf5_native_int64(void) { return *h5.native_int64; }
hid_t chdf5_native_llong(void) { return *h5.native_llong; }
unsigned chdf5_acc_rdonly(void) { return 0x0000u; }
unsigned chdf5_acc_trunc(void) { return 0x0002u; }
hid_t chdf5_p_default(void) { return P_DEFAULT; }
hid_t chdf5_s_all(void) { return P_DEFAULT; }
hid_t chdf5_link_create_plist(void) { return h5.Pcreate(*h5.link_create); }
hid_t chdf5_untimed_file_plist(void) { hid_t p = h5.Pcreate(*h5.file_create); h5.Pset_obj_track_times(p, false); return p; }
hid_t chdf5_untimed_dataset_plist(void) { hid_t p = h5.Pcreate(*h5.dataset_create); h5.Pset_obj_track_times(p, false); return p; }

static long copy_string(const char *value, char *buf, size_t cap) {
    size_t n = strlen(value);
    if (n >= cap) n = cap - 1;
    memcpy(buf, value, n);
    buf[n] = 0;
    return (long)n;
}

herr_t chdf5_write_string_attribute(hid_t file, const char *obj, const char *name, const char *value) {
    if (h5.Aexists_by_name(file, obj, name, P_DEFAULT) > 0 && h5.Adelete_by_name(file, obj, name, P_DEFAULT) < 0) return -1;
    hid_t type = h5.Tcopy(*h5.c_s1);
    if (type < 0) return -1;
    size_t length = strlen(value);
    h5.Tset_size(type, length > 0 ? length : 1);
    hid_t space = h5.Screate(SPACE_SCALAR);
    herr_t status = -1;
    if (space >= 0) {
        hid_t attr = h5.Acreate_by_name(file, obj, name, type, space, P_DEFAULT, P_DEFAULT, P_DEFAULT);
        if (attr >= 0) {
            status = h5.Awrite(attr, type, value);
            h5.Aclose(attr);
        }
        h5.Sclose(space);
    }
    h5.Tclose(type);
    return status;
}

long chdf5_read_string_attribute(hid_t file, const char *obj, const char *name, char *buf, size_t cap) {
    if (cap == 0 || h5.Aexists_by_name(file, obj, name, P_DEFAULT) <= 0) return -1;
    hid_t attr = h5.Aopen_by_name(file, obj, name, P_DEFAULT, P_DEFAULT);
    if (attr < 0) return -1;
    long result = -1;
    hid_t type = h5.Aget_type(attr);
    if (type >= 0 && h5.Tget_class(type) == CLASS_STRING) {
        hid_t mem = h5.Tcopy(*h5.c_s1);
        if (h5.Tis_variable_str(type) > 0) {
            char *value = NULL;
            h5.Tset_size(mem, VARIABLE_SIZE);
            if (h5.Aread(attr, mem, &value) >= 0 && value != NULL) {
                result = copy_string(value, buf, cap);
                h5.free_memory(value);
            }
        } else {
            size_t size = h5.Tget_size(type);
            char *value = (char *)calloc(size + 1, 1);
            h5.Tset_size(mem, size + 1);
            if (value != NULL && h5.Aread(attr, mem, value) >= 0) result = copy_string(value, buf, cap);
            free(value);
        }
        h5.Tclose(mem);
    }
    if (type >= 0) h5.Tclose(type);
    h5.Aclose(attr);
    return result;
}

int chdf5_path_links(hid_t file, const char *path, char *bad, size_t badcap) {
    char buffer[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buffer) return 0;
    memcpy(buffer, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buffer[i] == '/' || buffer[i] == 0) {
            char saved = buffer[i];
            buffer[i] = 0;
            if (!(i == 1 && buffer[0] == '/')) {
                if (h5.Lexists(file, buffer, P_DEFAULT) <= 0) return 0;
                /* H5L_info_t (1.10, 32 bytes) or H5L_info2_t (1.12+, 40 bytes): the link type is the first field. */
                union { int type; unsigned char bytes[128]; int64_t align; } info;
                memset(&info, 0, sizeof info);
                if (h5.Lget_info(file, buffer, &info, P_DEFAULT) < 0) return 0;
                if (info.type != LINK_HARD) {
                    if (badcap > 0) copy_string(buffer, bad, badcap);
                    return info.type == LINK_SOFT ? 2 : info.type == LINK_EXTERNAL ? 3 : 4;
                }
            }
            buffer[i] = saved;
        }
    }
    return 1;
}

int chdf5_dataset_storage(hid_t set) {
    hid_t dcpl = h5.Dget_create_plist(set);
    if (dcpl < 0) return -1;
    int result = 0;
    if (h5.Pget_layout(dcpl) == LAYOUT_VIRTUAL) result = 2;
    else if (h5.Pget_external_count(dcpl) != 0) result = 1;
    h5.Pclose(dcpl);
    return result;
}

hid_t chdf5_test_lcpl(void) {
    hid_t lcpl = h5.Pcreate(*h5.link_create);
    h5.Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}

/* Creates the float dataset `name` of `space` with the creation properties `dcpl` (when `ok`: they were set)
   and closes it; 0 on success. The caller owns and closes `space` and `dcpl`. */
static int test_create(hid_t file, const char *name, hid_t space, hid_t dcpl, int ok) {
    hid_t lcpl = chdf5_test_lcpl();
    hid_t set = ok ? h5.Dcreate2(file, name, *h5.native_float, space, lcpl, dcpl, P_DEFAULT) : -1;
    if (set >= 0) h5.Dclose(set);
    h5.Pclose(lcpl);
    return set >= 0 ? 0 : -1;
}

int chdf5_test_external_dataset(hid_t file, const char *name, const hsize_t *dims, int rank, const char *external) {
    hid_t space = h5.Screate_simple(rank, dims, NULL);
    hid_t dcpl = h5.Pcreate(*h5.dataset_create);
    int result = test_create(file, name, space, dcpl, h5.Pset_external(dcpl, external, 0, UNLIMITED_SIZE) >= 0);
    h5.Pclose(dcpl);
    h5.Sclose(space);
    return result;
}

int chdf5_test_virtual_dataset(hid_t file, const char *name, const hsize_t *dims, int rank, const char *source_file, const char *source_set) {
    hid_t space = h5.Screate_simple(rank, dims, NULL);
    hid_t source = h5.Screate_simple(rank, dims, NULL);
    hid_t dcpl = h5.Pcreate(*h5.dataset_create);
    int result = test_create(file, name, space, dcpl, h5.Pset_virtual(dcpl, space, source_file, source_set, source) >= 0);
    h5.Pclose(dcpl);
    h5.Sclose(source);
    h5.Sclose(space);
    return result;
}

int chdf5_test_compressed_dataset(hid_t file, const char *name, const hsize_t *dims, int rank, const hsize_t *chunk) {
    hid_t space = h5.Screate_simple(rank, dims, NULL);
    hid_t dcpl = h5.Pcreate(*h5.dataset_create);
    int result = test_create(file, name, space, dcpl, h5.Pset_chunk(dcpl, rank, chunk) >= 0 && h5.Pset_deflate(dcpl, 9) >= 0);
    h5.Pclose(dcpl);
    h5.Sclose(space);
    return result;
}

/* One hyperslab of a float dataset, written from `values` or read into it. */
static herr_t float_block(hid_t set, int rank, const hsize_t *start, const hsize_t *count, float *values, int write) {
    hid_t file_space = h5.Dget_space(set);
    if (file_space < 0) return -1;
    herr_t status = h5.Sselect_hyperslab(file_space, SELECT_SET, start, NULL, count, NULL);
    hid_t memory = h5.Screate_simple(rank, count, NULL);
    if (status >= 0 && memory >= 0) {
        status = write ? h5.Dwrite(set, *h5.native_float, memory, file_space, P_DEFAULT, values)
                       : h5.Dread(set, *h5.native_float, memory, file_space, P_DEFAULT, values);
    } else {
        status = -1;
    }
    if (memory >= 0) h5.Sclose(memory);
    h5.Sclose(file_space);
    return status;
}

herr_t chdf5_write_float_block(hid_t set, int rank, const hsize_t *start, const hsize_t *count, const float *values) {
    return float_block(set, rank, start, count, (float *)values, 1);
}

herr_t chdf5_read_float_block(hid_t set, int rank, const hsize_t *start, const hsize_t *count, float *out) {
    return float_block(set, rank, start, count, out, 0);
}
