"""The command-line entry points: each parses its flags and calls the library (`python -m facemusic_jax.<command>`)."""
