"""The HTTP side: the coordinators' API and web pages, and the signers' signing pages."""
