"""The training configs, one `get_config()` per file (ml_collections). They ship inside the package so that
`load_config(name)` works from any install; the repository's top-level `configs/` is a link to this folder, so
`--config configs/<name>.py` keeps working in a checkout."""
