"""Placeholder: filled in by this round's technique work."""
