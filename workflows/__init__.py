"""Agreement-lifecycle workflows (later issue)."""
