"""Training samples: each gets its own aligned crop and flip; the order can restart mid-epoch exactly."""

import torch

from perceptual_sr.training.samples import ResumableSampler, random_crops, random_dihedral


def test_each_sample_gets_its_own_crop_and_flip_and_pairs_stay_aligned():
    generator = torch.Generator().manual_seed(0)
    high_res = torch.rand(16, 3, 32, 32)
    low_res = torch.nn.functional.avg_pool2d(high_res, 4)  # commutes with aligned crops, flips and transposes
    low_crop, high_crop = random_crops(low_res, high_res, 4, 16, generator)
    low_aug, high_aug = random_dihedral(low_crop, high_crop, generator)
    assert low_aug.shape == (16, 3, 4, 4) and high_aug.shape == (16, 3, 16, 16)
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(high_aug, 4), low_aug)
    # Not one window for the whole batch: the crops of different samples come from different places.
    origins = {tuple((high_res[i] == high_crop[i][:, :1, :1]).nonzero()[0].tolist()) for i in range(16)}
    assert len(origins) > 1
    flipped = [not torch.equal(high_aug[i], high_crop[i]) for i in range(16)]
    assert 0 < sum(flipped) < 16


def test_a_sampler_restarted_mid_epoch_gives_the_rest_of_the_same_order():
    whole = list(ResumableSampler(20, seed=3))
    restarted = ResumableSampler(20, seed=3)
    restarted.set_position(0, 8)
    assert list(restarted) == whole[8:] and len(restarted) == 12
    assert sorted(whole) == list(range(20))
    restarted.set_position(1, 0)
    assert list(restarted) != whole  # a new epoch, a new shuffle


def test_ranks_read_disjoint_equal_shares():
    shares = [list(ResumableSampler(21, seed=0, rank=rank, world_size=2)) for rank in range(2)]
    assert len(shares[0]) == len(shares[1]) == 10 and not set(shares[0]) & set(shares[1])
