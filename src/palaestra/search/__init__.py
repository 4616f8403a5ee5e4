"""Design search: find better agents automatically (see docs/sandbox.md for the sandbox of generated code)."""
