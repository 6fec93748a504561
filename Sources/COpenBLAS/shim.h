// OpenBLAS: cblas_sgemm and openblas_set_num_threads. Debian puts cblas.h in the multiarch include dir.
#include <x86_64-linux-gnu/cblas.h>
