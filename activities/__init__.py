"""Activities: everything that touches the world (later issue)."""
