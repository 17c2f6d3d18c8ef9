#pragma once
/* The OpenBLAS header comes through pkg-config's include path. Never name this file cblas.h:
   OpenBLAS's header uses the same include guard and would import empty. */
#include <cblas.h>
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);
char *openblas_get_config(void);
