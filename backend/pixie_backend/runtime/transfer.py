"""Host <-> device copies that overlap with compute.

On CUDA, an image goes up from pinned (page-locked) host memory on a copy stream of its own, in
the thread that prepared it, while the compute stream runs the previous batch; the batch waits for
the copy's event, not for the whole device. Results come back on another copy stream into pinned
memory, so the next batch can start before the last one's results have reached the host. On the
CPU and on MPS (unified memory) the copies are plain ``Tensor.to`` calls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from ..types import PixieOutput


@dataclass
class DeviceImage:
    """One image on the device, with the body squares of its persons (crops are cut from it there)."""

    pixels: torch.Tensor  #: (H, W, 3) uint8 (float32 for 16-bit sources), on the device
    centers: torch.Tensor  #: (P, 2) float64, image pixels (on the CPU)
    sides: torch.Tensor  #: (P,) float64 (on the CPU)
    ready: object | None = None  #: CUDA event recorded after the upload, or None

    @property
    def persons(self) -> int:
        return self.centers.shape[0]


class PendingOutput:
    """A batch's outputs on their way to the host; :meth:`result` waits for them."""

    def __init__(self, out: PixieOutput, done: object | None = None):
        self._out = out
        self._done = done

    def result(self) -> PixieOutput:
        if self._done is not None:
            self._done.synchronize()
        return self._out


class Transfers:
    """The copies of one engine's device (thread-safe)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self._up = torch.cuda.Stream(device) if self.cuda else None
        self._down = torch.cuda.Stream(device) if self.cuda else None
        self._lock = threading.Lock()

    def upload(self, pixels: torch.Tensor, centers: torch.Tensor, sides: torch.Tensor) -> DeviceImage:
        """Start copying one image to the device (returns at once on CUDA)."""
        if not self.cuda:
            return DeviceImage(pixels.to(self.device), centers, sides)
        host = pixels if pixels.is_pinned() else pixels.pin_memory()
        with self._lock, torch.cuda.stream(self._up):
            dev = host.to(self.device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self._up)
        return DeviceImage(dev, centers, sides, ready)

    def wait(self, image: DeviceImage) -> torch.Tensor:
        """The image's pixels, usable on the current stream (waits for the upload on the device)."""
        if image.ready is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(image.ready)
            image.pixels.record_stream(stream)  # the allocator must not reuse it before this stream is done
        return image.pixels

    def download(self, out: PixieOutput, part_crop_images: bool = True) -> PendingOutput:
        """Start copying a batch's outputs to the host.

        Args:
            part_crop_images: also copy the head and hand crops (3 x 224² x 3 per person); without
                them ``out.crops`` keeps its centres and sides only (the images stay on the device
                and are freed).
        """
        if not part_crop_images and out.crops is not None:
            out = out.without_part_images()
        if not self.cuda:
            return PendingOutput(out.detach_cpu())
        compute = torch.cuda.current_stream(self.device)
        computed = torch.cuda.Event()
        computed.record(compute)
        with torch.cuda.stream(self._down):
            self._down.wait_event(computed)

            def down(t: torch.Tensor) -> torch.Tensor:
                t.record_stream(self._down)
                return t.detach().to("cpu", non_blocking=True)

            host = out.map_tensors(down)
            done = torch.cuda.Event()
            done.record(self._down)
        return PendingOutput(host, done)
