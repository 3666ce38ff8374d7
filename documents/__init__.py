"""The agreements' documents: PDFs checked on the way in and kept by their content."""
