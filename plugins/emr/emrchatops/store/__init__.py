"""The service's storage ports on Errbot's persistent plugin storage."""
