"""The pure schedule engine and Swedish date rules."""
