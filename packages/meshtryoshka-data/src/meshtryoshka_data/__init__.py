"""Dataset loaders for Meshtryoshka: NeRF-synthetic (Blender), nerfstudio and COLMAP (Mip-NeRF 360).

Conventions: OpenCV world-to-camera ``[N, 4, 4]`` (+x right, +y down, +z forward), pixel
intrinsics ``[N, 3, 3]`` with pixel centres at ``+0.5``, images uint8 in the dataset and
float32 ``[B, 3, H, W]`` in ``[0, 1]`` in batches.
"""

from importlib.metadata import PackageNotFoundError, version

from .blender import DEFAULT_BLENDER_ROOT, load_blender
from .check import CheckReport, check_dataset
from .colmap import (
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    ColmapPoints,
    read_colmap_model,
    write_colmap_model,
)
from .colmap_dataset import DEFAULT_COLMAP_ROOT, MIPNERF360_DOWNSCALE, load_colmap
from .dataset import Batch, Dataset
from .detect import detect_format, load_dataset
from .distortion import LensDistortion, Undistorter
from .errors import DatasetError
from .from_images import FromImagesReport, ReconstructionError, images_to_dataset
from .images import area_downscale
from .nerfstudio import DEFAULT_NERFSTUDIO_ROOT, load_nerfstudio
from .normalization import Similarity, camera_pose_errors, fit_normalization, fit_similarity
from .synthetic import (
    SceneTruth,
    write_blender_scene,
    write_colmap_scene,
    write_nerfstudio_scene,
)

try:  # the version block of every package's __init__.py in this repository (each installs alone)
    __version__ = version("meshtryoshka-data")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEFAULT_BLENDER_ROOT",
    "DEFAULT_COLMAP_ROOT",
    "DEFAULT_NERFSTUDIO_ROOT",
    "MIPNERF360_DOWNSCALE",
    "Batch",
    "CheckReport",
    "ColmapCamera",
    "ColmapImage",
    "ColmapModel",
    "ColmapPoints",
    "Dataset",
    "DatasetError",
    "FromImagesReport",
    "LensDistortion",
    "ReconstructionError",
    "SceneTruth",
    "Similarity",
    "Undistorter",
    "__version__",
    "area_downscale",
    "camera_pose_errors",
    "check_dataset",
    "detect_format",
    "fit_normalization",
    "fit_similarity",
    "images_to_dataset",
    "load_blender",
    "load_colmap",
    "load_dataset",
    "load_nerfstudio",
    "read_colmap_model",
    "write_blender_scene",
    "write_colmap_model",
    "write_colmap_scene",
    "write_nerfstudio_scene",
]
