"""facemusic_jax: face photo -> facial emotion -> Russell valence-arousal vector -> emotion-conditioned music."""

__version__ = "0.1.0"
