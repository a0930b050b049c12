"""Dataset batches: seeded sampling, compositing, evaluation order, devices."""

import pytest
import torch
from data_helpers import assert_close

from meshtryoshka_data import load_blender, load_colmap


def test_sample_batch_shapes_and_determinism(blender_truth):
    dataset = load_blender(blender_truth.path, background="random")
    a = dataset.sample_batch(3, torch.Generator().manual_seed(5))
    b = dataset.sample_batch(3, torch.Generator().manual_seed(5))
    assert a.images.shape == (3, 3, 24, 24) and a.images.dtype == torch.float32
    assert a.alpha.shape == (3, 1, 24, 24)
    assert a.world_to_camera.shape == (3, 4, 4) and a.intrinsics.shape == (3, 3, 3)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.images, b.images)
    assert set(a.indices.tolist()) <= set(dataset.splits["train"].tolist())
    assert len(set(a.indices.tolist())) == 3
    assert torch.equal(a.world_to_camera, dataset.world_to_camera[a.indices])
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0


def test_random_background_is_composited_per_image(blender_truth):
    dataset = load_blender(blender_truth.path, background="random")
    generator = torch.Generator().manual_seed(0)
    first = dataset.sample_batch(4, generator)
    second = dataset.sample_batch(4, generator)
    assert not torch.equal(first.background, second.background)
    rgba = dataset.images[first.indices].permute(0, 3, 1, 2).float() / 255
    expected = rgba[:, :3] * rgba[:, 3:] + first.background[:, :, None, None] * (1 - rgba[:, 3:])
    assert_close(first.images, expected, 1e-6)
    corner = first.images[:, :, 0, 0]  # a transparent pixel shows the background exactly
    assert_close(corner, first.background, 1e-6)


def test_a_part_of_a_batch_equals_that_slice_of_the_whole_batch(blender_truth):
    dataset = load_blender(blender_truth.path, background="random")
    whole_generator = torch.Generator().manual_seed(3)
    parts_generators = [torch.Generator().manual_seed(3) for _ in range(3)]
    for _ in range(2):  # the generator advances as for the whole batch: the next draw agrees
        whole = dataset.sample_batch(4, whole_generator)
        parts = (slice(0, 2), slice(2, 4), slice(4, 4))
        for generator, part in zip(parts_generators, parts, strict=True):
            shard = dataset.sample_batch(4, generator, part=part)
            for name in ("images", "alpha", "background", "world_to_camera", "indices"):
                assert torch.equal(getattr(shard, name), getattr(whole, name)[part]), name
    assert shard.images.shape[0] == 0  # more ranks than images: an empty shard


def test_iterate_in_order_with_white_for_random(blender_truth):
    dataset = load_blender(blender_truth.path, background="random")
    batches = list(dataset.iterate("train", batch_size=3))
    assert [b.indices.tolist() for b in batches] == [[0, 1, 2], [3]]
    assert all(torch.equal(b.background, torch.ones_like(b.background)) for b in batches)
    black = next(dataset.iterate("test", background="black"))
    assert black.indices.tolist() == [5] and black.background.sum() == 0


def test_bad_arguments_name_themselves(blender_truth):
    dataset = load_blender(blender_truth.path)
    with pytest.raises(ValueError, match="batch_size must be in"):
        dataset.sample_batch(5, torch.Generator())
    with pytest.raises(ValueError, match="split must be one of"):
        next(dataset.iterate("nope"))
    with pytest.raises(ValueError, match="background must be"):
        load_blender(blender_truth.path, background="green")
    with pytest.raises(ValueError, match="downscale must be"):
        load_blender(blender_truth.path, downscale=0)


def test_to_device_keeps_everything(colmap_truth):
    dataset = load_colmap(colmap_truth.path)
    moved = dataset.to("cpu")
    assert moved is not dataset and torch.equal(moved.points, dataset.points)
    assert moved.transform is dataset.transform and moved.names == dataset.names


def test_short_repr(colmap_truth):
    text = repr(load_colmap(colmap_truth.path))
    assert "10 images 32x24x3 uint8 on cpu" in text and "train 8, val 2, test 2" in text
    assert "points 300" in text and len(text) < 300


@pytest.mark.cuda
def test_images_on_the_gpu(blender_truth):
    dataset = load_blender(blender_truth.path, device="cuda", background="random")
    cpu = load_blender(blender_truth.path, background="random")
    assert dataset.images.is_cuda and torch.equal(dataset.images.cpu(), cpu.images)
    batch = dataset.sample_batch(2, torch.Generator().manual_seed(0))
    reference = cpu.sample_batch(2, torch.Generator().manual_seed(0))
    assert batch.images.is_cuda and batch.world_to_camera.is_cuda and batch.alpha.is_cuda
    assert torch.equal(batch.indices.cpu(), reference.indices)
    assert_close(batch.images.cpu(), reference.images, 1e-6, "GPU vs CPU batch")
    for gpu_batch, cpu_batch in zip(dataset.iterate("test"), cpu.iterate("test"), strict=True):
        assert_close(gpu_batch.images.cpu(), cpu_batch.images, 1e-6, "GPU vs CPU evaluation")
