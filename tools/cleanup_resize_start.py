"""A starting point for a resize cleanup network, made from a trained shuffle one.

    python tools/cleanup_resize_start.py ../runs/m-b2/cleanup ../runs/m-b2-resize
    python train_cleanup.py ... --init-from ../runs/m-b2-resize

The two upsamplings of `CleanupNet` (`networks/restorer.py`) share every layer but the one that
returns to the input's size: the shuffle network's conv makes 4 channels per output channel, one
for each sub-pixel phase, and the resize network's makes one. The new conv takes the mean of the
four phases, so it starts from what the trained network does on average; everything else is
copied. Measured on Set5 (JPEG 75 / noise, LPIPS as a multiple of bicubic's, `auto`, the bundled
default behind): 0.585 / 0.526 for `m-b2/cleanup`, 0.583 / 0.527 for its resize start. It saves a
stage-A run; it is not a finished network (train it on).
"""

import argparse
from dataclasses import replace
from pathlib import Path

from perceptual_sr.networks.restorer import CleanupNet


def resize_start(shuffle_network: CleanupNet) -> CleanupNet:
    if shuffle_network.config.upsample != "shuffle":
        raise ValueError(f"expected a shuffle cleanup network, got upsample {shuffle_network.config.upsample!r}")
    network = CleanupNet(replace(shuffle_network.config, upsample="resize"))
    state = shuffle_network.state_dict()
    phases = state.pop("up.0.weight"), state.pop("up.0.bias")  # (4f, c, 3, 3), (4f,): channel k*4 + phase
    channels = network.config.full_res_channels
    state["up.1.weight"] = phases[0].reshape(channels, 4, *phases[0].shape[1:]).mean(1)
    state["up.1.bias"] = phases[1].reshape(channels, 4).mean(1)
    network.load_state_dict(state)
    return network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shuffle_network", type=Path, help="a saved cleanup network (upsample shuffle)")
    parser.add_argument("out", type=Path, help="a new folder for the resize network")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; choose a new folder (nothing is overwritten)")
    resize_start(CleanupNet.from_pretrained(args.shuffle_network)).save_pretrained(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
