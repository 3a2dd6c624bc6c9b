"""The ``dicom:`` config section, and which frames and slices of a series become samples."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from pydicom.dataset import Dataset

from medcorpus.transforms.dicom_deid import DeidOptions
from medcorpus.transforms.dicom_pixels import PixelOptions, WindowName
from medcorpus.transforms.options import PositiveInt

Policy = Annotated[str, Field(pattern=r"^(middle|all|every:[1-9][0-9]*)$")]
VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})


@dataclass(frozen=True)
class DicomOptions:
    frames: Policy = "middle"  # frames of a multi-frame instance: middle | all | every:N
    slices: Policy = "middle"  # slices of a CT/MR/PET volume series (one instance per slice)
    windows: dict[str, WindowName] = field(default_factory=dict)  # modality -> preset (CT: lung) | header
    dates: Literal["shift", "remove"] = "shift"
    max_shift_days: PositiveInt = 3650
    ocr: Literal["auto", "always", "never"] = "auto"  # burned-in text check (auto: US, SC, XA ... )
    ocr_min_chars: PositiveInt = 6  # letters/digits read with confidence that make an image "with text"
    secret_file: str | None = None  # the pseudonym key; null: generated once per output under the cache root

    def pixels(self) -> PixelOptions:
        return PixelOptions(windows=dict(self.windows))

    def deid(self) -> DeidOptions:
        return DeidOptions(dates=self.dates, max_shift_days=self.max_shift_days)


def pick(n: int, policy: str) -> list[int]:
    """Indices of ``n`` frames or slices that ``policy`` keeps."""
    if n <= 0:
        return []
    if policy == "all":
        return list(range(n))
    if policy == "middle":
        return [(n - 1) // 2]
    step = int(policy.split(":", 1)[1])
    return list(range(0, n, step))


def _position(ds: Dataset) -> float | None:
    ipp, iop = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if not ipp or not iop or len(ipp) != 3 or len(iop) != 6:
        return None
    try:
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        return float(np.dot(normal, np.asarray(ipp, float)))
    except (TypeError, ValueError):
        return None


def is_volume(datasets: list[Dataset]) -> bool:
    """A series of single-frame slices of one volume (CT, MR, PET, NM)."""
    return (len(datasets) > 1 and all(str(d.get("Modality") or "") in VOLUME_MODALITIES for d in datasets)
            and all(int(d.get("NumberOfFrames") or 1) == 1 for d in datasets))


def order_slices(datasets: list[Dataset]) -> list[Dataset]:
    """Slices along the volume's normal (Image Position/Orientation), else by Instance Number."""
    positions = [_position(d) for d in datasets]
    if all(p is not None for p in positions):
        return [d for _, d in sorted(zip(positions, datasets), key=lambda pd: pd[0])]
    return sorted(datasets, key=lambda d: int(d.get("InstanceNumber") or 0))
