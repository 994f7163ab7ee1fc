"""The web process: routes, request and response schemas, errors, request hooks, admin."""
