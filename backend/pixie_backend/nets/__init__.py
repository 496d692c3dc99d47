"""PIXIE's networks, with the module and state-dict names of the official checkpoint."""
