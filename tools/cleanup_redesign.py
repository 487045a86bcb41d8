"""A starting point for another design of the cleanup network, made from a trained one.

    python tools/cleanup_redesign.py ../runs/m-b2/cleanup ../runs/m-b2-resize --upsample resize
    python tools/cleanup_redesign.py ../runs/h600 ../runs/h600-chroma --corrects chroma
    python train_cleanup.py ... --init-from ../runs/h600-chroma

The designs of `CleanupNet` (`networks/restorer.py`) share their layers, so a trained network
carries over:
- `--upsample resize`: the two ways back to the input's size differ in one conv. The shuffle
  network's makes 4 channels per output channel, one for each sub-pixel phase, and the resize
  network's makes one; the new conv takes the mean of the four phases, so it starts from what the
  trained network does on average. Measured on Set5 (JPEG 75 / noise, LPIPS as a multiple of
  bicubic's, `auto`, the bundled default behind): 0.585 / 0.526 for `m-b2/cleanup`, 0.583 / 0.527
  for its resize start.
- `--corrects chroma`: every weight is copied, and the network's correction loses its luma, so it
  changes colour only. From `cleanup-h`'s best (`../runs/h600`), this alone took Set5 JPEG 75 in
  front of the default from 0.567 to 0.559, and held-out training crops from 0.631 to 0.594
  (`docs/training.md`, stage 7).
Everything else is copied.
"""

import argparse
from dataclasses import replace
from pathlib import Path

from perceptual_sr.networks.restorer import CORRECTIONS, UPSAMPLINGS, CleanupNet


def redesigned(network: CleanupNet, upsample: str | None = None, corrects: str | None = None) -> CleanupNet:
    """`network`'s weights in the design with `upsample` and `corrects` (None: as it is)."""
    config = network.config
    state = network.state_dict()
    if upsample is not None and upsample != config.upsample:
        if upsample != "resize":
            raise ValueError("a resize network cannot become a shuffle one (its phases were never apart)")
        phases = state.pop("up.0.weight"), state.pop("up.0.bias")  # (4f, c, 3, 3), (4f,): channel k*4 + phase
        channels = config.full_res_channels
        state["up.1.weight"] = phases[0].reshape(channels, 4, *phases[0].shape[1:]).mean(1)
        state["up.1.bias"] = phases[1].reshape(channels, 4).mean(1)
        config = replace(config, upsample=upsample)
    if corrects is not None:
        config = replace(config, corrects=corrects)
    result = CleanupNet(config)
    result.load_state_dict(state)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("network", type=Path, help="a saved cleanup network")
    parser.add_argument("out", type=Path, help="a new folder for the redesigned network")
    parser.add_argument("--upsample", choices=UPSAMPLINGS, help="the new way back to the input's size")
    parser.add_argument("--corrects", choices=CORRECTIONS, help="what the new network's correction may change")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; choose a new folder (nothing is overwritten)")
    if args.upsample is None and args.corrects is None:
        parser.error("name what changes: --upsample and/or --corrects")
    try:
        network = redesigned(CleanupNet.from_pretrained(args.network), args.upsample, args.corrects)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(1, f"error: {error}\n")
    network.save_pretrained(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
