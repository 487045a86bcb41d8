"""From a photo to its upscale: the pipeline, tiling, colour fix, automatic cleanup and the ONNX backend."""
