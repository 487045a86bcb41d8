"""The perceptual_sr web demo (also the Hugging Face Space entry point): `python app.py`.

Settings are environment variables (PERCEPTUAL_SR_MODEL, PERCEPTUAL_SR_MAX_PIXELS, PERCEPTUAL_SR_DEVICE,
PERCEPTUAL_SR_CONCURRENCY, GRADIO_SERVER_NAME/PORT, GRADIO_SHARE, GRADIO_CACHE_MODE): see
perceptual_sr/app/serve.py and the README. The same as `perceptual-sr demo`.
"""

from perceptual_sr.app.serve import main

if __name__ == "__main__":
    main()
