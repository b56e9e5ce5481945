"""Flags of the data-free procedures, one module per method (imported by cli_flags)."""
