#!/usr/bin/env python3
"""Writes the small NIfTI fixtures of Tests/ImagingTests (run from the package root):
    python3 scripts/imaging_fixtures.py
NIfTI-2 files (TumorStream writes NIfTI-1 only; libnifti 3.0.1 cannot write NIfTI-2 single files),
and a NIfTI-1 file in big-endian byte order. Voxel (i, j, k) = 100*i + 10*j + k - 50; affine oblique.
"""
import nibabel as nib
import numpy as np

i, j, k = np.meshgrid(np.arange(4), np.arange(3), np.arange(2), indexing="ij")
values = (100 * i + 10 * j + k - 50).astype(np.float32)
c, s = np.cos(np.pi / 12), np.sin(np.pi / 12)
affine = np.array([[0.8 * c, -0.8 * s, 0, -90.5], [0.8 * s, 0.8 * c, 0, 12.25], [0, 0, 2.5, -300], [0, 0, 0, 1]])

out = "Tests/Fixtures/imaging/"
nib.save(nib.Nifti2Image(values, affine), out + "nifti2_float32.nii")
img = nib.Nifti2Image(values.astype(np.int16), affine)
img.header.set_data_dtype(np.int16)
nib.save(img, out + "nifti2_int16.nii.gz")
hdr = nib.Nifti1Header(endianness=">")
hdr.set_data_dtype(">i2")
nib.save(nib.Nifti1Image(values.astype(">i2"), affine, header=hdr), out + "nifti1_bigendian_int16.nii")
for f in ["nifti2_float32.nii", "nifti2_int16.nii.gz", "nifti1_bigendian_int16.nii"]:
    r = nib.load(out + f)
    assert np.array_equal(r.get_fdata(), values), f
    print(f, r.header.sizeof_hdr, r.header.endianness, r.get_data_dtype())
