"""Operator scripts: the connector export (and its builder), the Defender app roles grant."""
