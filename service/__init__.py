"""What coordinators do, as calls the command line, the HTTP API and the web pages share."""
