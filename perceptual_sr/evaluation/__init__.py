"""Measuring results: PSNR/SSIM/LPIPS and the grid and hatch scores, over test sets."""
