"""Email templates and rendering."""
