"""I/O, the bottom layer: storage (local paths and any fsspec URI, the allowed-roots check, redaction), the
declared Arrow schemas of every output table, table readers and writers, and the typed records that pass between
stages. Nothing here knows of images, models or Ray; everything above reads and writes through it.
"""
