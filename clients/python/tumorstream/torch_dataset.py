"""A torch IterableDataset over a TumorStream (needs torch).

    from torch.utils.data import DataLoader
    from tumorstream.torch_dataset import TumorStreamDataset

    ds = TumorStreamDataset("tcp://127.0.0.1:5560")          # the trainer edge of the pipeline
    for image, label in DataLoader(ds, batch_size=2, num_workers=0):
        ...   # image: float32 [2, 1, 96, 96, 96], label: int64 [2, 1, 96, 96, 96]

Use num_workers=0 (or 1): the stream is already produced by other processes, and several
DataLoader workers would each open their own PULL socket (which also works: ZeroMQ shares the
patches between them)."""

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .client import PatchStream


class TumorStreamDataset(IterableDataset):
    def __init__(self, endpoint: str, image: str = "ct", label: str = "label", hwm: int = 4,
                 max_patches=None, timeout_ms=None, keep_freed_memory: bool = True):
        self.endpoint = endpoint
        self.image = image
        self.label = label
        self.hwm = hwm
        self.max_patches = max_patches
        self.timeout_ms = timeout_ms
        self.keep_freed_memory = keep_freed_memory

    def __iter__(self):
        info = get_worker_info()
        limit = self.max_patches
        if info is not None and limit is not None:
            limit = limit // info.num_workers + (1 if info.id < limit % info.num_workers else 0)
        with PatchStream(self.endpoint, kind="pull", hwm=self.hwm, max_patches=limit,
                         timeout_ms=self.timeout_ms, keep_freed_memory=self.keep_freed_memory) as stream:
            for patch in stream:
                image = torch.from_numpy(patch[self.image].copy()).float()
                label = torch.from_numpy(patch[self.label].astype("int64"))
                if image.dim() == 3:
                    image = image.unsqueeze(0)
                if label.dim() == 3:
                    label = label.unsqueeze(0)
                yield image, label
