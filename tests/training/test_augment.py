"""Batched crop-and-flip does exactly what a per-image crop with zero padding and a flip would."""

import torch

from lossaudit.training.augment import channel_stats, crop_flip, normalise


def test_crop_flip_is_a_padded_crop_of_each_image_optionally_flipped():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 10, 12), dtype=torch.uint8, generator=g)
    out = crop_flip(x, pad=4, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flips = shifts = 0
    for i in range(len(x)):
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(2) if flip else c)(padded[i, :, dy:dy + 10, dx:dx + 12]))]
        assert matches, f"image {i} is not a crop of its padded original"
        flips += matches[0][2]
        shifts += (matches[0][0], matches[0][1]) != (4, 4)
    assert 16 < flips < 48  # about half are flipped
    assert shifts > 48  # 80 of 81 offsets are shifts


def test_normalise_and_channel_stats():
    x = torch.randint(0, 256, (100, 3, 4, 4), dtype=torch.uint8)
    mean, std = channel_stats(x)
    z = normalise(x, mean, std)
    assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
