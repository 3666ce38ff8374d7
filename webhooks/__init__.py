"""Outgoing webhooks: what is announced, where it may go, how it is signed and sent."""
