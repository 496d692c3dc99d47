"""Standard-library clients of the backend process (no ``bpy``): run ``pixie-backend`` commands as
child processes and read their JSON-lines output."""
