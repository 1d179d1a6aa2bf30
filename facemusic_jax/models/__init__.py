"""The models; each builds itself from a config (`from_config`)."""
