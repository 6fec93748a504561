"""Volume of the deformed ellipsoids of the reference (DiffTumor get_fixed_geo shape step), as a
ratio to 4/3*pi*rx*ry*rz, per size class: the expectations of TumorGeometryTests.testDeformedVolumes.
Needs elasticdeform (numpy<2). Output on this machine (300 draws, 20 for large):
  tiny   min 0.186 q10 0.582 median 0.883 q90 1.261 max 2.158
  small  min 0.358 q10 0.613 median 0.935 q90 1.189 max 1.656
  medium min 0.135 q10 0.492 median 0.877 q90 1.366 max 2.101
  large  min 0.535 q10 0.628 median 0.819 q90 1.155 max 1.699
"""
import numpy as np, elasticdeform, random
from synthesis_reference import get_ellipsoid
np.random.seed(0); random.seed(0)
for name,(lo,hi),sig in [('tiny',(3,5),lambda: random.uniform(0.5,1)),('small',(6,10),lambda: random.randint(1,2)),('medium',(12,20),lambda: random.randint(3,6)),('large',(24,64),lambda: random.randint(5,10))]:
    ratios=[]
    for t in range(300 if name!="large" else 20):
        r=[random.randint(lo,hi) for _ in range(3)]; s=sig()
        g=get_ellipsoid(*r)
        for ax in [(0,1),(1,2),(0,2)]:
            g=elasticdeform.deform_random_grid(g,sigma=s,points=3,order=0,axis=ax)
        ratios.append(g.sum()/(4/3*np.pi*r[0]*r[1]*r[2]))
    print(name, "min %.3f q10 %.3f median %.3f q90 %.3f max %.3f"%(min(ratios),np.quantile(ratios,0.1),np.median(ratios),np.quantile(ratios,0.9),max(ratios)))
