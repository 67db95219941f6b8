"""Configuration: typed frozen objects (`model`) loaded from TOML (`load`)."""
