"""nitrod-rs: Python package (Rust extension bindings and pure-Python helpers)."""
