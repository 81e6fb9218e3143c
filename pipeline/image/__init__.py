"""Images as arrays: decoding bytes to RGB (limits, conversions), cutting the shared patch grid, the classic
full-reference metrics (PSNR, MS-SSIM, ...) and the bundled sample photos. Pure numpy and Pillow: no Ray, no
network, no manifests (metric and photo names are looked up in :class:`model.registry.Registry` tables, which
need no torch); scoring and the codec sweep build on it.
"""
