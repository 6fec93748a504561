// libnifti (nifti_clib) reads and writes NIfTI-1 and NIfTI-2 through its nifti2 API.
// Debian installs the headers under /usr/include/nifti, so importers pass -Xcc -I/usr/include/nifti.
#include <nifti2_io.h>
