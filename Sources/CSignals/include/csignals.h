#ifndef K2PACK_CSIGNALS_H
#define K2PACK_CSIGNALS_H

#include <stddef.h>

/// A process-wide record of what a fatal SIGBUS must know: the temporary files being written (removed by the
/// handler) and the input files mapped into memory (so the handler can name the one that changed).
/// Registration is lock-free and thread-safe; the handler only reads, with async-signal-safe calls.

/// Creates a temporary file (`openat(folder, name, flags, mode)`) and records it as `path` in one step that the
/// handler waits for, so no file can be created after the handler's sweep and survive it. Returns the file
/// descriptor (or -1 with errno set) and stores the slot for k2_temp_unregister in `*slot` (-1 when none is
/// free, or the path is too long: the file is then not removed by the handler).
int k2_temp_create(int folder, const char *name, int flags, int mode, const char *path, int *slot);
void k2_temp_unregister(int slot);

/// Records a read-only mapping of `length` bytes at `base` of the file `path`, open as `fd`; returns a slot for
/// k2_map_unregister, or -1 when none is free.
int k2_map_register(const void *base, size_t length, int fd, const char *path);
void k2_map_unregister(int slot);

/// Installs the SIGBUS handler: a fault inside a registered mapping prints which file changed while being read,
/// removes every registered temporary file and exits with `exit_code`; any other SIGBUS removes the temporary
/// files and then ends the process as SIGBUS would. Returns 0, or -1 (errno set).
int k2_install_sigbus_handler(int exit_code);

/// The number of registered temporary files and mappings (for tests).
int k2_temp_count(void);
int k2_map_count(void);

#endif
