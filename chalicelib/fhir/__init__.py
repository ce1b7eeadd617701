"""FHIR R4 (4.0.1) over the booking domain: the same cache, tokens and booking rules as the
native API, answered as FHIR resources (docs/fhir.md)."""
