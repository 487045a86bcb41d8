"""The networks: the upscaler, its exact fast inference rewrite and the phase maths they share, the discriminator."""
