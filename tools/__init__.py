"""Build and release tools (standard library only; run from the repository root)."""
