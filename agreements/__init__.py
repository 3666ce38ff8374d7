"""What faces users: the command line, the web pages and API, `agreements up` and the
simulation of a whole life."""
