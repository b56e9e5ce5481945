"""Measurements on trained networks (transition curves and mean transition error)."""
