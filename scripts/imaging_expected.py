#!/usr/bin/env python3
"""Expected values for Tests/ImagingTests (and the baseline timing of Benchmarks/results/imaging.md).

Resamples ../shared/data/totalsegmentator/example_ct.nii.gz to 1 mm on TumorStream's grid rule
(voxel 0 fixed, n_out = round(n * s / 1), output voxel a samples input index a * 1/s, border
clamped) with scipy.ndimage.map_coordinates (order=1 for CT, order=0 for labels), and prints
probe voxels, the liver volume and timings. Run from the package root:
    python3 scripts/imaging_expected.py
"""
import sys
import time

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates

root = "../shared/data/totalsegmentator/"
ct_img = nib.load(root + "example_ct.nii.gz")
ct = ct_img.get_fdata().astype(np.float32)
seg = np.asarray(nib.load(root + "example_seg_fast_force_split.nii.gz").dataobj)
sp = np.sqrt((ct_img.affine[:3, :3] ** 2).sum(0))
out_shape = [int(round(n * s / 1.0)) for n, s in zip(ct.shape, sp)]
print("out_shape", out_shape)

axes = [np.clip(np.arange(m) * (1.0 / s), 0, n - 1) for m, s, n in zip(out_shape, sp, ct.shape)]
grid = np.meshgrid(*axes, indexing="ij")


def timed(f, runs):
    f()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        r = f()
        ts.append(time.perf_counter() - t)
    return r, ts


runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
lin, t_lin = timed(lambda: map_coordinates(ct, grid, order=1, mode="nearest"), runs)
# Nearest: round half away from zero on the (non-negative) positions, as TumorStream does.
# Positions past the field of view (>= n - 0.5) are background: index -1 into a zero-padded copy.
near_idx = []
for m, s, n in zip(out_shape, sp, ct.shape):
    p = np.arange(m) * (1.0 / s)
    i = np.floor(p + 0.5).astype(np.int64).clip(0, n - 1)
    i[p >= n - 0.5] = -1
    near_idx.append(i)
near, t_near = timed(lambda: np.pad(seg, ((0, 1), (0, 1), (0, 1)))[np.ix_(*near_idx)], runs)
print("probe", [(p, float(lin[p])) for p in [(0, 0, 0), (100, 150, 200), (183, 151, 168), (365, 302, 335), (200, 100, 50)]])
print("liver_ml_1mm", float((near == 5).sum()) / 1000.0)
print("liver_ml_3mm", float((seg == 5).sum()) * 27 / 1000.0)
print("scipy_linear_ms median", 1000 * float(np.median(t_lin)), "nearest_ms median", 1000 * float(np.median(t_near)), "runs", runs)
