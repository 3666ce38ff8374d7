"""Typed data: agreement terms, plans, decisions."""
