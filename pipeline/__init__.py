"""prfeval's data pipeline: storage, manifests, images, metrics, pairing, scoring, Parquet output.

Pure cores with thin Ray wrappers; nothing here parses command lines.
"""
