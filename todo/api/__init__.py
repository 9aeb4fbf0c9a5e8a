"""The API's plumbing: flask-smorest configured for this contract, problem+json, shared
schemas and parameters, the docs."""
