"""AWS adapters: the thin Lambda handler (and a local Runtime API stub for trying it)."""
