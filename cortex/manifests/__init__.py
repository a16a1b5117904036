"""YAML manifests: pydantic schemas, imports, validation."""
